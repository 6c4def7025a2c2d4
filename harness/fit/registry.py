"""Name -> factory for every law the CLI (`python -m harness.fit`) can fit.

CURVE_LAWS take whole loss curves (per-step LR, loss where observed); SCALING_LAWS take one row per
run (columns such as N, D). A factory is any zero-argument callable returning a fresh `Law`
(harness/fit/laws/base.py). To add a law, import it here and add one line.
"""

from __future__ import annotations

from typing import Callable

from harness.fit.laws.base import Law
from harness.fit.laws.curve import PowerLaw, TissueLaw
from harness.fit.laws.downstream import GadreErrorLaw
from harness.fit.laws.final_loss import ChinchillaLaw, ComputeLaw, FarseerLaw, GadreLaw, KaplanLaw
from harness.fit.laws.mpl import MPLRecipe, MultiPowerLaw

LawFactory = Callable[[], Law]

CURVE_LAWS: dict[str, LawFactory] = {
    "mpl": MultiPowerLaw,
    # The authors' MPL code verbatim: LR rises during warmup also enter the drop term LD.
    "mpl-code": lambda: MultiPowerLaw(warmup_in_drop=True),
    # The authors' fitting recipe (early-stopped AdamW); extrapolates better on the MPL benchmark.
    "mpl-recipe": MPLRecipe,
    "tissue": lambda: TissueLaw(warmup="peak"),
    "tissue-true-warmup": lambda: TissueLaw(warmup="true"),
    "power": PowerLaw,
}

SCALING_LAWS: dict[str, LawFactory] = {
    # Final loss over (N, D): columns N, D, loss (harness/fit/laws/final_loss.py).
    "chinchilla": ChinchillaLaw,
    "kaplan": KaplanLaw,
    "gadre": GadreLaw,  # derives M = D/N and C = 6ND
    "farseer": FarseerLaw,
    "compute": ComputeLaw,  # L(C); C from a C column if present, else 6ND
    # Downstream error from loss: columns loss, error (harness/fit/laws/downstream.py).
    "gadre-error": GadreErrorLaw,
}
