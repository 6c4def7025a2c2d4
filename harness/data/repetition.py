"""Data repetition: how many passes over the training split a run makes.

`unique_tokens` is the size of the training split in tokens (TokenData.train); `epochs` is tokens
seen / unique tokens. Batches are random windows (harness/data/batches.py), so `epochs` > 1 means
the run sees each token about that many times on average: a scaling axis D that exceeds the unique
tokens measures repeated data, not fresh data, and every table that reports D reports this next to it.
"""

from __future__ import annotations


def epochs(tokens: float, unique_tokens: int) -> float:
    """Tokens seen / unique tokens of the training split."""
    if unique_tokens <= 0:
        raise ValueError(f"epochs: unique_tokens must be positive, got {unique_tokens}")
    return tokens / unique_tokens


def repetition_warning(planned_tokens: int, unique_tokens: int) -> str | None:
    """A one-line warning when `planned_tokens` exceeds the training split, else None."""
    if planned_tokens <= unique_tokens:
        return None
    return (f"warning: this run plans {planned_tokens:,} training tokens but the training split holds "
            f"{unique_tokens:,} unique tokens: it repeats the data {epochs(planned_tokens, unique_tokens):.2f} "
            "epochs. Scaling results in D then measure repeated data; use a larger data.source "
            "(e.g. data=gcide) or fewer train.steps for fresh tokens")
