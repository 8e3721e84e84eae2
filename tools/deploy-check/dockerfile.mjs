// Reads a Dockerfile into build stages with dockerfile-ast (the parser behind
// dockerfile-utils), and a .dockerignore into a matcher. Shared by
// check-dockerfile.mjs (lint and policy) and chroot-build.mjs (runs the
// build steps in a Debian root).
import fs from "node:fs";
import path from "node:path";
import { DockerfileParser } from "dockerfile-ast";

// A JSON-form argument list (["a", "b"]) or null for the shell form.
function jsonForm(text) {
    const t = (text || "").trim();
    if (!t.startsWith("[")) return null;
    try {
        const v = JSON.parse(t);
        return Array.isArray(v) && v.every((x) => typeof x === "string") ? v : null;
    } catch {
        return null;
    }
}

// Splits `a b "c d"` the way Docker splits COPY / EXPOSE arguments (no
// variables are expanded: this project's Dockerfile uses none there).
function words(text) {
    return (text || "").trim().split(/\s+/).filter(Boolean);
}

export function parseDockerfile(file) {
    const text = fs.readFileSync(file, "utf8");
    const df = DockerfileParser.parse(text);
    const stages = [];
    let cur = null;
    for (const i of df.getInstructions()) {
        const kw = i.getKeyword();
        const line = i.getRange().start.line + 1;
        const args = i.getArgumentsContent() || "";
        const flags = {};
        if (typeof i.getFlags === "function") for (const f of i.getFlags()) flags[f.getName()] = f.getValue();
        const ins = { kw, line, args, flags };
        if (kw === "FROM") {
            cur = {
                index: stages.length,
                name: i.getBuildStage(),
                image: i.getImageName(),
                tag: i.getImageTag(),
                digest: typeof i.getImageDigest === "function" ? i.getImageDigest() : null,
                line,
                instructions: [],
            };
            stages.push(cur);
            continue;
        }
        if (!cur) {
            if (kw === "ARG") continue; // global ARGs before the first FROM
            throw new Error(`${file}:${line}: ${kw} before FROM`);
        }
        if (kw === "RUN" || kw === "CMD" || kw === "ENTRYPOINT" || kw === "SHELL") ins.json = jsonForm(args);
        if (kw === "HEALTHCHECK") {
            const m = /^\s*(CMD|NONE)\b\s*([\s\S]*)$/i.exec(args);
            ins.healthcheck = m ? { type: m[1].toUpperCase(), json: jsonForm(m[2]), shell: m[2].trim() } : null;
        }
        if (kw === "ENV" || kw === "ARG") {
            ins.props = typeof i.getProperties === "function"
                ? i.getProperties().map((p) => [p.getName(), p.getValue()])
                : [];
        }
        if (kw === "COPY" || kw === "ADD") {
            const j = jsonForm(args);
            const w = j || words(args);
            ins.sources = w.slice(0, -1);
            ins.dest = w[w.length - 1];
        }
        if (kw === "EXPOSE") ins.ports = words(args);
        cur.instructions.push(ins);
    }
    return { text, stages };
}

// .dockerignore: Go filepath.Match patterns anchored at the context root,
// `**` for any number of directories, `!` to re-include; the last matching
// pattern wins, and a pattern that matches a directory excludes what is in it.
export function dockerignore(contextDir) {
    const f = path.join(contextDir, ".dockerignore");
    const rules = [];
    if (fs.existsSync(f)) {
        for (let l of fs.readFileSync(f, "utf8").split("\n")) {
            l = l.trim();
            if (!l || l.startsWith("#")) continue;
            const neg = l.startsWith("!");
            if (neg) l = l.slice(1).trim();
            l = path.posix.normalize(l.replace(/^\/+/, "")).replace(/\/+$/, "");
            rules.push({ neg, re: globToRegExp(l) });
        }
    }
    return (rel) => {
        // rel: a path relative to the context, with / separators
        let ignored = false;
        const parts = rel.split("/");
        for (let n = 1; n <= parts.length; n++) {
            const prefix = parts.slice(0, n).join("/");
            for (const r of rules) if (r.re.test(prefix)) ignored = !r.neg;
            if (ignored && n < parts.length) return true; // a parent directory is excluded
        }
        return ignored;
    };
}

function globToRegExp(glob) {
    let re = "";
    for (let i = 0; i < glob.length; i++) {
        const c = glob[i];
        if (c === "*") {
            if (glob[i + 1] === "*") {
                i++;
                if (glob[i + 1] === "/") { i++; re += "(?:.*/)?"; } else re += ".*";
            } else re += "[^/]*";
        } else if (c === "?") re += "[^/]";
        else if (c === "[") {
            const j = glob.indexOf("]", i);
            if (j < 0) re += "\\[";
            else { re += "[" + glob.slice(i + 1, j).replace(/^!/, "^").replace(/\\/g, "\\\\") + "]"; i = j; }
        } else if (c === "\\" && i + 1 < glob.length) { re += "\\" + glob[++i]; }
        else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
    }
    return new RegExp("^" + re + "$");
}
