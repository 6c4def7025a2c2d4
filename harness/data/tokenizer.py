"""Tokenizers: a byte-level BPE trained on the run's own text (cached), or a pretrained one.

`DataConfig.tokenizer == "bpe"` trains a GPT-2-style byte-level BPE of `vocab_size` tokens
(256 byte tokens + merges + `<|endoftext|>`) on the training text, once: the result is stored at
`<cache_dir>/tokenizers/<key>/tokenizer.json` with key = hash(text hash, vocab size, recipe
version) and reused by every later run on the same text. Any other value is a name or path for
`AutoTokenizer.from_pretrained`.

Either way the result is a `transformers.PreTrainedTokenizerFast` (so `save_pretrained` exports it
next to a model) with a defined `eos_token_id`, which separates documents in the token stream.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from harness.config import ConfigError, DataConfig
from harness.data.cache import atomic_directory, resolve_cache_dir

log = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"

# Bump when the BPE recipe below changes, so old cached tokenizers are not mistaken for new ones.
_BPE_RECIPE_VERSION = 1


def load_tokenizer(
    cfg: DataConfig, texts_for_training: Sequence[str], *, text_hash: Optional[str] = None
) -> PreTrainedTokenizerFast:
    """The tokenizer `cfg` asks for; `texts_for_training` is read only when a BPE must be trained.

    `text_hash` (see `hash_texts`) saves hashing the texts again when the caller already did.
    """
    if cfg.tokenizer == "bpe":
        return load_or_train_bpe(cfg, texts_for_training, text_hash=text_hash)
    return load_pretrained(cfg.tokenizer)


def load_or_train_bpe(
    cfg: DataConfig, texts: Sequence[str], *, text_hash: Optional[str] = None
) -> PreTrainedTokenizerFast:
    if text_hash is None:
        text_hash = hash_texts(texts)
    key = bpe_cache_key(text_hash, cfg.vocab_size)
    final_dir = resolve_cache_dir(cfg) / "tokenizers" / key
    tokenizer_file = final_dir / "tokenizer.json"
    if not tokenizer_file.is_file():
        if not any(texts):
            raise ConfigError("data.source: no text to train the BPE tokenizer on; the source is empty")
        log.info("training a byte-level BPE (vocab %d) on %d documents", cfg.vocab_size, len(texts))
        trained = train_byte_level_bpe(texts, cfg.vocab_size)
        with atomic_directory(final_dir) as tmp_dir:
            trained.save(str(tmp_dir / "tokenizer.json"))
            (tmp_dir / "recipe.json").write_text(json.dumps(
                {"text_hash": text_hash, "vocab_size": cfg.vocab_size, "recipe_version": _BPE_RECIPE_VERSION},
                indent=2))
    return wrap_bpe(tokenizer_file, name=f"bpe-{key}")


def bpe_cache_key(text_hash: str, vocab_size: int) -> str:
    raw = json.dumps({"text": text_hash, "vocab": vocab_size, "recipe": _BPE_RECIPE_VERSION})
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def train_byte_level_bpe(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """A GPT-2-style byte-level BPE: any byte sequence is encodable, no unknown token."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],
        # All 256 bytes from the start, so text unseen in training never falls outside the vocab.
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tokenizer


def wrap_bpe(tokenizer_file: Path, *, name: str) -> PreTrainedTokenizerFast:
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_file=str(tokenizer_file),
        eos_token=EOS_TOKEN,
        bos_token=EOS_TOKEN,  # as GPT-2: one special token marks document boundaries both ways
    )
    tokenizer.name_or_path = name
    return tokenizer


def load_pretrained(name: str) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(name, use_fast=True)
    except Exception as err:  # offline, unknown name, missing files: the fix is the same
        raise ConfigError(
            f"data.tokenizer: could not load pretrained tokenizer {name!r}: {type(err).__name__}: {err}. "
            "Use data.tokenizer=bpe (trained locally, works offline) or a local directory with a "
            "tokenizer.json"
        ) from err
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ConfigError(
            f"data.tokenizer: {name!r} has no fast (Rust) tokenizer; the harness needs one for "
            "batched encoding. Pick a tokenizer that ships a tokenizer.json"
        )
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"data.tokenizer: {name!r} defines no eos token, which the harness needs between "
            "documents. Pick a tokenizer with an eos token, or use data.tokenizer=bpe"
        )
    return tokenizer


def tokenizer_id(tokenizer: PreTrainedTokenizerFast) -> str:
    """A fingerprint of what the tokenizer does (its full serialized form), not just its name."""
    serialized = tokenizer.backend_tokenizer.to_str()
    digest = hashlib.sha256(serialized.encode()).hexdigest()[:16]
    return f"{tokenizer.name_or_path}@{digest}"


def hash_texts(texts: Sequence[str]) -> str:
    """sha256 of the documents, with their boundaries (so ["ab"] and ["a", "b"] differ)."""
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8", errors="surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()
