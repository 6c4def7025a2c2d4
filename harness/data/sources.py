"""Where text comes from: turn a `DataConfig.source` into a stream of documents (strings).

Three kinds of source:
  - "embedded": text that ships with Python itself, so a fresh machine with no network can train.
    The `pydoc_data.topics` help pages (English prose) plus the standard library's own `.py`
    sources. Documents are put in a fixed pseudo-random order (see `embedded_documents`).
    "embedded:prose" is the pydoc topics alone (~0.47M characters of English) and "embedded:code"
    the stdlib sources alone (Python): two offline sources that differ in kind, for mixtures
    (harness/data/mixture.py). Both ship with CPython (PSF License, see docs/DATA.md).
  - "hf:<name>": a Hugging Face hub dataset, streamed (`hf_config`, `split`, `text_field`).
  - "deb:<package>": text from an installed Debian package (harness/data/debian_text.py), e.g.
    `deb:dict-gcide` (~40 MB of English, `bash scripts/install_debian_text.sh`); offline once installed.
  - a local file, directory or glob of .txt, .jsonl/.json or .parquet files, read through the
    `datasets` builders "text", "json" and "parquet" (streamed: no Arrow copy is written).
    A .txt file is ONE document (its whole content); `text_field` names the column of
    .jsonl/.json/.parquet rows. `split` applies to hub datasets only.

`iter_documents` applies `max_chars` to every kind: documents are yielded until the cap, the last
one cut to fit, so a small cap gives a small, deterministic prefix of the source.
"""

from __future__ import annotations

import glob
import os
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.config import ConfigError, DataConfig
from harness.data.debian_text import debian_documents, package_version

# With max_chars unset the embedded source stops here: about 8 MB of its ~14 MB, enough for
# millions of tokens while the first preparation (BPE training + encoding) stays at seconds.
EMBEDDED_DEFAULT_MAX_CHARS = 8_000_000

# Fixed seed of the embedded document order: part of the source's definition, never change it
# (that would silently change every cached dataset's content; the content hash would notice).
_EMBEDDED_ORDER_SEED = 20260101

# Parts of the stdlib tree that are not the standard library's own code, or not text worth
# modelling: third-party packages, the regression-test suites (full of deliberately broken and
# binary-ish fixtures), bytecode caches, and the generated codec tables in `encodings`.
_STDLIB_EXCLUDED_DIRS = frozenset(
    {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__", "encodings"}
)

# The embedded source and its two parts (pydoc prose, stdlib code), each a source of its own.
EMBEDDED_PARTS = ("embedded", "embedded:prose", "embedded:code")

_SUFFIX_TO_BUILDER = {".txt": "text", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}


def iter_documents(cfg: DataConfig) -> Iterator[str]:
    """Yield the documents of `cfg.source`, non-empty, capped at `effective_max_chars(cfg)`."""
    kind = source_kind(cfg.source)
    if kind == "embedded":
        docs: Iterable[str] = embedded_documents(cfg.source)
    elif kind == "hf":
        docs = hf_documents(cfg)
    elif kind == "deb":
        docs = debian_documents(cfg.source[len("deb:"):])
    else:
        docs = local_documents(cfg)
    return _cap_chars(docs, effective_max_chars(cfg))


def source_kind(source: str) -> str:
    """'embedded', 'hf', 'deb' or 'local'."""
    if source in EMBEDDED_PARTS:
        return "embedded"
    if source.startswith("hf:"):
        return "hf"
    if source.startswith("deb:"):
        return "deb"
    return "local"


def effective_max_chars(cfg: DataConfig) -> Optional[int]:
    """`cfg.max_chars`, or the embedded source's default cap when it is unset."""
    if cfg.max_chars is None and source_kind(cfg.source) == "embedded":
        return EMBEDDED_DEFAULT_MAX_CHARS
    return cfg.max_chars


def source_spec(cfg: DataConfig) -> dict[str, Any]:
    """What identifies the source, for cache keys and manifests (the content hash does the rest)."""
    kind = source_kind(cfg.source)
    spec: dict[str, Any] = {"kind": kind, "source": cfg.source, "max_chars": effective_max_chars(cfg)}
    if kind == "embedded":
        spec["python"] = ".".join(map(str, sys.version_info[:3]))
    elif kind == "hf":
        spec.update(hf_config=cfg.hf_config, split=cfg.split, text_field=cfg.text_field)
    elif kind == "deb":
        spec["package_version"] = package_version(cfg.source[len("deb:"):])
    else:
        spec["text_field"] = cfg.text_field
    return spec


def _cap_chars(docs: Iterable[str], max_chars: Optional[int]) -> Iterator[str]:
    remaining = max_chars
    for doc in docs:
        if not doc:
            continue
        if remaining is not None:
            doc = doc[:remaining]
            remaining -= len(doc)
        yield doc
        if remaining is not None and remaining <= 0:
            return


# --- embedded ---------------------------------------------------------------------------------


def embedded_documents(part: str = "embedded") -> list[str]:
    """The pydoc topics and the stdlib's `.py` files (`part`: both, "embedded:prose" the topics
    alone, "embedded:code" the files alone), in a fixed pseudo-random order.

    Sorted first (deterministic on any machine), then permuted with a fixed seed: the validation
    split is the END of the token stream and `max_chars` keeps its START, so an alphabetical order
    would validate on `xml`/`zipfile`/`zoneinfo` code alone and train small runs on prose alone.
    """
    prose = pydoc_topic_texts() if part != "embedded:code" else []
    docs = prose + (stdlib_source_texts() if part != "embedded:prose" else [])
    order = np.random.default_rng(_EMBEDDED_ORDER_SEED).permutation(len(docs))
    return [docs[i] for i in order]


def pydoc_topic_texts() -> list[str]:
    """The English help pages behind `help('topic')`, sorted by topic name."""
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def stdlib_source_texts() -> list[str]:
    """The text of every `.py` file of the standard library, sorted by path relative to its root."""
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in stdlib_source_files(root):
        try:
            texts.append(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue  # a few fixtures are Latin-1 or unreadable; they are not worth a special case
    return texts


def stdlib_source_files(root: Path) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Pruning in place stops os.walk from descending into excluded trees (site-packages is huge).
        dirnames[:] = [d for d in dirnames if d not in _STDLIB_EXCLUDED_DIRS and not d.startswith("config-")]
        for name in filenames:
            # _sysconfigdata* is generated build configuration, not library code.
            if name.endswith(".py") and not name.startswith("_sysconfigdata"):
                files.append(Path(dirpath, name))
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


# --- Hugging Face hub -------------------------------------------------------------------------


def hf_documents(cfg: DataConfig) -> Iterator[str]:
    import datasets

    name = cfg.source[len("hf:"):]
    if not name:
        raise ConfigError("data.source: 'hf:' needs a dataset name, e.g. 'hf:roneneldan/TinyStories'")
    try:
        ds = datasets.load_dataset(name, cfg.hf_config, split=cfg.split, streaming=True)
    except Exception as err:  # offline, unknown name, bad config or split: all end the same way
        raise ConfigError(
            f"data.source: could not load hub dataset {name!r} (hf_config={cfg.hf_config!r}, "
            f"split={cfg.split!r}): {type(err).__name__}: {err}. If this machine is offline, use "
            "data.source=embedded or a local path; otherwise check data.source / data.hf_config / "
            "data.split."
        ) from err
    return _text_column(ds, cfg.text_field, where=cfg.source)


# --- local files ------------------------------------------------------------------------------


def local_documents(cfg: DataConfig) -> Iterator[str]:
    import datasets

    files = resolve_local_files(cfg.source)
    builder = _SUFFIX_TO_BUILDER[files[0].suffix.lower()]
    paths = [str(p) for p in files]
    if builder == "text":
        ds = datasets.load_dataset("text", data_files=paths, split="train", streaming=True,
                                   sample_by="document")
        return _text_column(ds, "text", where=cfg.source)
    ds = datasets.load_dataset(builder, data_files=paths, split="train", streaming=True)
    return _text_column(ds, cfg.text_field, where=cfg.source)


def resolve_local_files(source: str) -> list[Path]:
    """The files a local source names (file, directory or glob), sorted, all of one format."""
    pattern = os.path.expanduser(source)
    if os.path.isdir(pattern):
        candidates = [p for p in Path(pattern).rglob("*") if p.is_file()]
    else:
        candidates = [Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    files = sorted(p.resolve() for p in candidates if p.suffix.lower() in _SUFFIX_TO_BUILDER)
    if not files:
        raise ConfigError(
            f"data.source: no .txt/.jsonl/.json/.parquet file matches {source!r}; give 'embedded', "
            "'hf:<name>', or an existing file, directory or glob of such files"
        )
    builders = {_SUFFIX_TO_BUILDER[p.suffix.lower()] for p in files}
    if len(builders) > 1:
        raise ConfigError(
            f"data.source: {source!r} mixes formats ({', '.join(sorted(builders))}); "
            "use a glob that matches one format, e.g. '*.jsonl'"
        )
    return files


def _text_column(ds: Any, text_field: str, *, where: str) -> Iterator[str]:
    """Yield `row[text_field]` of a (streamed) dataset; a missing column is a ConfigError."""
    columns = ds.column_names  # None for some streamed builders until the first row is read
    if columns is not None and text_field not in columns:
        raise _missing_field_error(text_field, columns, where)
    for row in ds:
        if text_field not in row:
            raise _missing_field_error(text_field, list(row), where)
        text = row[text_field]
        if text is None:
            continue
        if not isinstance(text, str):
            raise ConfigError(
                f"data.text_field: column {text_field!r} of {where!r} holds {type(text).__name__}, "
                "not text; name a string column"
            )
        yield text


def _missing_field_error(text_field: str, columns: Iterable[str], where: str) -> ConfigError:
    return ConfigError(
        f"data.text_field: {where!r} has no column {text_field!r}; its columns are "
        f"{', '.join(map(repr, columns))}. Set data.text_field to one of them"
    )
