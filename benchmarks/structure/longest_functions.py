#!/usr/bin/env python3
"""The longest functions of src/ at a git revision, overall and in src/cli (the figures of the
structure notes). A function runs from its `fn` line to the closing brace at its indentation.

    python3 benchmarks/structure/longest_functions.py REV [N]
"""
import re
import subprocess
import sys


def functions(text):
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(pub(\([a-z]+\))? )?fn (\w+)", line)
        if m:
            for j in range(i + 1, len(lines)):
                if lines[j] == m.group(1) + "}":
                    yield j - i + 1, m.group(4)
                    break


def main():
    rev = sys.argv[1] if len(sys.argv) > 1 else "HEAD"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    files = subprocess.check_output(["git", "ls-tree", "-r", "--name-only", rev, "src"]).decode().split()
    rows = []
    for f in (f for f in files if f.endswith(".rs")):
        text = subprocess.check_output(["git", "show", f"{rev}:{f}"]).decode()
        rows += [(k, f, name) for k, name in functions(text)]
    rows.sort(reverse=True)
    cli = [r for r in rows if r[1].startswith("src/cli/")]
    print("longest overall:", ", ".join(f"{f}::{name} {k}" for k, f, name in rows[:n]))
    print("longest in src/cli:", ", ".join(f"{f}::{name} {k}" for k, f, name in cli[:n]))


if __name__ == "__main__":
    main()
