#!/usr/bin/env node
// Runs the Dockerfile's own build steps in clean Debian roots, without a
// Docker engine, then starts the binary it built and asks it /healthz.
//
//   node chroot-build.mjs CONTEXT_DIR BASE_TARBALL WORK_DIR [--keep]
//
// BASE_TARBALL is a `debootstrap --variant=minbase bookworm` root (made by
// scripts/check-deploy), standing in for the debian:bookworm-* base images.
// Each stage starts from a fresh copy of it in WORK_DIR/stage-N and the
// stage's instructions are carried out in order, as `docker build` would:
// ARG / ENV / WORKDIR / USER / SHELL set the state, COPY copies from the
// build context (honouring .dockerignore) or, with --from, from an earlier
// stage's root, and RUN runs its command with /bin/sh -c (or its exec form)
// inside the root through chroot, as the current USER, in the current
// WORKDIR, with the stage's environment, /proc mounted and the machine's
// DNS. Then, in the last stage's root:
//   - no apt lists are left in any stage, no compiler or -dev package and no
//     curl in the runtime root, and `ldd` finds every library the binary needs;
//   - ENTRYPOINT + CMD start as USER with the image's environment (on a free
//     loopback port through MSGHUB_LISTEN) and answer GET /healthz, /readyz
//     and / ; the HEALTHCHECK command exits 0 inside the root;
//   - without libwebsockets' libuv plugin the binary does not come up (so the
//     runtime package list is proven to need it);
//   - STOPSIGNAL makes it drain and exit 0.
// Needs root (chroot, mount). Cleans up after itself unless --keep.
import fs from "node:fs";
import path from "node:path";
import net from "node:net";
import http from "node:http";
import { spawn, spawnSync } from "node:child_process";
import { parseDockerfile, dockerignore } from "./dockerfile.mjs";

const [ctxArg, baseArg, workArg, ...rest] = process.argv.slice(2);
if (!ctxArg || !baseArg || !workArg) {
    console.error("usage: chroot-build.mjs CONTEXT_DIR BASE_TARBALL WORK_DIR [--keep]");
    process.exit(2);
}
const ctx = path.resolve(ctxArg), base = path.resolve(baseArg), work = path.resolve(workArg);
const keep = rest.includes("--keep");
const log = (m) => console.log(`chroot-build: ${m}`);
const mounts = [];
let hub = null;

function sh(cmd, args, opts = {}) {
    const r = spawnSync(cmd, args, { stdio: opts.capture ? ["ignore", "pipe", "pipe"] : "inherit", encoding: "utf8", ...opts });
    if (r.error) throw r.error;
    if (r.status !== 0 && !opts.allowFail) {
        throw new Error(`${cmd} ${args.join(" ")} exited ${r.status}${opts.capture ? "\n" + r.stdout + r.stderr : ""}`);
    }
    return r;
}

function cleanup() {
    if (hub && hub.exitCode === null) { try { process.kill(hub.pid, "SIGKILL"); } catch { /* gone */ } }
    while (mounts.length) {
        const m = mounts.pop();
        if (spawnSync("umount", [m]).status !== 0) spawnSync("umount", ["-l", m]);
    }
    if (!keep && fs.existsSync(work)) fs.rmSync(work, { recursive: true, force: true });
}
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => { cleanup(); process.exit(130); });

// ---- COPY

function copyTree(src, dst, filter, rel) {
    const st = fs.lstatSync(src);
    if (filter && rel && filter(rel)) return 0;
    if (st.isSymbolicLink()) {
        fs.rmSync(dst, { force: true });
        fs.symlinkSync(fs.readlinkSync(src), dst);
        return 1;
    }
    if (st.isDirectory()) {
        fs.mkdirSync(dst, { recursive: true });
        let n = 0;
        for (const e of fs.readdirSync(src)) n += copyTree(path.join(src, e), path.join(dst, e), filter, rel ? `${rel}/${e}` : e);
        return n;
    }
    fs.mkdirSync(path.dirname(dst), { recursive: true });
    fs.copyFileSync(src, dst);
    fs.chmodSync(dst, st.mode & 0o7777);
    fs.chownSync(dst, 0, 0);
    return 1;
}

function inRoot(root, p) {
    const abs = path.posix.resolve("/", p);
    return path.join(root, abs);
}

function doCopy(ins, state, stagesByName, root, ignored) {
    const fromStage = ins.flags.from;
    let srcRoot = ctx;
    if (fromStage !== undefined) {
        const s = stagesByName.get(fromStage);
        if (!s) throw new Error(`line ${ins.line}: COPY --from=${fromStage}: no such earlier stage (images are not emulated)`);
        srcRoot = s.root;
    }
    const destIsDir = ins.dest.endsWith("/") || ins.sources.length > 1;
    const dest = path.posix.resolve(state.workdir, ins.dest);
    let n = 0;
    for (const src of ins.sources) {
        if (/[*?[]/.test(src)) throw new Error(`line ${ins.line}: wildcards in COPY are not emulated: ${src}`);
        const rel = path.posix.normalize(src).replace(/^\/+/, "").replace(/\/+$/, "") || ".";
        const from = fromStage !== undefined ? inRoot(srcRoot, rel) : path.join(ctx, rel);
        if (fromStage === undefined && rel !== "." && ignored(rel)) throw new Error(`line ${ins.line}: COPY ${src}: excluded by .dockerignore`);
        if (!fs.existsSync(from)) throw new Error(`line ${ins.line}: COPY ${src}: not found`);
        const filter = fromStage === undefined ? ignored : null;
        if (fs.statSync(from).isDirectory()) {
            // COPY dir dest copies the directory's contents into dest.
            n += copyTree(from, inRoot(root, dest), filter, rel === "." ? "" : rel);
        } else {
            const target = destIsDir ? path.posix.join(dest, path.posix.basename(rel)) : dest;
            n += copyTree(from, inRoot(root, target), null, null);
        }
    }
    if (ins.flags.chown) sh("chroot", [root, "chown", "-R", ins.flags.chown, dest]);
    return n;
}

// ---- RUN

function envOf(state, extra = {}) {
    const env = { ...state.args, ...state.env, ...extra };
    // Docker passes the predefined proxy ARGs through; so do we.
    for (const k of ["http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"]) if (process.env[k] && !(k in env)) env[k] = process.env[k];
    return env;
}

function chrootArgv(root, state, argv) {
    // cd into WORKDIR inside the root, then exec the command.
    return [`--userspec=${state.user}`, root, "/bin/sh", "-c", 'cd "$0" && exec "$@"', state.workdir, ...argv];
}

function doRun(ins, state, root) {
    const argv = ins.json ? ins.json : [...state.shell, ins.args];
    const t0 = Date.now();
    const r = spawnSync("chroot", chrootArgv(root, state, argv), { stdio: "inherit", env: envOf(state) });
    if (r.status !== 0) throw new Error(`line ${ins.line}: RUN ${ins.args} exited ${r.status}`);
    log(`  RUN ${ins.args} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}

// ---- stages

function prepareRoot(root) {
    fs.mkdirSync(root, { recursive: true });
    sh("tar", ["--numeric-owner", "-xpf", base, "-C", root]);
    fs.copyFileSync("/etc/resolv.conf", path.join(root, "etc/resolv.conf"));
    sh("mount", ["-t", "proc", "proc", path.join(root, "proc")]);
    mounts.push(path.join(root, "proc"));
}

function runStage(stage, stagesByName, ignored) {
    if (stage.image !== "debian" || !/^bookworm(-|$)/.test(stage.tag || "")) {
        throw new Error(`line ${stage.line}: only debian:bookworm* base images are emulated (got ${stage.image}:${stage.tag})`);
    }
    const root = path.join(work, `stage-${stage.index}`);
    log(`stage ${stage.index}${stage.name ? ` (${stage.name})` : ""}: FROM ${stage.image}:${stage.tag} -> fresh Debian bookworm root`);
    prepareRoot(root);
    const state = {
        env: { PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" },
        args: {},
        workdir: "/",
        user: "0:0",
        shell: ["/bin/sh", "-c"],
        meta: {},
    };
    for (const ins of stage.instructions) {
        switch (ins.kw) {
            case "ARG":
                for (const [k, v] of ins.props) state.args[k] = v ?? process.env[`BUILD_ARG_${k}`] ?? "";
                break;
            case "ENV":
                for (const [k, v] of ins.props) state.env[k] = v ?? "";
                break;
            case "WORKDIR":
                state.workdir = path.posix.resolve(state.workdir, ins.args.trim());
                fs.mkdirSync(inRoot(root, state.workdir), { recursive: true });
                break;
            case "USER": {
                let [u, g] = ins.args.trim().split(":");
                const uid = /^\d+$/.test(u) ? u : sh("chroot", [root, "id", "-u", u], { capture: true }).stdout.trim();
                const gid = g === undefined ? sh("chroot", [root, "sh", "-c", `getent passwd ${uid} | cut -d: -f4`], { capture: true }).stdout.trim() || uid
                    : /^\d+$/.test(g) ? g : sh("chroot", [root, "sh", "-c", `getent group ${g} | cut -d: -f3`], { capture: true }).stdout.trim();
                state.user = `${uid}:${gid}`;
                break;
            }
            case "SHELL":
                if (!ins.json) throw new Error(`line ${ins.line}: SHELL needs the JSON form`);
                state.shell = ins.json;
                break;
            case "COPY": {
                const n = doCopy(ins, state, stagesByName, root, ignored);
                log(`  COPY ${ins.flags.from !== undefined ? `--from=${ins.flags.from} ` : ""}${ins.args.replace(/^--\S+\s+/, "")} (${n} files)`);
                break;
            }
            case "RUN":
                doRun(ins, state, root);
                break;
            case "ADD":
                throw new Error(`line ${ins.line}: ADD is not emulated (use COPY)`);
            default:
                state.meta[ins.kw] = ins; // LABEL EXPOSE HEALTHCHECK STOPSIGNAL ENTRYPOINT CMD VOLUME
        }
    }
    const s = { ...stage, root, state };
    if (stage.name) stagesByName.set(stage.name, s);
    stagesByName.set(String(stage.index), s);
    return s;
}

// ---- the checks on the result

const freePort = () => new Promise((res, rej) => {
    const srv = net.createServer();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => { const p = srv.address().port; srv.close(() => res(p)); });
});

const get = (port, p) => new Promise((res) => {
    const req = http.get({ host: "127.0.0.1", port, path: p, timeout: 2000 }, (r) => {
        let body = "";
        r.on("data", (d) => (body += d));
        r.on("end", () => res({ status: r.statusCode, body }));
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => res({ status: 0, body: "" }));
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function startHub(s, port, out) {
    const ep = s.state.meta.ENTRYPOINT, cmd = s.state.meta.CMD;
    if (!ep || !ep.json) throw new Error("the last stage has no exec-form ENTRYPOINT");
    const argv = [...ep.json, ...(cmd && cmd.json ? cmd.json : [])];
    const env = envOf(s.state, { MSGHUB_LISTEN: `127.0.0.1:${port}` });
    const p = spawn("chroot", chrootArgv(s.root, s.state, argv), { env, stdio: ["ignore", "pipe", "pipe"] });
    p.output = "";
    const grab = (d) => { p.output += d; if (out) out.write(d); };
    p.stdout.on("data", grab);
    p.stderr.on("data", grab);
    p.exited = new Promise((r) => p.on("exit", (code, sig) => r({ code, sig })));
    return p;
}

async function waitHealthy(port, proc, ms) {
    const t0 = Date.now();
    while (Date.now() - t0 < ms) {
        if (proc.exitCode !== null) return false;
        if ((await get(port, "/healthz")).status === 200) return true;
        await sleep(200);
    }
    return false;
}

async function verify(stages) {
    const final = stages[stages.length - 1];
    const root = final.root;
    const fail = (m) => { throw new Error(m); };

    for (const s of stages) {
        const lists = path.join(s.root, "var/lib/apt/lists");
        const left = fs.existsSync(lists) ? fs.readdirSync(lists).filter((f) => f !== "partial" && f !== "lock" && f !== "auxfiles") : [];
        if (left.length) fail(`stage ${s.index}: apt lists left behind in /var/lib/apt/lists (${left.length} files)`);
    }
    log("apt lists removed in every stage");

    const pkgs = sh("chroot", [root, "dpkg-query", "-W", "-f", "${Package}\n"], { capture: true }).stdout.split("\n").filter(Boolean);
    const buildish = pkgs.filter((p) => /-dev$|^(gcc|gcc-\d+|g\+\+|cpp|cpp-\d+|make|cmake|build-essential|pkg-config|pkgconf|curl|wget)$/.test(p));
    if (buildish.length) fail(`the runtime root holds build or download tools: ${buildish.join(" ")}`);
    log(`runtime root: ${pkgs.length} packages, no compiler, -dev package or curl`);

    const ep = final.state.meta.ENTRYPOINT;
    const bin = ep && ep.json ? ep.json[0] : fail("no exec-form ENTRYPOINT");
    const ldd = sh("chroot", [root, "ldd", bin], { capture: true });
    if (/not found/.test(ldd.stdout)) fail(`ldd ${bin} in the runtime root:\n${ldd.stdout}`);
    log(`ldd ${bin}: every library found (${ldd.stdout.trim().split("\n").length} entries)`);
    const plugin = pkgs.includes("libwebsockets-evlib-uv")
        ? sh("chroot", [root, "dpkg", "-L", "libwebsockets-evlib-uv"], { capture: true }).stdout.split("\n").find((f) => /evlib_uv\.so$/.test(f))
        : null;
    if (!plugin) fail("libwebsockets-evlib-uv (libwebsockets' libuv plugin) is not installed in the runtime root");

    const uid = final.state.user.split(":")[0];
    if (uid === "0") fail("the runtime stage runs as root");
    const pw = sh("chroot", [root, "getent", "passwd", uid], { capture: true, allowFail: true }).stdout.trim();
    log(`runs as ${final.state.user}${pw ? ` (${pw.split(":")[0]})` : " (no passwd entry)"}`);

    // Start it.
    const logFile = fs.createWriteStream(path.join(work, "hub.log"));
    const port = await freePort();
    hub = startHub(final, port, logFile);
    if (!(await waitHealthy(port, hub, 15000))) fail(`the binary did not answer /healthz on 127.0.0.1:${port}:\n${hub.output}`);
    log(`${bin} started in the runtime root as ${final.state.user}: GET /healthz -> 200`);
    const ready = await get(port, "/readyz");
    if (ready.status !== 200) fail(`GET /readyz -> ${ready.status}`);
    const page = await get(port, "/");
    if (page.status !== 200 || !/<html/i.test(page.body)) fail(`GET / -> ${page.status}, not the chat page`);
    log(`GET /readyz -> 200, GET / -> 200 (chat page, ${page.body.length} bytes)`);
    if (!/mode=standalone/.test(hub.output) || !new RegExp(`127\\.0\\.0\\.1:${port}`).test(hub.output)) fail(`the hub did not take MSGHUB_LISTEN from the environment:\n${hub.output}`);
    log(`the listen address came from MSGHUB_LISTEN (log: ${(hub.output.match(/event=listening[^\n]*/) || [""])[0]})`);

    const hc = final.state.meta.HEALTHCHECK;
    if (!hc || !hc.healthcheck || hc.healthcheck.type !== "CMD") fail("no HEALTHCHECK CMD");
    const hcArgv = hc.healthcheck.json || [...final.state.shell, hc.healthcheck.shell];
    const hcEnv = envOf(final.state, { MSGHUB_LISTEN: `127.0.0.1:${port}` });
    const h = spawnSync("chroot", chrootArgv(root, final.state, hcArgv), { env: hcEnv, encoding: "utf8", timeout: 10000 });
    if (h.status !== 0) fail(`HEALTHCHECK ${hcArgv.join(" ")} exited ${h.status}: ${h.stdout}${h.stderr}`);
    log(`HEALTHCHECK ${hcArgv.join(" ")} -> exit 0`);

    const sig = (final.state.meta.STOPSIGNAL && final.state.meta.STOPSIGNAL.args.trim()) || "SIGTERM";
    const t0 = Date.now();
    // chroot execs the shell, which execs the hub: the pid is the hub's.
    process.kill(hub.pid, sig);
    const timeout = Number(final.state.env.MSGHUB_SHUTDOWN_TIMEOUT || 10) + 5;
    const ex = await Promise.race([hub.exited, sleep(timeout * 1000).then(() => null)]);
    if (!ex) fail(`no exit within ${timeout} s of ${sig}`);
    if (ex.code !== 0) fail(`exit status ${ex.code} (signal ${ex.sig}) after ${sig}:\n${hub.output}`);
    log(`${sig}: drained and exited 0 in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const hcDown = spawnSync("chroot", chrootArgv(root, final.state, hcArgv), { env: hcEnv, encoding: "utf8", timeout: 10000 });
    if (hcDown.status === 0) fail("HEALTHCHECK passes with the hub stopped");
    log("HEALTHCHECK fails once the hub is gone");

    // Without the libuv plugin, the hub must not come up.
    // Out of its directory: lws finds plugins by scanning for their name prefix.
    const hidden = "/tmp/evlib-plugin-hidden";
    fs.renameSync(path.join(root, plugin), path.join(root, hidden));
    try {
        const port2 = await freePort();
        hub = startHub(final, port2, logFile);
        const up = await waitHealthy(port2, hub, 4000);
        if (hub.exitCode === null) { process.kill(hub.pid, "SIGKILL"); await hub.exited; }
        if (up) fail(`the hub answered /healthz without ${plugin}: the plugin check proves nothing`);
        log(`without ${plugin} the hub does not start (so libwebsockets-evlib-uv is required)`);
    } finally {
        fs.renameSync(path.join(root, hidden), path.join(root, plugin));
    }
    logFile.end();
}

async function main() {
    if (process.getuid && process.getuid() !== 0) throw new Error("needs root (chroot and mount)");
    if (!fs.existsSync(base)) throw new Error(`no base root tarball at ${base}`);
    // A run that was killed may have left /proc mounted in its roots: unmount
    // before deleting anything there.
    const stale = fs.readFileSync("/proc/self/mounts", "utf8").split("\n").map((l) => l.split(" ")[1])
        .filter((m) => m && m.startsWith(work + "/")).sort().reverse();
    for (const m of stale) if (spawnSync("umount", [m]).status !== 0) spawnSync("umount", ["-l", m]);
    fs.rmSync(work, { recursive: true, force: true });
    fs.mkdirSync(work, { recursive: true });
    const { stages } = parseDockerfile(path.join(ctx, "Dockerfile"));
    const ignored = dockerignore(ctx);
    const byName = new Map();
    const done = [];
    const t0 = Date.now();
    for (const st of stages) done.push(runStage(st, byName, ignored));
    log(`all ${stages.length} stages built in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    await verify(done);
}

main().then(
    () => { cleanup(); log("OK"); process.exit(0); },
    (e) => { console.error(`chroot-build: FAILED: ${e.message}`); cleanup(); process.exit(1); },
);
