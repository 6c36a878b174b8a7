"""Writes docs/python-api.md, the API reference, from the package's docstrings and signatures.

python python/tools/api_doc.py            # rewrite docs/python-api.md
python python/tools/api_doc.py --check    # exit 1 if it is out of date (the tests run this)
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))

import relprune  # noqa: E402

OUT = ROOT / "docs" / "python-api.md"


def _entry(name: str, obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj):
        head = f"### class `relprune.{name}`"
        if dataclasses.is_dataclass(obj):
            fields = ", ".join(f.name for f in dataclasses.fields(obj) if not f.name.startswith("_"))
            head += f"\n\nFields: `{fields}`"
        methods = [
            f"- `{m}{inspect.signature(f)}`: {(inspect.getdoc(f) or '').splitlines()[0]}"
            for m, f in vars(obj).items()
            if callable(f) and not m.startswith("_") and inspect.getdoc(f)
        ]
        body = doc + ("\n\nMethods:\n\n" + "\n".join(methods) if methods else "")
        return f"{head}\n\n{body}\n"
    sig = str(inspect.signature(obj))
    return f"### `relprune.{name}{sig}`\n\n{doc}\n"


def render() -> str:
    """The whole reference, in the order of ``relprune.__all__`` (functions first)."""
    names = sorted(relprune.__all__, key=lambda n: (inspect.isclass(getattr(relprune, n)), n))
    parts = [
        "# Python API reference\n",
        "Generated from the docstrings by `python/tools/api_doc.py` (the tests check it is current). "
        "The guide is [python.md](python.md).\n",
        inspect.getdoc(relprune) or "",
        "",
    ]
    parts += [_entry(n, getattr(relprune, n)) for n in names]
    return "\n".join(parts).rstrip() + "\n"


def main() -> int:
    """Writes (or with --check compares) the reference; returns the exit code."""
    text = render()
    if "--check" in sys.argv:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT} is out of date: run python python/tools/api_doc.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
