#!/usr/bin/env python3
"""cmake/check_layers.py on the fixture tree cycle/ (src/net/a.c includes
b.h, b.c includes a.h): it must exit 1 and name the cycle; the same tree
with b.c's include removed must pass (so the check is not failing on
everything); a function-pointer typedef not named mh_<module>_<what>_fn
must fail it again. Usage: test_check_layers.py CHECK_LAYERS_PY."""
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(script, root):
    p = subprocess.run([sys.executable, script, root], capture_output=True, text=True)
    return p.returncode, p.stderr


def main():
    script = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        root = os.path.join(tmp, "cycle")
        shutil.copytree(os.path.join(HERE, "cycle"), root)
        rc, err = run(script, root)
        if rc != 1 or "include cycle: a -> b -> a" not in err:
            print(f"cycle not caught: rc={rc}\n{err}", file=sys.stderr)
            return 1
        with open(os.path.join(root, "src", "net", "b.c"), "w", encoding="utf-8") as fh:
            fh.write("/* no include: no cycle */\n")
        rc, err = run(script, root)
        if rc != 0:
            print(f"the tree without the cycle fails: rc={rc}\n{err}", file=sys.stderr)
            return 1
        with open(os.path.join(root, "include", "msghub", "a.h"), "a", encoding="utf-8") as fh:
            fh.write("typedef void (*mh_a_done_cb)(void *ud);\n")
        rc, err = run(script, root)
        if rc != 1 or "typedef mh_a_done_cb" not in err:
            print(f"a misnamed callback type is not caught: rc={rc}\n{err}", file=sys.stderr)
            return 1
    print("ok: the cycle a -> b -> a and a typedef mh_a_done_cb are caught, the clean tree passes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
