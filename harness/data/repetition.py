"""Data repetition: how many passes over the training split a run makes.

`unique_tokens` is the size of the training split in tokens (TokenData.train); `epochs` is tokens
seen / unique tokens. Batches are random windows (harness/data/batches.py), so `epochs` > 1 means
the run sees each token about that many times on average: a scaling axis D that exceeds the unique
tokens measures repeated data, not fresh data, and every table that reports D reports this next to it.
Plans (harness/experiment/plan.py, the ladder's dry run) count the unique tokens before any run
with `UniqueTokens` and flag the runs that would repeat data.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any, Optional

from harness.checks import ConfigError


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


class UniqueTokens:
    """Unique tokens of each distinct data config's training split, prepared (tokenized and cached,
    as the run will) once. Hub datasets are not downloaded for this: None, with a note."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.cache: dict[str, Optional[int]] = {}
        self.notes: list[str] = []

    def of(self, data_cfg: Any) -> Optional[int]:
        if not self.enabled:
            return None
        key = json.dumps(dataclasses.asdict(data_cfg), sort_keys=True, default=str)
        if key not in self.cache:
            self.cache[key] = self._count(data_cfg)
        return self.cache[key]

    def _count(self, data_cfg: Any) -> Optional[int]:
        if data_cfg.source.startswith("hf:"):
            self.notes.append(f"data.source={data_cfg.source}: unique tokens not counted at plan time (a hub "
                              "dataset is not downloaded to plan); each run logs them and warns when it repeats data")
            return None
        from harness.data.tokens import prepare_tokens

        try:
            return prepare_tokens(copy.deepcopy(data_cfg)).unique_tokens
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - unreadable data fails the plan, as it would fail the run
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise ConfigError(f"data.source: {data_cfg.source!r} cannot be prepared to count its unique tokens: "
                              f"{message} (fix the data.* overrides, or plan with --no-data-check)") from None
