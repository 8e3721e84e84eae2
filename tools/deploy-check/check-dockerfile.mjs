#!/usr/bin/env node
// Lints the Dockerfile and checks the rules issue 4 sets for it.
//
//   node check-dockerfile.mjs CONTEXT_DIR     (the Dockerfile is CONTEXT_DIR/Dockerfile)
//
// 1. dockerfile-utils' linter (it understands multi-stage builds): any error
//    or warning fails.
// 2. Policy, on the parsed instructions and on the docker/*.sh scripts the
//    RUN steps call: at least two stages; every base image pinned to a dated
//    tag or a digest; the runtime stage a -slim image; apt-get always with -y
//    and --no-install-recommends and its lists removed in the same RUN; a
//    non-root numeric USER; EXPOSE 8080; a HEALTHCHECK that asks /healthz;
//    STOPSIGNAL SIGTERM; an exec-form ENTRYPOINT with no flags (flags come
//    from MSGHUB_* variables); no -dev package, compiler or curl in the
//    runtime stage, and the libwebsockets libuv plugin in it; every COPY
//    source present in the build context and not excluded by .dockerignore.
import fs from "node:fs";
import path from "node:path";
import { validate } from "dockerfile-utils";
import { parseDockerfile, dockerignore } from "./dockerfile.mjs";

const ctx = path.resolve(process.argv[2] || ".");
const file = path.join(ctx, "Dockerfile");
const problems = [];
const bad = (line, msg) => problems.push(`Dockerfile:${line}: ${msg}`);

// ---- 1. dockerfile-utils
const { text, stages } = parseDockerfile(file);
for (const d of validate(text)) bad(d.range.start.line + 1, `lint: ${d.message}`);

// ---- 2. policy
if (stages.length < 2) bad(1, "a multi-stage build is required (build stage + runtime stage)");
for (const s of stages) {
    const pinned = (s.tag && /(^|-)\d{8}(-|$)/.test(s.tag)) || s.digest;
    if (!pinned) bad(s.line, `base image ${s.image}:${s.tag || "latest"} is not pinned to a dated tag or a digest`);
    if (s.image !== "debian" || !/^bookworm/.test(s.tag || "")) bad(s.line, `base image must be debian:bookworm-* (got ${s.image}:${s.tag})`);
}
const final = stages[stages.length - 1];
if (final && !/-slim$/.test(final.tag || "")) bad(final.line, "the runtime stage must be a -slim image");

// The scripts a RUN line executes (docker/*.sh, by their path in the context).
function scriptsOf(stage, run) {
    const copied = new Map(); // path in the image -> path in the context
    let workdir = "/";
    for (const i of stage.instructions) {
        if (i === run) break;
        if (i.kw === "WORKDIR") workdir = path.posix.resolve(workdir, i.args.trim());
        if (i.kw === "COPY" && !i.flags.from) {
            for (const src of i.sources) {
                const destDir = i.dest.endsWith("/") || i.sources.length > 1;
                const dst = path.posix.resolve(workdir, destDir ? path.posix.join(i.dest, path.posix.basename(src)) : i.dest);
                copied.set(dst, src);
            }
        }
    }
    const cmd = run.json ? run.json.join(" ") : run.args;
    const out = [];
    for (const tok of cmd.split(/[\s;&|()]+/)) {
        if (!tok) continue;
        const abs = path.posix.resolve(workdir, tok);
        if (copied.has(abs)) out.push(copied.get(abs));
    }
    return out;
}

function checkApt(where, line, body) {
    const joined = body.replace(/\\\n/g, " ");
    const cmds = joined.split("\n");
    let sawApt = false, lastApt = -1, cleaned = -1;
    cmds.forEach((c, n) => {
        const t = c.replace(/#.*$/, "");
        if (/\bapt-get\b.*\binstall\b/.test(t) || /\bapt\s+install\b/.test(t)) {
            sawApt = true;
            if (!/--no-install-recommends\b/.test(t)) bad(line, `${where}: apt-get install without --no-install-recommends: ${t.trim()}`);
            if (!/(\s-y\b|\s--yes\b|\s-[a-z]*y[a-z]*\b|--assume-yes)/.test(t)) bad(line, `${where}: apt-get install without -y: ${t.trim()}`);
            if (/\bapt\s+install\b/.test(t)) bad(line, `${where}: use apt-get, not apt, in scripts`);
        }
        if (/\bapt-get\b/.test(t)) lastApt = n;
        if (/rm\s+-[a-z]*r[a-z]*f?[a-z]*\s+\/var\/lib\/apt\/lists\/\*/.test(t) || /rm\s+-[a-z]*f[a-z]*r[a-z]*\s+\/var\/lib\/apt\/lists\/\*/.test(t)) cleaned = n;
    });
    if (sawApt && cleaned < lastApt) bad(line, `${where}: apt lists are not removed (rm -rf /var/lib/apt/lists/*) after the last apt-get`);
    return sawApt;
}

const ignored = dockerignore(ctx);
let runtimeScripts = "";
for (const s of stages) {
    for (const i of s.instructions) {
        if (i.kw === "ADD") bad(i.line, "use COPY, not ADD");
        if ((i.kw === "COPY" || i.kw === "ADD") && !i.flags.from) {
            for (const src of i.sources) {
                const rel = path.posix.normalize(src).replace(/\/+$/, "");
                if (!fs.existsSync(path.join(ctx, rel))) bad(i.line, `COPY source ${src} does not exist in the build context`);
                else if (ignored(rel)) bad(i.line, `COPY source ${src} is excluded by .dockerignore`);
            }
        }
        if (i.kw === "RUN") {
            const cmd = i.json ? i.json.join(" ") : i.args;
            if (/\b(curl|wget)\b[^|]*\|\s*(ba)?sh\b/.test(cmd)) bad(i.line, "no download piped into a shell");
            checkApt("RUN", i.line, cmd);
            for (const sc of new Set(scriptsOf(s, i))) {
                const body = fs.readFileSync(path.join(ctx, sc), "utf8");
                if (!/^#!\/bin\/(ba)?sh\b/.test(body)) bad(i.line, `${sc}: must start with #!/bin/sh or #!/bin/bash`);
                if (!/^\s*set -[a-z]*e[a-z]*u?/m.test(body)) bad(i.line, `${sc}: must stop on the first error (set -eu)`);
                if (!(fs.statSync(path.join(ctx, sc)).mode & 0o111)) bad(i.line, `${sc}: is not executable`);
                checkApt(sc, i.line, body);
                if (s === final) runtimeScripts += body + "\n";
            }
            if (s === final) runtimeScripts += cmd + "\n";
        }
    }
}

if (final) {
    const ins = (kw) => final.instructions.filter((i) => i.kw === kw);
    const last = (kw) => ins(kw).pop();
    const user = last("USER");
    if (!user) bad(final.line, "the runtime stage needs a USER (non-root)");
    else {
        const [u, g] = user.args.trim().split(":");
        if (!/^\d+$/.test(u) || u === "0") bad(user.line, `USER must be a numeric non-root uid (Kubernetes runAsNonRoot checks it): ${user.args}`);
        if (g !== undefined && (!/^\d+$/.test(g) || g === "0")) bad(user.line, `USER group must be a numeric non-root gid: ${user.args}`);
    }
    if (!ins("EXPOSE").some((e) => e.ports.some((p) => p === "8080" || p === "8080/tcp"))) bad(final.line, "EXPOSE 8080 is missing");
    const hc = last("HEALTHCHECK");
    if (!hc || !hc.healthcheck || hc.healthcheck.type !== "CMD") bad(final.line, "a HEALTHCHECK CMD is missing");
    else {
        const cmd = hc.healthcheck.json ? hc.healthcheck.json.join(" ") : hc.healthcheck.shell;
        let asks = /\/healthz\b/.test(cmd);
        // The command may be a script COPYed in: look inside it.
        for (const c of final.instructions.filter((i) => i.kw === "COPY" && !i.flags.from)) {
            if (cmd.split(/\s+/).includes(c.dest) && c.sources.length === 1) {
                const body = fs.readFileSync(path.join(ctx, c.sources[0]), "utf8");
                if (/\/healthz\b/.test(body)) asks = true;
                if (/\bcurl\b|\bwget\b/.test(body.replace(/#.*$/gm, ""))) bad(hc.line, `${c.sources[0]}: the health check must not need curl or wget`);
            }
        }
        if (!asks) bad(hc.line, "the HEALTHCHECK does not ask /healthz");
        if (!hc.flags.interval || !hc.flags.timeout) bad(hc.line, "HEALTHCHECK needs --interval and --timeout");
    }
    const stop = last("STOPSIGNAL");
    if (!stop || stop.args.trim() !== "SIGTERM") bad(final.line, "STOPSIGNAL SIGTERM is missing");
    const ep = last("ENTRYPOINT");
    if (!ep || !ep.json) bad(final.line, "an exec-form ENTRYPOINT is missing");
    else if (ep.json.slice(1).some((a) => a.startsWith("-"))) bad(ep.line, "ENTRYPOINT passes flags: msghub's settings come from MSGHUB_* variables");
    const cmd = last("CMD");
    if (cmd && (cmd.json || [cmd.args]).some((a) => /(^|\s)--/.test(a))) bad(cmd.line, "CMD passes flags: msghub's settings come from MSGHUB_* variables");
    for (const e of ins("ENV")) for (const [k] of e.props) if (!/^MSGHUB_/.test(k)) bad(e.line, `ENV ${k}: the runtime stage sets MSGHUB_* variables only`);

    // What the runtime stage installs.
    const pkgs = [];
    for (const m of runtimeScripts.replace(/\\\n/g, " ").matchAll(/apt-get[^\n]*\binstall\b([^\n]*)/g)) {
        for (const w of m[1].trim().split(/\s+/)) if (w && !w.startsWith("-")) pkgs.push(w);
    }
    for (const p of pkgs) {
        if (/-dev$|^(gcc|g\+\+|cpp|clang|make|cmake|build-essential|pkg-config|curl|wget)$/.test(p)) bad(final.line, `the runtime stage installs ${p}: runtime libraries only`);
    }
    if (!pkgs.includes("libwebsockets-evlib-uv")) bad(final.line, "the runtime stage must install libwebsockets-evlib-uv (lws loads its libuv plugin at run time)");
}

if (problems.length) {
    console.error(problems.join("\n"));
    console.error(`check-dockerfile: ${problems.length} problem(s)`);
    process.exit(1);
}
console.log(`check-dockerfile: ${file}: ${stages.length} stages (${stages.map((s) => `${s.image}:${s.tag}`).join(", ")}), lint clean, policy met`);
