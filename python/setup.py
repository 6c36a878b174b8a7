"""Build hook: the wheel carries the relprune binary (see README.md, "Why a binary")."""

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _binary() -> Path:
    """The release binary: $RELPRUNE_BINARY, else built by the repository's own setup."""
    given = os.environ.get("RELPRUNE_BINARY")
    if given:
        path = Path(given)
        if not path.is_file():
            raise SystemExit(f"RELPRUNE_BINARY={given} is not a file")
        return path
    setup_sh = REPO / "scripts" / "setup.sh"
    if not setup_sh.is_file():
        raise SystemExit(
            "building relprune needs the repository around python/ (scripts/setup.sh); "
            "install with `pip install ./python` from a clone, or set RELPRUNE_BINARY to a built relprune"
        )
    # The project's setup builds with its pinned toolchain and libtorch (idempotent: a built
    # binary is reused); at run time the binary uses the caller's torch libraries instead.
    subprocess.run(["bash", str(setup_sh), "--runtime"], check=True)
    target = subprocess.run(
        ["bash", "-c", '. "$1/scripts/env.sh" && printf %s "$CARGO_TARGET_DIR"', "_", str(REPO)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(target) / "release" / "relprune"


class BuildPy(build_py):
    """Copies the relprune binary into the package."""

    def run(self) -> None:
        super().run()
        dest = Path(self.build_lib) / "relprune" / "_bin" / "relprune"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(_binary(), dest)
        dest.chmod(0o755)


class BinaryDistribution(Distribution):
    """A platform wheel: it holds a Linux executable."""

    def has_ext_modules(self) -> bool:
        return True


setup(cmdclass={"build_py": BuildPy}, distclass=BinaryDistribution)
