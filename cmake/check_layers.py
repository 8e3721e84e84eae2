#!/usr/bin/env python3
"""The layer rule of docs/ARCHITECTURE.md, checked on every .c and .h file.

A file's layer is its folder: src/<folder>/x.c and x.h, and for a public
header include/msghub/x.h the folder of src/*/x.c (or HEADER_ONLY below).
A file may include modules of its own folder and of lower layers only: not
a higher layer, not a sibling folder of the same layer (net and backplane
are two adapters that never know each other). base, core and delivery
include no network or event library; net no Redis or RabbitMQ client,
backplane no libwebsockets.

Nor may modules include each other in a cycle (a module is x.c, x.h and
include/msghub/x.h): within a folder, a -> b -> a is reported too.
And every function-pointer typedef is named mh_<module>_<what>_fn
(docs/ARCHITECTURE.md, "Names").

Usage: check_layers.py SOURCE_DIR. Prints every violation and exits 1 when
there is one, or when an entry of cmake/layer_exceptions.txt is no longer
needed (the list only shrinks).
"""
import os
import re
import sys

LAYERS = {"base": 0, "core": 1, "delivery": 2, "net": 3, "backplane": 3, "app": 4}
# Public headers without a .c of the same name: the folder they belong to.
HEADER_ONLY = {
    "dlist": "base",
    "msglog": "delivery",
    "presence": "delivery",
    "transport": "delivery",
    "conn": "net",
    "lws_compat": "net",
}
# System headers each folder must not include.
ALL_IO = ("libwebsockets", "uv", "hiredis", "amqp", "rabbitmq-c")
FORBIDDEN = {
    "base": ALL_IO,
    "core": ALL_IO,
    "delivery": ALL_IO,
    "net": ("hiredis", "amqp", "rabbitmq-c"),
    "backplane": ("libwebsockets",),
}
LOCAL = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
SYSTEM = re.compile(r"^\s*#\s*include\s+<([^>/.]+)")
FN_TYPEDEF = re.compile(r"typedef[^;({}]*\(\s*\*\s*(\w+)\s*\)")
FN_NAME = re.compile(r"^mh_[a-z0-9_]+_fn$")


def module_folders(root):
    """Module name -> folder, from the sources under src/<folder>/."""
    mods = dict(HEADER_ONLY)
    for folder in LAYERS:
        d = os.path.join(root, "src", folder)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if name.endswith((".c", ".h")):
                mods[name[:-2]] = folder
    return mods


def files_to_check(root, mods, errors):
    """(path relative to root, folder) of every source and header."""
    out = []
    src = os.path.join(root, "src")
    for name in sorted(os.listdir(src)):
        if name.endswith((".c", ".h")):
            errors.append(f"src/{name}: not in a layer folder ({', '.join(LAYERS)})")
    for folder in LAYERS:
        d = os.path.join(src, folder)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if name.endswith((".c", ".h")):
                out.append((f"src/{folder}/{name}", folder))
    inc = os.path.join(root, "include", "msghub")
    for name in sorted(os.listdir(inc)):
        if not name.endswith(".h"):
            continue
        folder = mods.get(name[:-2])
        if folder is None:
            errors.append(f"include/msghub/{name}: no src/*/{name[:-2]}.c; give it a "
                          "folder in HEADER_ONLY (cmake/check_layers.py)")
            continue
        out.append((f"include/msghub/{name}", folder))
    return out


def target_folder(path, folder, inc, mods):
    """Folder of what `#include "inc"` names, or None when it is not ours."""
    if inc.startswith("msghub/"):
        return mods.get(os.path.basename(inc)[:-2], "?")
    if path.startswith("src/") and "/" not in inc:
        return folder  # a private header next to the source (resolved first)
    return None


def violations(root, path, folder, mods):
    """(included name, why) of every include breaking the rule in path."""
    out = []
    with open(os.path.join(root, path), encoding="utf-8") as fh:
        for line in fh:
            m = LOCAL.match(line)
            if m:
                tgt = target_folder(path, folder, m.group(1), mods)
                if tgt == "?":
                    out.append((m.group(1), "unknown module"))
                elif tgt and LAYERS[tgt] > LAYERS[folder]:
                    out.append((m.group(1), f"{folder} includes the higher layer {tgt}"))
                elif tgt and tgt != folder and LAYERS[tgt] == LAYERS[folder]:
                    out.append((m.group(1), f"{folder} includes its sibling {tgt}"))
                continue
            m = SYSTEM.match(line)
            if m and m.group(1) in FORBIDDEN.get(folder, ()):
                out.append((f"<{m.group(1)}>", f"{folder} includes a forbidden library"))
    return out


def bad_fn_typedefs(root, path):
    """Names of function-pointer typedefs in path that break mh_<module>_<what>_fn."""
    with open(os.path.join(root, path), encoding="utf-8") as fh:
        text = fh.read()
    return [n for n in FN_TYPEDEF.findall(text) if not FN_NAME.match(n)]


def includes_of(root, path, mods):
    """Modules that path includes with #include "...", by name."""
    out = set()
    with open(os.path.join(root, path), encoding="utf-8") as fh:
        for line in fh:
            m = LOCAL.match(line)
            if m:
                name = os.path.basename(m.group(1))[:-2]
                if name in mods:
                    out.add(name)
    return out


def cycle_from(graph, start, members):
    """One include path start -> ... -> start inside members (an SCC)."""
    stack, seen = [(start, [start])], {start}
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return path + [start]
            if nxt in members and nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return [start, start]


def include_cycles(graph):
    """Every strongly connected set of two or more modules, as one cycle each."""
    index, low, on, stack, out = {}, {}, set(), [], []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = set()
            while True:
                w = stack.pop()
                on.discard(w)
                scc.add(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(cycle_from(graph, min(scc), scc))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def load_exceptions(root):
    """{(path, included)} from cmake/layer_exceptions.txt ('#' starts a comment)."""
    p = os.path.join(root, "cmake", "layer_exceptions.txt")
    out = set()
    if os.path.exists(p):
        with open(p, encoding="utf-8") as fh:
            for line in fh:
                words = line.split("#", 1)[0].split()
                if len(words) == 2:
                    out.add((words[0], words[1]))
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    errors = []
    mods = module_folders(root)
    allowed = load_exceptions(root)
    used = set()
    graph = {}
    for path, folder in files_to_check(root, mods, errors):
        mod = os.path.basename(path)[:-2]
        graph.setdefault(mod, set()).update(includes_of(root, path, mods) - {mod})
        for name in bad_fn_typedefs(root, path):
            errors.append(f"{path}: typedef {name}: a function-pointer type is mh_<module>_<what>_fn")
        for inc, why in violations(root, path, folder, mods):
            if (path, inc) in allowed:
                used.add((path, inc))
            else:
                errors.append(f"{path}: #include {inc}: {why}")
    for cyc in include_cycles(graph):
        errors.append("include cycle: " + " -> ".join(cyc))
    for path, inc in sorted(allowed - used):
        errors.append(f"cmake/layer_exceptions.txt: {path} {inc} is no longer needed: remove it")
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"layer rule: {len(errors)} violation(s) (docs/ARCHITECTURE.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
