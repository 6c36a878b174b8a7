"""Runs the tests against this checkout: the package from python/, the binary from the build."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

if "RELPRUNE_BINARY" not in os.environ:
    target = subprocess.run(
        ["bash", "-c", '. "$1/scripts/env.sh" && printf %s "$CARGO_TARGET_DIR"', "_", str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    os.environ["RELPRUNE_BINARY"] = str(Path(target) / "release" / "relprune")
# Two cores: the core and the test's torch would fight over them.
os.environ.setdefault("RELPRUNE_THREADS", "2")
