"""Runs a command and writes its peak resident memory (its own and its children's, in MiB: the
"Maximum resident set size" of /usr/bin/time -v) to a file. The command's stdout and stderr pass
through; the exit status is the command's.

usage: peak.py OUT_FILE COMMAND [ARGS...]
"""
import resource
import subprocess
import sys

r = subprocess.run(sys.argv[2:])
peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
with open(sys.argv[1], "w") as f:
    f.write(f"{peak_kib / 1024:.1f}\n")
sys.exit(r.returncode)
