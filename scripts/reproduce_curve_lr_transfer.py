"""Peak-LR transfer of the curve laws on our own proxies (issue 12; docs/CURVE_LAWS.md "Peak-LR transfer").

Reads a finished `curve_prediction` experiment (python -m harness.experiment run curve_prediction_cpu),
fits every law on its fit curves (constant + cosine + WSD-linear-20 % at 300 steps and peak LR 6e-3)
exactly as its report does, and prints the mean PredE per group with the peak-LR group split into
its two directions: 0.5x (3e-3, the VALIDATION direction the law choice was made on) and 2x (1.2e-2,
scored once, after the choice). `--p-grid` adds the clock-exponent scan (lr-noise-clock with p
held fixed) that chose lr-noise-sqrt's p = 1/2. `--noise-floor` prints how noisy the curves are.
`--band` adds the coverage of each law's 90 % band per group and its mean half-width: the plain
calibrated band and the band widened at new peak LRs (harness/fit/curve_predict.py `PeakLRBand`) at
each objective tolerance in `--tolerances`, plus the mean of the kept fits as a point prediction
("avg"); `--band-columns val_0.5x` restricts it to the validation direction (how the tolerance was
chosen, before the other columns were looked at); `--validation-set DIR` adds the same comparison on
the second proxy set, per direction of the peak LR.

`--rules clock-avg` adds the clock-averaged rule of scripts/validate_curve_laws.py (docs/CURVE_LAWS.md
"Clock-averaged peak-LR transfer").

    python scripts/reproduce_curve_lr_transfer.py experiments/curve_prediction_cpu [--p-grid] [--noise-floor]
        [--rules clock-avg] [--band [--tolerances 0 0.1 0.25] [--band-columns val_0.5x] [--validation-set /work/wt/curvedata]]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.experiment.curve_prediction_curves import CurveKey, curve_label  # noqa: E402
from harness.experiment.curve_prediction_report import _curves, group_of  # noqa: E402
from harness.fit.curve_predict import WEAK_FIT_TOLERANCE, peak_lr_band  # noqa: E402
from harness.fit.fitter import fit_law, metrics  # noqa: E402
from harness.fit.laws.base import Param  # noqa: E402
from harness.fit.laws.lr_noise import LRNoiseClockLaw, LRNoiseLaw  # noqa: E402
from harness.fit.registry import CURVE_LAWS, DEFAULT_CURVE_LAW  # noqa: E402

LAWS = ("convex-noise-eff", "convex-noise-sqrt", "convex-bound", "lr-noise-sqrt", DEFAULT_CURVE_LAW, "lr-noise2", "mpl-recipe", "tissue-true-warmup", "power")
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

    def predict(curve):
        with np.errstate(all="ignore"):
            return np.asarray(law.predict(fit.theta, law.prepare([curve])), dtype=float)

    return column_errors(curves, params, predict), fit.theta


def column_errors(curves, params, predict) -> dict[str, float]:
    """Mean PredE (%) per column of the held-out curves, each predicted by `predict(curve)`."""
    per: dict[str, list[float]] = {}
    for key, curve in curves.items():
        col = column(key, params)
        if col is None:
            continue
        obs = curve.loss[curve.eval_index()]
        pred = predict(curve)
        ok = np.isfinite(obs)
        per.setdefault(col, []).append(metrics(obs[ok], pred[ok])["prede"])
    return {c: 100 * float(np.mean(v)) for c, v in per.items()}


def rule_scores(rule_name: str, curves, params) -> dict[str, float]:
    """The columns of `scores` for a prediction rule of scripts/validate_curve_laws.py (RULES)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import validate_curve_laws as validation

    rule = validation.RULES[rule_name](fit_set_of(curves, params))
    return column_errors(curves, params, rule.predict)


def fit_set_of(curves, params):
    return [curves[CurveKey(s, params.fit_horizon, params.fit_peak_lr)] for s in params.fit_schedules]


def band_scores(law_name: str, curves, params, tolerances, columns) -> list[tuple[str, dict[str, tuple]]]:
    """Rows (variant, {column: (coverage %, mean half-width %, PredE %)}) of the 90 % band of `law_name`:
    "plain" (the calibrated band everywhere), "tol=<t>" (widened at new peak LRs, pinned fits within t
    of the best objective) and "avg tol=<t>" (the mean of the kept fits' predictions as the point
    prediction, with the same band)."""
    from dataclasses import replace

    fit_set = fit_set_of(curves, params)
    t0 = time.perf_counter()
    band = peak_lr_band(law_name, fit_set, 0.9)
    if band.weak:
        band.pinned_fits()
    build_s = time.perf_counter() - t0
    variants = [("plain", None, False)] + [(f"tol={t:g}", t, False) for t in tolerances]
    variants += [(f"avg tol={t:g}", t, True) for t in tolerances]
    rows = []
    for label, tol, average in variants:
        if tol is not None and not band.weak:
            continue
        per: dict[str, list[tuple[float, float, float, int]]] = {}
        b = replace(band, tolerance=tol if tol is not None else 0.0)
        for key, curve in curves.items():
            col = column(key, params)
            if col is None or col not in columns:
                continue
            obs = curve.loss[curve.eval_index()]
            if tol is None:
                pred = np.asarray(band.law.predict(band.theta, band.law.prepare([curve])), dtype=float)
                lo, hi = pred * (1 - band.half_width), pred * (1 + band.half_width)
            else:
                pred, lo, hi = b.limits(curve)
                if average and b.widens(curve):
                    pred = b.predictions(curve).mean(axis=0)
            ok = np.isfinite(obs)
            inside = int(np.sum((obs[ok] >= lo[ok]) & (obs[ok] <= hi[ok])))
            half = float(np.mean((hi[ok] - lo[ok]) / 2 / pred[ok]))
            per.setdefault(col, []).append((inside, half, metrics(obs[ok], pred[ok])["prede"], int(ok.sum())))
        cells = {}
        for col, vals in per.items():
            n = sum(v[3] for v in vals)
            cells[col] = (100 * sum(v[0] for v in vals) / n, 100 * float(np.mean([v[1] for v in vals])),
                          100 * float(np.mean([v[2] for v in vals])))
        rows.append((label, cells))
    kept = {f"{t:g}": [f.values for f in replace(band, tolerance=t).kept()] for t in tolerances} if band.weak else {}
    print(f"  {law_name}: half-width {100 * band.half_width:.2f} %, band built in {build_s:.1f} s; pinned "
          f"objectives / main: " + (" ".join(f"{f.values}: {f.objective / band.objective:.3f}"
                                          for f in band.pinned or []) or "-") + f"; kept {kept}")
    return rows


def validation_set_bands(root: Path, laws) -> None:
    """The same band comparison on the second proxy set (scripts/make_curve_validation_set.py, read
    through scripts/validate_curve_laws.py's protocols), per direction of the peak LR."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import validate_curve_laws as validation

    from harness.fit.curve_predict import peak_lr

    print(f"\n90 % band on {root}: coverage % plain -> widened, mean half-width % plain -> widened, "
          "mean PredE % main fit / avg of the kept fits")
    todo = validation.protocols(root, None)
    for pname in ("proxy-horizon", "proxy-lr-600", "proxy-lr-1200"):
        fit_set, held = todo[pname][0](), todo[pname][1]()
        for law_name in laws:
            band = peak_lr_band(law_name, fit_set, 0.9)
            groups: dict[str, list] = {}
            for c in held:
                y = c.loss[c.eval_index()]
                pred, lo, hi = band.limits(c)
                avg = band.predictions(c).mean(axis=0) if band.widens(c) else pred
                row = (int(np.sum(np.abs(pred - y) <= band.half_width * pred)), int(np.sum((y >= lo) & (y <= hi))),
                       y.size, float(np.mean((hi - lo) / 2 / pred)), metrics(y, pred)["prede"], metrics(y, avg)["prede"])
                for g in (f"{peak_lr(c) / band.fitted_peak_lrs[0]:g}x", "all"):
                    groups.setdefault(g, []).append(row)
            for g, rows in groups.items():
                r = np.array(rows, dtype=float)
                n = r[:, 2].sum()
                print(f"  {pname:<14}{law_name:<19}{g:<5}{100 * r[:, 0].sum() / n:6.1f} -> {100 * r[:, 1].sum() / n:5.1f}"
                      f"   {100 * band.half_width:5.2f} -> {100 * r[:, 3].mean():5.2f}"
                      f"   {100 * r[:, 4].mean():.3f} / {100 * r[:, 5].mean():.3f}   ({len(rows)} curves)")


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
    parser.add_argument("--rules", nargs="+", default=[], choices=["clock-avg"],
                        help="also these prediction rules (scripts/validate_curve_laws.py RULES)")
    parser.add_argument("--p-grid", action="store_true", help="also lr-noise-clock with p fixed at 0 ... 1")
    parser.add_argument("--noise-floor", action="store_true")
    parser.add_argument("--band", action="store_true", help="coverage and half-width of each law's 90 %% band")
    parser.add_argument("--tolerances", nargs="+", type=float, default=[WEAK_FIT_TOLERANCE],
                        help="objective tolerances of the widened band to score")
    parser.add_argument("--band-columns", nargs="+", default=list(COLUMNS[1:]), choices=COLUMNS[1:])
    parser.add_argument("--validation-set", type=Path, default=None, metavar="DIR",
                        help="with --band: also the second proxy set (output of make_curve_validation_set.py)")
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
    for name in args.rules:
        row = rule_scores(name, curves, params)
        print(f"  {name:<20}" + "".join(f"{row.get(c, float('nan')):>11.3f}" for c in COLUMNS))
    if args.band:
        print(f"\n90 % band per group: coverage % / mean half-width % (and mean PredE % of the point prediction)")
        print(f"  {'law':<20}{'band':<14}" + "".join(f"{c:>24}" for c in args.band_columns))
        for name in args.laws:
            for label, cells in band_scores(name, curves, params, args.tolerances, args.band_columns):
                print(f"  {name:<20}{label:<14}" + "".join(
                    (f"{cells[c][0]:>7.1f} / {cells[c][1]:5.2f} ({cells[c][2]:5.3f})" if c in cells else f"{'-':>24}")
                    for c in args.band_columns))
    if args.band and args.validation_set is not None:
        validation_set_bands(args.validation_set, args.laws)
    if args.noise_floor:
        noise_floor(curves)


if __name__ == "__main__":
    main()
