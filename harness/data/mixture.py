"""Data mixtures: several sources, one tokenizer, rows drawn by weight as a pure function of (seed, step).

    data:
      sources:
        - {name: general, source: deb:dict-gcide, weight: 0.5}
        - {name: code, source: "embedded:code", weight: 0.5}
      weight_schedule:                       # optional: from step 201 on, another mix
        - {step: 201, weights: {general: 0.8, code: 0.2}}

* One tokenizer over all sources: a BPE trained on `data.tokenizer_chars` characters, each source
  contributing its share by `sources[i].weight` (its first documents, in the source's fixed order),
  or the pretrained `data.tokenizer`. The weights of `weight_schedule` never change the tokenizer,
  so a run that continues another on a new mix (train.init_from) reads the same token ids.
* Each source is tokenized into its own cache (harness/data/tokens.py) and split on its own: its last
  `data.val_tokens` tokens are its fixed val set, so every run on the source is validated on the
  same windows whatever the weights (val_loss/<name> in the curve).
* A training batch: each row's source is drawn with the step's weights, then the row's window
  uniformly in that source's train split, all from one generator seeded by (seed, step) alone, so a
  resumed run draws the batch it would have drawn, as for one source (harness/data/batches.py).
  Tokens per source are counted exactly from the same draws (`source_rows`).

Preparing a mixture (reading, the tokenizer, the caches) is harness.data.tokens.prepare_mixture;
this module holds the prepared MixtureData and its sampling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from harness.config import ConfigError
from harness.data.batches import _gather_windows, val_batches

if TYPE_CHECKING:  # harness.data.tokens prepares mixtures (prepare_mixture) and imports this module
    from harness.data.tokens import TokenData

# Mixed into the seed like batches._TRAIN_STREAM_ID, but a different stream: "mixt".
_MIXTURE_STREAM_ID = 0x6D69_7874


@dataclass(frozen=True)
class MixtureData:
    """The sources of a mixture, tokenized with one tokenizer: what a run trains and validates on.

    Duck-types the parts of TokenData the rest of the harness reads (vocab_size, tokenizer, manifest,
    unique_tokens, eos_id)."""

    is_mixture: ClassVar[bool] = True  # what harness.data.batches dispatches on (it cannot import this module)
    names: tuple[str, ...]
    parts: tuple[TokenData, ...]  # one per source, same order as names
    weights: np.ndarray  # float64[n_sources], normalised: the weights before the first switch
    schedule: tuple[tuple[int, np.ndarray], ...]  # (first step, normalised weights), increasing steps
    tokenizer: PreTrainedTokenizerFast
    manifest: dict[str, Any]

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    @property
    def unique_tokens(self) -> int:
        """All sources' training splits together."""
        return int(sum(p.train.shape[0] for p in self.parts))

    @property
    def eos_id(self) -> int:
        return int(self.tokenizer.eos_token_id)

    @property
    def cache_path(self) -> Path:
        return self.parts[0].cache_path

    def train_batch(self, *, seed: int, step: int, batch_size: int, seq_len: int) -> torch.Tensor:
        """What harness.data.batches.train_batch returns for a mixture (it calls this)."""
        return mixture_batch(self, seed=seed, step=step, batch_size=batch_size, seq_len=seq_len)

    def weights_at(self, step: int) -> np.ndarray:
        """The normalised sampling weights of optimizer step `step` (the last switch at or before it)."""
        current = self.weights
        for first, weights in self.schedule:
            if step >= first:
                current = weights
        return current


def is_mixture(data: Any) -> bool:
    return getattr(data, "is_mixture", False) is True


def _generator(seed: int, step: int) -> np.random.Generator:
    if seed < 0 or step < 0:
        raise ValueError(f"mixture_batch: seed and step must be >= 0, got seed={seed}, step={step}")
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([_MIXTURE_STREAM_ID, seed, step])))


def _draw_sources(data: MixtureData, rng: np.random.Generator, step: int, batch_size: int) -> np.ndarray:
    """The first draws of a step's generator: each row's source index, by the step's weights."""
    return rng.choice(len(data.parts), size=batch_size, p=data.weights_at(step))


def source_rows(data: MixtureData, *, seed: int, step: int, batch_size: int) -> np.ndarray:
    """int64[batch_size]: the source index of each row of step `step`'s batch (the first draws of
    the step's generator, so counting tokens per source needs no windows)."""
    return _draw_sources(data, _generator(seed, step), step, batch_size)


def mixture_batch(data: MixtureData, *, seed: int, step: int, batch_size: int, seq_len: int) -> torch.Tensor:
    """LongTensor[batch_size, seq_len + 1]: row i is a window of source source_rows(...)[i]."""
    rng = _generator(seed, step)
    rows = _draw_sources(data, rng, step, batch_size)
    window = seq_len + 1
    out = torch.empty((batch_size, window), dtype=torch.int64)
    for k, (name, part) in enumerate(zip(data.names, data.parts)):
        picked = np.flatnonzero(rows == k)
        n_train = part.train.shape[0]
        if n_train < window:
            raise ConfigError(f"train.seq_len: a window of {window} tokens does not fit in source {name}'s "
                              f"{n_train}-token train split; shorten train.seq_len or give it more text")
        # Drawn for every source, even one with no rows this step: the generator's use is then the
        # same whatever the draws above, which keeps the stream simple to reason about.
        starts = rng.integers(0, n_train - window + 1, size=batch_size)[:picked.size]
        if picked.size:
            out[torch.from_numpy(picked)] = _gather_windows(part.train, starts, window)
    return out


def tokens_per_source(data: MixtureData, *, seed: int, first_step: int, last_step: int, batch_size: int,
                      seq_len: int) -> np.ndarray:
    """int64[n_sources]: tokens (rows x seq_len) each source gave steps first_step..last_step."""
    counts = np.zeros(len(data.parts), dtype=np.int64)
    for step in range(first_step, last_step + 1):
        counts += np.bincount(source_rows(data, seed=seed, step=step, batch_size=batch_size),
                              minlength=len(data.parts))
    return counts * seq_len


def val_sets(data: MixtureData, *, n_sequences: int, seq_len: int) -> dict[str, torch.Tensor]:
    """Each source's fixed val windows (harness/data/batches.val_batches on its own val split)."""
    out = {}
    for name, part in zip(data.names, data.parts):
        try:
            (out[name],) = val_batches(part, batch_size=n_sequences, seq_len=seq_len, n_batches=1)
        except ConfigError as err:
            raise ConfigError(f"data.sources[{name}]: {err}") from None
    return out
