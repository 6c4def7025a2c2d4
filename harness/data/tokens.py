"""Text -> one flat, memory-mapped token file, built once per (source, content, tokenizer) and reused.

Layout: `<cache_dir>/tokens/<key>/{tokens.bin, manifest.json}`. `tokens.bin` holds every document's
tokens followed by the tokenizer's eos id, back to back, as uint16 (vocab <= 65536) or uint32.
The key hashes the source spec (incl. the effective max_chars), the content hash of the text,
the tokenizer fingerprint and its vocab size, so any change to what the tokens would be gives a
new directory, never a stale hit. The directory is built under a temp name and renamed into
place (see `cache.atomic_directory`), so a crash never leaves a half-written cache behind.

The split is not part of the cache: the LAST `val_tokens` tokens are validation, everything
before them is training, so changing `val_tokens` reuses the same file.

A mixture (`data.sources`) is prepared by `prepare_mixture`: one tokenizer over a weighted sample of
the sources, then each source into its own cache and split (harness/data/mixture.py: MixtureData).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import platform
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from transformers import PreTrainedTokenizerFast

from harness.config import ConfigError, DataConfig, SourceConfig
from harness.data.cache import atomic_directory, resolve_cache_dir
from harness.data.sources import iter_documents, source_spec
from harness.data.tokenizer import hash_texts, load_tokenizer, tokenizer_id

if TYPE_CHECKING:
    from harness.data.mixture import MixtureData

log = logging.getLogger(__name__)

TOKENS_FILE = "tokens.bin"
MANIFEST_FILE = "manifest.json"
# Bump when the file layout or the encoding recipe changes; it is part of the cache key.
FORMAT_VERSION = 1
# The training split must hold at least this many tokens (a few windows of a long context).
MIN_TRAIN_TOKENS = 8192
# Characters per encode_batch call: large enough to keep the Rust encoder busy, small enough that
# the token lists of one batch stay a few tens of MB.
_ENCODE_BATCH_CHARS = 2_000_000


class TokenCacheError(RuntimeError):
    """A token cache directory on disk does not match its manifest."""


@dataclass(frozen=True)
class TokenData:
    """The tokenized dataset of a run: read-only train/val token arrays plus their provenance."""

    train: np.ndarray  # 1-D np.memmap of token ids: the training region of the stream
    val: np.ndarray  # 1-D np.memmap: the last `val_tokens` ids of the stream, never trained on
    vocab_size: int  # len(tokenizer), including special tokens
    tokenizer: PreTrainedTokenizerFast
    manifest: dict[str, Any] = field(repr=False)  # the on-disk manifest plus this run's "split"
    cache_path: Path

    @property
    def unique_tokens(self) -> int:
        """Size of the training split in tokens (what `epochs` divides by, harness/data/repetition.py)."""
        return int(self.train.shape[0])

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)


def prepare_tokens(cfg: DataConfig) -> TokenData:
    """Read, tokenize and cache `cfg`'s text (or reuse the cache), and split it into train/val.
    A mixture (`data.sources`) gives a MixtureData instead (harness/data/mixture.py)."""
    if cfg.sources:
        return prepare_mixture(cfg)  # type: ignore[return-value]
    cfg.validate()
    spec = source_spec(cfg)
    documents = list(iter_documents(cfg))
    if not documents:
        raise ConfigError(f"data.source: {cfg.source!r} yielded no text; point it at non-empty data")
    text_hash = hash_texts(documents)
    tokenizer = load_tokenizer(cfg, documents, text_hash=text_hash)
    return build_token_data(cfg, documents, tokenizer, spec=spec, text_hash=text_hash)


def build_token_data(cfg: DataConfig, documents: Sequence[str], tokenizer: PreTrainedTokenizerFast, *,
                     spec: dict[str, Any], text_hash: str) -> TokenData:
    """Tokenize `documents` into the cache (or reuse it) and split it into train/val."""
    key = token_cache_key(spec, text_hash, tokenizer)
    cache_path = resolve_cache_dir(cfg) / "tokens" / key
    if (cache_path / MANIFEST_FILE).is_file():
        log.info("reusing token cache %s", cache_path)
    else:
        log.info("tokenizing %d documents (%d chars) into %s", len(documents),
                 sum(map(len, documents)), cache_path)
        with atomic_directory(cache_path) as tmp_dir:
            write_token_cache(tmp_dir, documents, tokenizer, spec=spec, text_hash=text_hash)

    manifest, tokens = open_token_cache(cache_path)
    train, val = split_train_val(tokens, cfg.val_tokens)
    manifest["split"] = {"n_train": int(train.shape[0]), "n_val": int(val.shape[0])}
    return TokenData(train=train, val=val, vocab_size=len(tokenizer), tokenizer=tokenizer,
                     manifest=manifest, cache_path=cache_path)


# --- mixtures (harness/data/mixture.py) ----------------------------------------------------------


def _normalised(weights: list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def source_config(cfg: DataConfig, source: SourceConfig) -> DataConfig:
    """A single-source DataConfig for one source of the mixture (same tokenizer and cache settings)."""
    return dataclasses.replace(cfg, source=source.source, max_chars=source.max_chars, hf_config=source.hf_config,
                               split=source.split, text_field=source.text_field, sources=[], weight_schedule=[])


def tokenizer_sample(documents: list[list[str]], weights: np.ndarray, total_chars: int) -> list[str]:
    """Each source's first documents up to its weighted share of `total_chars` (the last one cut)."""
    sample: list[str] = []
    for docs, share in zip(documents, weights):
        budget = int(round(share * total_chars))
        for doc in docs:
            if budget <= 0:
                break
            sample.append(doc[:budget])
            budget -= len(sample[-1])
    return sample


def prepare_mixture(cfg: DataConfig) -> "MixtureData":
    """Read every source, train (or load) the one tokenizer, tokenize each source into its cache."""
    from harness.data.mixture import MixtureData

    cfg.validate()
    weights = _normalised([s.weight for s in cfg.sources])
    single = [source_config(cfg, s) for s in cfg.sources]
    documents = []
    for s, sub in zip(cfg.sources, single):
        docs = list(iter_documents(sub))
        if not docs:
            raise ConfigError(f"data.sources: {s.name} ({s.source!r}) yielded no text; point it at non-empty data")
        documents.append(docs)
    sample = tokenizer_sample(documents, weights, cfg.tokenizer_chars) if cfg.tokenizer == "bpe" else []
    tokenizer = load_tokenizer(cfg, sample)
    parts = []
    for s, sub, docs in zip(cfg.sources, single, documents):
        try:
            parts.append(build_token_data(sub, docs, tokenizer, spec=source_spec(sub), text_hash=hash_texts(docs)))
        except ConfigError as err:
            raise ConfigError(f"data.sources[{s.name}]: {err}") from None
    schedule = tuple((p.step, _normalised([p.weights[s.name] for s in cfg.sources])) for p in cfg.weight_schedule)
    manifest = {
        "mixture": [{"name": s.name, "weight": float(w), "cache": str(p.cache_path), **p.manifest}
                    for s, w, p in zip(cfg.sources, weights, parts)],
        "weight_schedule": [{"step": step, "weights": dict(zip((s.name for s in cfg.sources), map(float, w)))}
                            for step, w in schedule],
        "tokenizer_sample_chars": sum(map(len, sample)),
    }
    return MixtureData(names=tuple(s.name for s in cfg.sources), parts=tuple(parts), weights=weights,
                       schedule=schedule, tokenizer=tokenizer, manifest=manifest)


def token_cache_key(spec: dict[str, Any], text_hash: str, tokenizer: PreTrainedTokenizerFast) -> str:
    raw = json.dumps({
        "source": spec,  # includes the effective max_chars
        "content": text_hash,
        "tokenizer": tokenizer_id(tokenizer),
        "vocab_size": len(tokenizer),
        "format": FORMAT_VERSION,
    }, sort_keys=True)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.uint32)


def write_token_cache(
    directory: Path,
    documents: Sequence[str],
    tokenizer: PreTrainedTokenizerFast,
    *,
    spec: dict[str, Any],
    text_hash: str,
) -> dict[str, Any]:
    """Write `tokens.bin` and `manifest.json` into `directory`; return the manifest."""
    dtype = token_dtype(len(tokenizer))
    file_hash = hashlib.sha256()
    n_tokens = 0
    with open(directory / TOKENS_FILE, "wb") as f:
        for ids in encode_documents(documents, tokenizer, dtype):
            data = ids.tobytes()
            f.write(data)
            file_hash.update(data)
            n_tokens += ids.shape[0]
    manifest = {
        "format_version": FORMAT_VERSION,
        "source": spec,
        "content_hash": text_hash,
        "n_documents": len(documents),
        "n_chars": sum(map(len, documents)),
        "tokenizer": {
            "name": tokenizer.name_or_path,
            "id": tokenizer_id(tokenizer),
            "vocab_size": len(tokenizer),
            "eos_id": tokenizer.eos_token_id,
        },
        "n_tokens": n_tokens,
        "dtype": dtype.name,
        "tokens_file": TOKENS_FILE,
        "tokens_sha256": file_hash.hexdigest(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def encode_documents(
    documents: Sequence[str], tokenizer: PreTrainedTokenizerFast, dtype: np.dtype
) -> Iterator[np.ndarray]:
    """Yield arrays of token ids, each document's tokens followed by eos, in document order."""
    backend = tokenizer.backend_tokenizer
    # encode_batch_fast skips offset tracking (we never use offsets); older tokenizers lack it.
    encode_batch = getattr(backend, "encode_batch_fast", backend.encode_batch)
    eos = tokenizer.eos_token_id
    for batch in _batches_by_chars(documents, _ENCODE_BATCH_CHARS):
        # add_special_tokens=False: no BOS/CLS from a pretrained post-processor; we add eos ourselves.
        encodings = encode_batch(batch, add_special_tokens=False)
        # One small array per document then one concatenate: 2x faster than flattening in Python.
        yield np.concatenate([np.asarray([*enc.ids, eos], dtype=dtype) for enc in encodings])


def _batches_by_chars(documents: Sequence[str], max_chars: int) -> Iterator[list[str]]:
    batch: list[str] = []
    size = 0
    for doc in documents:
        batch.append(doc)
        size += len(doc)
        if size >= max_chars:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def open_token_cache(cache_path: Path) -> tuple[dict[str, Any], np.memmap]:
    """The manifest and a read-only memmap of the token file, after checking they agree."""
    manifest = json.loads((cache_path / MANIFEST_FILE).read_text())
    dtype = np.dtype(manifest["dtype"])
    tokens_path = cache_path / manifest["tokens_file"]
    expected = manifest["n_tokens"] * dtype.itemsize
    actual = tokens_path.stat().st_size if tokens_path.is_file() else -1
    if actual != expected:
        raise TokenCacheError(
            f"{tokens_path} has {actual} bytes but its manifest says {manifest['n_tokens']} "
            f"{dtype.name} tokens ({expected} bytes). The cache was modified; delete {cache_path} "
            "and it will be rebuilt"
        )
    tokens = np.memmap(tokens_path, dtype=dtype, mode="r", shape=(manifest["n_tokens"],))
    return manifest, tokens


def split_train_val(tokens: np.ndarray, val_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(everything but the last `val_tokens`, the last `val_tokens`): views, no copy."""
    n_train = tokens.shape[0] - val_tokens
    if n_train < MIN_TRAIN_TOKENS:
        raise ConfigError(
            f"data.val_tokens: the token stream has {tokens.shape[0]} tokens; holding out "
            f"val_tokens={val_tokens} leaves {max(n_train, 0)} for training, fewer than the "
            f"{MIN_TRAIN_TOKENS} needed. Lower data.val_tokens, or give more text (raise "
            "data.max_chars or use a larger data.source)"
        )
    if n_train < val_tokens:
        log.warning("validation (%d tokens) is larger than training (%d tokens)", val_tokens, n_train)
    return tokens[:n_train], tokens[n_train:]


def library_versions() -> dict[str, str]:
    # Read from package metadata: importing `datasets` only for its version costs seconds, and a run
    # on the embedded text must not need it installed (a GPU image may lack it).
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "tokenizers": installed("tokenizers"),
        "transformers": installed("transformers"),
        "datasets": installed("datasets"),
        "platform": sys.platform,
    }
