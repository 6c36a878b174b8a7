"""Writes one generated section of docs/benchmarks.md, shared by every benchmark's summariser.

A section is the text between `<!-- BEGIN name -->` and `<!-- END name -->`; it is replaced in place, so the
hand-written prose around it survives a rerun. The file is written atomically (temp file, then rename), so an
interrupted summariser never leaves a half-written document.
"""
import pathlib
import re

NEW_DOC = "# Benchmarks\n\nEvery figure here comes from a command in `benchmarks/`.\n"


def write_section(doc, name, body, after=None):
    """Replaces section `name` of `doc` with `body`. A missing section goes right after section `after`
    when that one exists, else at the end."""
    doc = pathlib.Path(doc)
    text = doc.read_text() if doc.exists() else NEW_DOC
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    block = f"{begin}\n{body}\n{end}"
    after_end = f"<!-- END {after} -->" if after else None
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    elif after_end and after_end in text:
        text = text.replace(after_end, after_end + "\n\n" + block, 1)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(doc)
    print(f"updated section {name} of {doc}")
