"""The torch versions the core's libtorch is compatible with, checked at import."""

from __future__ import annotations

from ._errors import TorchVersionError

#: torch releases whose libtorch the core links against (tch 0.26 ↔ libtorch 2.13).
SUPPORTED = ("2.13",)


def check(version: str) -> None:
    """Raises :class:`TorchVersionError` unless ``version`` (``torch.__version__``) is supported."""
    release = version.split("+", 1)[0]
    if not any(release == s or release.startswith(s + ".") for s in SUPPORTED):
        raise TorchVersionError(
            f"relprune needs torch {' or '.join(s + '.x' for s in SUPPORTED)} (its core runs on the same libtorch); "
            f"this environment has torch {version}. Install a matching torch, e.g. `pip install torch==2.13.0`, "
            "or use a separate virtual environment for relprune"
        )
