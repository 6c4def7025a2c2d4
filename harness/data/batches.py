"""Batches of token windows: random for training, fixed for validation.

Both return LongTensor[batch, seq_len + 1]: inputs are `[:, :-1]`, targets `[:, 1:]`.

`train_batch` is a pure function of (seed, step): the window offsets come from a generator seeded
by exactly those two numbers, with no state carried between calls. A run resumed at step k draws
the batch it would have drawn without the interruption, so resuming never replays or skips data,
and there is no data-loader state to checkpoint. Data-parallel ranks and micro-batches each
compute the same global batch and take their rows of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from harness.config import ConfigError

if TYPE_CHECKING:  # harness.data.tokens prepares mixtures, whose module imports this one
    from harness.data.tokens import TokenData

# Mixed into the seed so the training stream is independent of any other generator seeded with
# the run seed (model init, dropout, ...). Any fixed constant works; changing it changes all runs.
_TRAIN_STREAM_ID = 0x7472_6169  # "trai"


def train_batch(data: TokenData, *, seed: int, step: int, batch_size: int, seq_len: int) -> torch.Tensor:
    """`batch_size` windows of `seq_len + 1` tokens at uniformly random offsets of the train split
    (of a mixture: each row from a source drawn by weight, harness/data/mixture.py)."""
    if getattr(data, "is_mixture", False):  # a MixtureData: it draws each row's source, then the window
        return data.train_batch(seed=seed, step=step, batch_size=batch_size, seq_len=seq_len)
    if seed < 0 or step < 0:
        raise ValueError(f"train_batch: seed and step must be >= 0, got seed={seed}, step={step}")
    _check_shape(batch_size, seq_len)
    n_train = data.train.shape[0]
    window = seq_len + 1
    if n_train < window:
        raise ConfigError(
            f"train.seq_len: a window of {window} tokens does not fit in the {n_train}-token train "
            "split; shorten train.seq_len or give more text (data.max_chars, data.source)"
        )
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([_TRAIN_STREAM_ID, seed, step])))
    starts = rng.integers(0, n_train - window + 1, size=batch_size)
    return _gather_windows(data.train, starts, window)


def val_batches(data: TokenData, *, batch_size: int, seq_len: int, n_batches: int) -> list[torch.Tensor]:
    """`n_batches` fixed batches of non-overlapping windows spread evenly over the val split.

    Depends only on the val split and the three sizes: the same every call and every run on the
    same data, so validation curves are comparable point to point.
    """
    if getattr(data, "is_mixture", False):
        raise ConfigError("data.sources: a mixture has one fixed val set per source "
                          "(harness.data.mixture.val_sets), not one")
    _check_shape(batch_size, seq_len)
    if n_batches <= 0:
        raise ValueError(f"val_batches: n_batches must be positive, got {n_batches}")
    n_val = data.val.shape[0]
    window = seq_len + 1
    n_windows = batch_size * n_batches
    needed = n_windows * window
    if needed > n_val:
        raise ConfigError(
            f"data.val_tokens: validation needs {n_batches} batches x {batch_size} windows x "
            f"{window} tokens = {needed} tokens, but the val split holds {n_val}. Raise "
            f"data.val_tokens to at least {needed}, or lower train.eval_sequences"
        )
    # Evenly spaced starts with stride >= window: windows never overlap and cover the whole split.
    stride = n_val // n_windows
    starts = np.arange(n_windows, dtype=np.int64) * stride
    windows = _gather_windows(data.val, starts, window)
    return list(windows.split(batch_size))


def _gather_windows(tokens: np.ndarray, starts: np.ndarray, window: int) -> torch.Tensor:
    index = starts[:, None] + np.arange(window, dtype=np.int64)[None, :]
    # Fancy indexing reads only these windows from the memmap; int64 is what embeddings and
    # cross-entropy take (uint16 has no torch equivalent for indexing).
    return torch.from_numpy(np.asarray(tokens[index], dtype=np.int64))


def _check_shape(batch_size: int, seq_len: int) -> None:
    if batch_size <= 0 or seq_len <= 0:
        raise ValueError(f"batch_size and seq_len must be positive, got {batch_size} and {seq_len}")
