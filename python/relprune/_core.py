"""The relprune core: the binary this package carries, run as a child process.

A child process, not an in-process extension: a failure in the core (libtorch included) ends the
child, never the caller's interpreter, and the core's thread settings never touch the caller's
torch. The binary links libtorch dynamically and runs on the caller's torch libraries (same
version, checked at import), so nothing is installed twice.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from ._errors import RelpruneError

_NEEDED = ("libtorch_cpu.so", "libc10.so")


def binary() -> Path:
    """The relprune executable: ``$RELPRUNE_BINARY``, else the one inside this package."""
    given = os.environ.get("RELPRUNE_BINARY")
    path = Path(given) if given else Path(__file__).resolve().parent / "_bin" / "relprune"
    if not path.is_file():
        raise RelpruneError(
            f"the relprune binary is missing at {path}; reinstall the package (`pip install ./python` from a "
            "clone of relprune) or set RELPRUNE_BINARY to a built `relprune`"
        )
    return path


def _environment() -> dict[str, str]:
    """The child's environment: the caller's torch libraries first on the library path."""
    env = dict(os.environ)
    lib = Path(torch.__file__).resolve().parent / "lib"
    # A CPU-only torch has no libtorch_cuda.so, which a CUDA-linked binary needs: then the
    # binary's own libtorch (its RUNPATH, the project's venv) is used instead.
    needed = _NEEDED + (("libtorch_cuda.so",) if _links_cuda(str(binary())) else ())
    if all((lib / n).exists() for n in needed):
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(lib), env.get("LD_LIBRARY_PATH", "")) if p)
    env.setdefault("RELPRUNE_THREADS", str(max(1, torch.get_num_threads())))
    return env


@functools.lru_cache(maxsize=4)
def _links_cuda(path: str) -> bool:
    """Whether the binary at ``path`` needs libtorch_cuda.so (its dynamic section names it)."""
    try:
        with open(path, "rb") as f:
            return b"libtorch_cuda.so" in f.read()
    except OSError:
        return False


def run(args: list[str], *, verbose: bool = False, timeout: float | None = None) -> Any:
    """Runs ``relprune --json ARGS`` and returns its JSON result.

    Exit code 2 (input to change) raises ``ValueError`` with the core's message; 130 raises
    ``KeyboardInterrupt``; any other failure, a crash included, raises :class:`RelpruneError`.
    """
    cmd = [str(binary()), "--json", *args]
    try:
        proc = subprocess.run(
            cmd,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=None if verbose else subprocess.PIPE,
            text=True,
            timeout=timeout,
        )
    except KeyboardInterrupt:
        raise
    except OSError as e:
        raise RelpruneError(f"cannot start the relprune core {cmd[0]}: {e}") from e
    stderr = proc.stderr or ""
    if proc.returncode == 0:
        try:
            return json.loads(proc.stdout) if proc.stdout.strip() else None
        except json.JSONDecodeError as e:
            raise RelpruneError(f"the relprune core printed no valid JSON for `{' '.join(args[:1])}`: {e}") from e
    message = _message(stderr) or f"exit code {proc.returncode}"
    if proc.returncode == 2:
        raise ValueError(message)
    if proc.returncode == 130:
        raise KeyboardInterrupt(message)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        raise RelpruneError(f"the relprune core stopped on {name} (your Python session is unaffected): {message}")
    raise RelpruneError(message)


def _message(stderr: str) -> str:
    """The core's error line(s), without progress output."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln.removeprefix("error: ") for ln in lines if ln.startswith("error: ")]
    if errors:
        return "; ".join(errors)
    return "\n".join(lines[-5:])


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"relprune: {message}", file=sys.stderr)
