"""Multiple-choice metrics from the per-choice log-likelihoods lm-eval's requests return.

Per item, with ll_c = log p(choice c | context) summed over the choice's tokens and g the gold index:
  acc              argmax_c ll_c == g
  acc_norm         argmax_c ll_c / len(choice_c in characters) == g   (lm-eval's acc_norm)
  error            1 - acc (the Gadre et al. error)
  logprob_correct  ll_g
  p_correct        softmax(ll)_g: the probability mass on the correct choice, normalized over the
                   choices ("Why has predicting downstream capabilities ... remained elusive?")
  p_incorrect      1 - p_correct: the mass on the other choices, normalized
  p_correct_raw    exp(ll_g): the raw mass the model puts on the correct continuation
  p_incorrect_raw  sum_{c != g} exp(ll_c): the raw mass on the incorrect ones
A task's value of each metric is the mean over its items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

MC_METRICS = ("acc", "acc_norm", "error", "logprob_correct", "p_correct", "p_incorrect", "p_correct_raw",
              "p_incorrect_raw")


@dataclass(frozen=True)
class ChoiceItem:
    """One multiple-choice item: log-likelihood per choice, the choice strings, the gold index."""

    loglikelihoods: tuple[float, ...]
    choices: tuple[str, ...]
    gold: int

    def __post_init__(self) -> None:
        if len(self.loglikelihoods) != len(self.choices) or not 0 <= self.gold < len(self.choices):
            raise ValueError(f"choice item: {len(self.loglikelihoods)} log-likelihoods for {len(self.choices)} "
                             f"choices with gold {self.gold}; the task's doc_to_choice/doc_to_target disagree")


def item_metrics(item: ChoiceItem) -> dict[str, float]:
    ll = np.asarray(item.loglikelihoods, dtype=float)
    lengths = np.asarray([max(len(c), 1) for c in item.choices], dtype=float)
    g = item.gold
    normalized = np.exp(ll - ll.max())
    normalized /= normalized.sum()
    raw = np.exp(ll)
    acc = float(np.argmax(ll) == g)
    return {"acc": acc, "acc_norm": float(np.argmax(ll / lengths) == g), "error": 1.0 - acc,
            "logprob_correct": float(ll[g]), "p_correct": float(normalized[g]), "p_incorrect": float(1.0 - normalized[g]),
            "p_correct_raw": float(raw[g]), "p_incorrect_raw": float(raw.sum() - raw[g])}


def task_metrics(items: Sequence[ChoiceItem]) -> dict[str, float]:
    """Mean of each item metric over the task's items."""
    if not items:
        raise ValueError("no items to score")
    per_item = [item_metrics(it) for it in items]
    return {name: float(np.mean([m[name] for m in per_item])) for name in MC_METRICS}
