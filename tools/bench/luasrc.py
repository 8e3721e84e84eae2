"""luasrc: the Lua scripts msglog_redis.c embeds, as Redis would run them.

Shared by tools/bench/script_cost.py and tools/bench/ack_script_cost.py.
A script is a `static const char NAME[] = LUA_COMMON [LUA_RETAIN] "..." ...;`
array of C string literals; lua() joins the helper macros it names and the
script's own literals (C comments dropped, escapes decoded).
"""
import codecs
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "src", "backplane", "msglog_redis.c")


def _literals(text):
    return "".join(codecs.decode(m, "unicode_escape")
                   for m in re.findall(r'"((?:[^"\\]|\\.)*)"', text))


def lua(name, path=SOURCE):
    """The Lua text of script NAME (e.g. "append_lua") in the C file PATH."""
    with open(path) as f:
        src = re.sub(r"/\*.*?\*/", "", f.read(), flags=re.S)
    macros = {m.group(1): _literals(m.group(2))
              for m in re.finditer(r"#define (LUA_\w+)(.*?)\n\n", src, re.S)}
    body = re.search(r"static const char " + re.escape(name) + r"\[\] =\s*((?:LUA_\w+\s+)*)(.*?);\n",
                     src, re.S)
    if body is None:
        raise ValueError("%s: no script %s" % (path, name))
    return "".join(macros[m] for m in body.group(1).split()) + _literals(body.group(2))
