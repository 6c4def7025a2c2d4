"""Name -> factory for every law the CLI (`python -m harness.fit curve|scaling --law NAME`) can fit.

CURVE_LAWS take whole loss curves (per-step LR, loss where observed); SCALING_LAWS take one row per
run (columns such as N, D). A factory is any zero-argument callable returning a fresh `Law`
(harness/fit/laws/base.py). Each name equals the built law's `name` (hyphens, never underscores;
tests/test_fit_cli.py checks every entry), so params.json reports the name the user typed.

The factories import their law's module only when called: listing the names (the CLI's `--help`
and `--law` choices) must not pay for numpy, scipy and the laws. To add a law, add one line.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from harness.fit.laws.base import Law

LawFactory = Callable[[], "Law"]


def _law(module: str, cls: str, **kwargs: Any) -> LawFactory:
    """Factory for `harness.fit.laws.<module>.<cls>(**kwargs)`, importing the module on first use."""

    def build() -> "Law":
        return getattr(import_module(f"harness.fit.laws.{module}"), cls)(**kwargs)

    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    build.__qualname__ = build.__name__ = f"{cls}({args})"
    return build


CURVE_LAWS: dict[str, LawFactory] = {
    "mpl": _law("mpl", "MultiPowerLaw"),
    # The authors' MPL code verbatim: LR rises during warmup also enter the drop term LD.
    "mpl-code": _law("mpl", "MultiPowerLaw", warmup_in_drop=True),
    # The authors' fitting recipe (early-stopped AdamW); extrapolates better on the MPL benchmark.
    "mpl-recipe": _law("mpl", "MPLRecipe"),
    "tissue": _law("curve", "TissueLaw", warmup="peak"),
    "tissue-true-warmup": _law("curve", "TissueLaw", warmup="true"),
    "power": _law("curve", "PowerCurveLaw"),
    # Signal on the LR-area clock + an LR-dependent noise floor forgotten over LR area; the
    # default adds a clock sum lr^p, p <= 1 (laws/lr_noise.py, docs/CURVE_LAWS.md).
    "lr-noise-clock": _law("lr_noise", "LRNoiseClockLaw"),
    "lr-noise": _law("lr_noise", "LRNoiseLaw"),
    "lr-noise2": _law("lr_noise", "LRNoise2Law"),
    "lr-noise-sqrt": _law("lr_noise", "LRNoiseSqrtLaw"),  # p fixed at 1/2: peak-LR transfer (issue 12)
    # The last-iterate bound of SGD on convex problems as a curve law (an explicit peak-LR optimum),
    # and its noise part as lr-noise-sqrt's noise term (laws/convex_bound.py, docs/CURVE_LAWS.md).
    "convex-bound": _law("convex_bound", "ConvexBoundLaw"),
    "convex-noise-sqrt": _law("convex_bound", "ConvexNoiseSqrtLaw"),
    # convex-noise-sqrt with its noise on the EFFECTIVE LR lr / ||W||, ||W||^2 grown by the LR area from
    # an initial LR area S0 (held at 3): the law for peak-LR transfer from curves at one peak LR
    # (laws/eff_lr.py, docs/CURVE_LAWS.md "Effective-LR law").
    "convex-noise-eff": _law("eff_lr", "ConvexNoiseEffLaw"),
    # The same with S0 fitted: for fit curves at two or more peak LRs (one peak LR does not identify it; the
    # CLI suggests it when the fit curves span several). With one extra constant run, S0 held transferred
    # better (docs/CURVE_LAWS.md "Two peak LRs").
    "convex-noise-eff-fit": _law("eff_lr", "ConvexNoiseEffFitLaw"),
}

# The law `python -m harness.fit curve` fits when --law is not given, and the one reports lead with.
# Chosen by scripts/validate_curve_laws.py (docs/CURVE_LAWS.md): the best mean rank of validation
# error on the fit curves alone, and the lowest held-out error on the MPL split and our proxies.
DEFAULT_CURVE_LAW = "lr-noise-clock"

# Without --law, predictions at a peak LR no fit curve has are made by this law instead (--peak-lr-law
# overrides, `none` turns it off). One peak LR cannot show how the loss responds to the LR, and there the
# default is the weakest law we have: on the fresh sixth proxy set, scored once (docs/CURVE_LAWS.md
# "Effective-LR law: clock and area exponents"), convex-noise-eff transferred 1.77 % against the default's
# 4.21 % (mean of 600 and 1200 steps), and it won on every other set (1.72 % mean over five), while the
# default stays best at the fitted peak LR (MPL split 0.099 % vs 0.141 %).
DEFAULT_PEAK_LR_LAW = "convex-noise-eff"

SCALING_LAWS: dict[str, LawFactory] = {
    # Final loss over (N, D): columns N, D, loss (harness/fit/laws/final_loss.py).
    "chinchilla": _law("final_loss", "ChinchillaLaw"),
    "kaplan": _law("final_loss", "KaplanLaw"),
    "gadre": _law("final_loss", "GadreLaw"),  # derives M = D/N and C = 6ND
    "farseer": _law("final_loss", "FarseerLaw"),
    "compute": _law("final_loss", "ComputeLaw"),  # L(C); C from a C column if present, else 6ND
    # Chinchilla over the parameter count averaged over training: columns N_avg, D, loss (Journey Matters).
    "chinchilla-journey": _law("journey", "JourneyChinchillaLaw"),
    # Kaplan's L(N, S_min) with B_crit(L): columns N, step, B (tokens), loss (harness/fit/laws/critical_batch.py).
    "kaplan-steps": _law("critical_batch", "KaplanStepsLaw"),
    # Schaipp 2026's three-term law L(N, M, K): columns N, B (tokens), step, loss (harness/fit/laws/three_term.py).
    "three-term": _law("three_term", "ThreeTermLaw"),
    # Continued pre-training on a general:domain mix: one source's loss over the domain ratio and the
    # continued tokens, columns ratio, T, L0, loss; the CMR from it (harness/fit/laws/cmr.py).
    "cmr": _law("cmr", "CMRLossLaw"),
    # Downstream error from loss: columns loss, error (harness/fit/laws/downstream.py).
    "gadre-error": _law("downstream", "GadreErrorLaw"),
}
