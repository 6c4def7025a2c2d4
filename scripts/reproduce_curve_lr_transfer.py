"""Peak-LR transfer of the curve laws on our own proxies (issue 12; docs/CURVE_LAWS.md "Peak-LR transfer").

Reads a finished `curve_prediction` experiment (python -m harness.experiment run curve_prediction_cpu),
fits every law on its fit curves (constant + cosine + WSD-linear-20 % at 300 steps and peak LR 6e-3)
exactly as its report does, and prints the mean PredE per group with the peak-LR group split into
its two directions: 0.5x (3e-3, the VALIDATION direction the law choice was made on) and 2x (1.2e-2,
scored once, after the choice). `--p-grid` adds the clock-exponent scan (lr-noise-clock with p
held fixed) that chose lr-noise-sqrt's p = 1/2. `--noise-floor` prints how noisy the curves are.

    python scripts/reproduce_curve_lr_transfer.py experiments/curve_prediction_cpu [--p-grid] [--noise-floor]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.experiment.curve_prediction_curves import CurveKey, curve_label  # noqa: E402
from harness.experiment.curve_prediction_report import _curves, group_of  # noqa: E402
from harness.fit.fitter import fit_law, metrics  # noqa: E402
from harness.fit.laws.base import Param  # noqa: E402
from harness.fit.laws.lr_noise import LRNoiseClockLaw, LRNoiseLaw  # noqa: E402
from harness.fit.registry import CURVE_LAWS, DEFAULT_CURVE_LAW  # noqa: E402

LAWS = ("convex-noise-sqrt", "convex-bound", "lr-noise-sqrt", DEFAULT_CURVE_LAW, "lr-noise2", "mpl-recipe", "tissue-true-warmup", "power")
COLUMNS = ("fit", "val_0.5x", "test_2x", "horizon", "schedules")


def load(experiment: Path):
    import pandas as pd

    from harness.experiment.spec import typed_spec

    plan = json.loads((experiment / "plan.json").read_text())
    states = []
    for run in plan["runs"]:
        status = Path(run["run_dir"]) / "status.json"
        states.append({"run_id": run["run_id"],
                       "status": json.loads(status.read_text()).get("state") if status.is_file() else None})
    params = typed_spec(dict(plan["spec"]), source="plan.json").params
    warnings: list[str] = []
    curves = _curves(pd.DataFrame(states), plan, params, warnings)
    for w in warnings:
        print(f"note: {w}")
    return curves, params


def column(key: CurveKey, params) -> str | None:
    group = group_of(key, params)
    if group != "peak_lr":
        return group if group in COLUMNS else None
    return "val_0.5x" if key.peak_lr < params.fit_peak_lr else "test_2x"


def scores(law, curves, params) -> tuple[dict[str, float], np.ndarray]:
    fit_set = [curves[CurveKey(s, params.fit_horizon, params.fit_peak_lr)] for s in params.fit_schedules]
    fit = fit_law(law, law.prepare(fit_set), np.concatenate([c.loss[c.eval_index()] for c in fit_set]))
    per: dict[str, list[float]] = {}
    for key, curve in curves.items():
        col = column(key, params)
        if col is None:
            continue
        obs = curve.loss[curve.eval_index()]
        with np.errstate(all="ignore"):
            pred = np.asarray(law.predict(fit.theta, law.prepare([curve])), dtype=float)
        ok = np.isfinite(obs)
        per.setdefault(col, []).append(metrics(obs[ok], pred[ok])["prede"])
    return {c: 100 * float(np.mean(v)) for c, v in per.items()}, fit.theta


def clock_fixed(p: float) -> LRNoiseClockLaw:
    law = LRNoiseClockLaw()
    law.params = LRNoiseLaw.params + (Param("p", p, p, (p,), nested_at_bounds=True),)
    return law


def noise_floor(curves) -> None:
    """How well can ANY smooth curve do? An 8-knot cubic spline in log-step per curve, the
    point-to-point jitter, and the spread between seeds of the same run."""
    from scipy.interpolate import make_lsq_spline

    spline, jitter = [], []
    for curve in curves.values():
        idx = curve.eval_index()
        s, y = curve.step[idx].astype(float), curve.loss[idx]
        ok = np.isfinite(y)
        s, y = s[ok], y[ok]
        x = np.log(s)
        knots = np.r_[[x[0]] * 4, np.linspace(x[0], x[-1], 10)[1:-1], [x[-1]] * 4]
        fit = np.exp(make_lsq_spline(x, np.log(y), knots, k=3)(x))
        spline.append(np.mean(np.abs(fit - y) / y))
        late = s[1:-1] > 150  # past the fast early transient, where curvature inflates the jitter
        second = np.abs(y[1:-1] - 0.5 * (y[:-2] + y[2:])) / y[1:-1]
        jitter.append(np.mean(second[late]) / (math.sqrt(2 / math.pi) * math.sqrt(1.5)))  # -> white-noise sd
    print(f"\nnoise floor over {len(spline)} curves: 8-knot spline mean |rel. residual| {100 * np.mean(spline):.3f} %, "
          f"point noise sd (from 2nd differences after step 150) {100 * np.mean(jitter):.3f} %")
    seeds: dict[tuple, dict[int, np.ndarray]] = {}
    for key, curve in curves.items():
        y = np.full(int(curve.step.max()) + 1, np.nan)
        y[curve.step[curve.eval_index()]] = curve.loss[curve.eval_index()]
        seeds.setdefault((key.schedule, key.horizon, key.peak_lr), {})[key.seed_index] = y
    for (name, horizon, peak), by_seed in seeds.items():
        if len(by_seed) > 1:
            ys = np.array(list(by_seed.values()))
            ys = ys[:, np.all(np.isfinite(ys), axis=0)]
            mean = ys.mean(axis=0)
            print(f"  {name} T{horizon} lr{peak:g}: {len(by_seed)} seeds, mean |y - seed mean| / seed mean "
                  f"{100 * np.mean(np.abs(ys - mean) / mean):.2f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", type=Path)
    parser.add_argument("--laws", nargs="+", default=list(LAWS), choices=sorted(CURVE_LAWS))
    parser.add_argument("--p-grid", action="store_true", help="also lr-noise-clock with p fixed at 0 ... 1")
    parser.add_argument("--noise-floor", action="store_true")
    args = parser.parse_args()
    if not (args.experiment / "plan.json").is_file():
        sys.exit(f"error: {args.experiment}/plan.json not found: pass a curve_prediction experiment directory")
    curves, params = load(args.experiment)
    laws = [(n, CURVE_LAWS[n]()) for n in args.laws]
    if args.p_grid:
        laws += [(f"clock p={p:g}", clock_fixed(p)) for p in (0.0, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0)]
    print(f"mean PredE (%), fit on {', '.join(params.fit_schedules)} at {params.fit_horizon} steps, "
          f"peak LR {params.fit_peak_lr:g}")
    print(f"  {'law':<20}" + "".join(f"{c:>11}" for c in COLUMNS) + "   theta")
    for name, law in laws:
        row, theta = scores(law, curves, params)
        print(f"  {name:<20}" + "".join(f"{row.get(c, float('nan')):>11.3f}" for c in COLUMNS)
              + "   " + " ".join(f"{v:.4g}" for v in theta))
    if args.noise_floor:
        noise_floor(curves)


if __name__ == "__main__":
    main()
