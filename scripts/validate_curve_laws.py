"""Evidence for the default curve law: every curve law on every transfer protocol, one table.

Protocols (mean PredE = mean |relative error| over the held-out points, per group):
* mpl-<size>M: the MPL paper's split (fit cosine_24000, constant_24000, wsdcon_9; predict the 6
  others: 3x horizons, WSD exp / linear, two-stage drops), on shared/data/luo2025_multipowerlaw.
* proxy-horizon: our proxies (scripts/make_curve_validation_set.py): fit constant + cosine + WSD
  linear at 600 steps and the base peak LR 2e-3; predict all 5 schedules at 1200 steps.
* proxy-lr-<h>: fit the same 3 schedules at horizon h and the base peak LR; predict all 5
  schedules at 0.5x, 2x and 3x the peak LR (same horizon).
* proxy-lr2-<h> / proxy-lr2lo-<h> (two peak LRs, docs/CURVE_LAWS.md "Two peak LRs"): the proxy-lr-<h>
  fit set plus ONE constant run at 2x (lr2) / 0.5x (lr2lo) the base peak LR; predict every other curve
  at 0.5x, 2x and 3x (all 5 schedules but the extra fit curve). Built only where the extra run exists.
* exp-lr2-<h> / exp-lr2lo-<h> (`--experiment DIR`, a curve_prediction experiment): the same on its fit
  schedules, fit horizon and fit peak LR, the extra constant at the next peak LR above / below.
Per direction of the peak LR, every protocol's ratios are to the base LR (the one most fit curves share).
Proxy curves are the validation loss, fitted and scored from step 151 (warmup is 50 steps; the
tiny proxy's first ~100 steps after it are a fast transient, see PROXY_MIN_STEP).

Selection (fit curves only): `validation_errors` (harness/fit/curve_predict.py) refits each law
leaving one fit curve out, and on the first 60% of every fit curve's steps, and scores the
hidden parts; the last table ranks the laws by that error. The default law is the best mean rank.
Interval coverage: each law's 90% band from `calibrate_band` (the 90% quantile of those same
errors); "cover" = the fraction of held-out points inside the band.

Rules (`--rules`): a point prediction that is not one law's fit. `clock-avg` (issue 12's peak-LR
transfer rule, docs/CURVE_LAWS.md "Clock-averaged peak-LR transfer"): `convex-noise-sqrt` fitted as
usual; a curve at a peak LR the fit curves lack (more than PEAK_LR_TOLERANCE away) is predicted by
the equal-weight mean of the refits with the clock exponent held at each of CLOCK_AVERAGE_GRID (the
harness's own `pinned_fits`, every refit kept whatever its objective); a curve at a fitted peak LR
by the main fit. `eff-s0-by-lr2` (fit sets with a second peak LR): `convex-noise-eff` with S0 chosen from
SECOND_LR_S0_GRID by fitting on the base-LR curves and scoring the curve(s) at the other peak LR, then
refitted on every fit curve. Rules get no band (the brackets are empty).

    python scripts/validate_curve_laws.py [--laws lr-noise mpl ...] [--rules clock-avg] [--protocols ...]
        [--proxies /work/wt/curvedata] [--experiment DIR] [--data DIR] [--no-band] [--json out.json]

Proxy peak-LR protocols also print the mean PredE per direction of the peak LR (0.5x, 2x, 3x).

`--every-fit-lr` (the development protocol of issue 12's effective-LR law, docs/CURVE_LAWS.md
"Effective-LR law"): instead of the protocols above, fit at EVERY peak LR and horizon of each proxy set
in `--dev-sets` (output folders of make_curve_validation_set.py, or a curve_prediction experiment, whose
own fit schedules at its fit horizon are used) and predict all schedules at every other peak LR; prints
the mean PredE per group and the summary "DEV" (mean over the groups at 0.5x, 2x and 3x the fitted LR),
"STD" (the same over the standard fits: the base LR 2e-3, or the experiment's fit LR), "ALL", "below" and
"above" (the groups below / above the fitted LR) and DEV per set. Laws may carry pinned values,
`convex-noise-eff@S0=1` (any parameter or constant of the law, `pinned_law`).

    python scripts/validate_curve_laws.py --every-fit-lr --laws convex-noise-eff convex-noise-sqrt \
        --dev-sets /work/main/experiments/curve_prediction_cpu /work/wt/curvedata /work/wt/curvedata3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dataclasses import dataclass  # noqa: E402

from harness.fit.curve_predict import (at_fitted_peak_lr, calibrate_band, fit_curves, fitted_peak_lrs,  # noqa: E402
                                       peak_lr, pinned_fits, validation_errors)
from harness.fit.fitter import metrics  # noqa: E402
from harness.fit.io import Curve, read_curve_file  # noqa: E402
from harness.fit.registry import CURVE_LAWS, DEFAULT_CURVE_LAW  # noqa: E402

LAWS = ("lr-noise", "lr-noise2", "lr-noise-sqrt", "convex-noise-sqrt", "convex-noise-eff", "convex-bound", "mpl", "mpl-recipe", "tissue", "tissue-true-warmup", "power")
FIT_SCHEDULES = ("constant", "cosine", "wsdlin")
ALL_SCHEDULES = ("constant", "cosine", "cosine10", "wsdlin", "wsdsqrt")
BASE_LR = "0.002"
OTHER_LRS = ("0.001", "0.004", "0.006")
# Two-peak-LR protocols (docs/CURVE_LAWS.md "Two peak LRs"): the one-LR fit set plus ONE constant run at a
# second peak LR; tag -> that LR. `proxy-lr2-<h>` adds the constant at 2x the base LR, `proxy-lr2lo-<h>` at 0.5x.
SECOND_LR = {"lr2": "0.004", "lr2lo": "0.001"}
PROXY_WARMUP = 50
# Fit and score proxy curves from this step: the tiny proxy's first ~100 post-warmup steps are a fast
# initial transient (val loss 5.0 -> 4.0) that the 124M-scale curves this targets do not have.
PROXY_MIN_STEP = 151
BAND_LEVEL = 0.9

# The clock-averaged peak-LR rule (module docstring; chosen on the two older proxy sets, 2026-11-30).
CLOCK_AVERAGE_LAW = "convex-noise-sqrt"
CLOCK_AVERAGE_GRID = (0.25, 0.5, 0.75, 1.0)


@dataclass
class ClockAverage:
    """`convex-noise-sqrt`'s main fit at the fitted peak LR(s); elsewhere the mean of its refits with the
    clock exponent held at each grid value (the exponent is not identified by curves at one peak LR)."""

    law: object
    theta: np.ndarray
    fitted: list[float]
    pinned: list

    def predict(self, curve: Curve) -> np.ndarray:
        if at_fitted_peak_lr(curve, self.fitted):
            return np.asarray(self.law.predict(self.theta, self.law.prepare([curve])), dtype=float)
        with np.errstate(all="ignore"):
            return np.mean([np.asarray(f.law.predict(f.theta, f.law.prepare([curve])), dtype=float)
                            for f in self.pinned], axis=0)


def clock_average(fit_set: list[Curve], grid: tuple[float, ...] = CLOCK_AVERAGE_GRID) -> ClockAverage:
    law, fit = fit_curves(CLOCK_AVERAGE_LAW, fit_set)
    law.weak_at_one_peak_lr = {"CLOCK_P": tuple(grid)}  # this instance only: the grid of the rule
    pinned = pinned_fits(law, fit_set, near=np.asarray(fit.theta, dtype=float))
    if len(pinned) != len(grid):
        raise RuntimeError(f"clock-avg: {len(grid) - len(pinned)} of the pinned refits failed")
    return ClockAverage(law=law, theta=np.asarray(fit.theta, dtype=float), fitted=fitted_peak_lrs(fit_set),
                        pinned=pinned)


# S0 of `convex-noise-eff` chosen by the second peak LR (docs/CURVE_LAWS.md "Two peak LRs"): fit on the base-LR
# curves with S0 held at each grid value (1e6 is `convex-noise-sqrt`), score each fit on the curve(s) at the
# other peak LR, refit on every fit curve with the best S0. The in-sample fit of S0 (`convex-noise-eff-fit`)
# is dominated by the base-LR curves; this targets the transfer itself.
SECOND_LR_S0_GRID = (0.3, 1.0, 3.0, 10.0, 1e6)


@dataclass
class SecondLRSelected:
    law: object
    theta: np.ndarray
    s0: float
    scores: dict[float, float]

    def predict(self, curve: Curve) -> np.ndarray:
        return np.asarray(self.law.predict(self.theta, self.law.prepare([curve])), dtype=float)


def second_lr_s0(fit_set: list[Curve], grid: tuple[float, ...] = SECOND_LR_S0_GRID) -> SecondLRSelected:
    from harness.fit.curve_predict import pinned_law

    lrs = [round(peak_lr(c), 12) for c in fit_set]
    base = max(set(lrs), key=lambda lr: (lrs.count(lr), lr))
    inner = [c for c, lr in zip(fit_set, lrs) if lr == base]
    extra = [c for c, lr in zip(fit_set, lrs) if lr != base]
    if not extra:
        raise ValueError("eff-s0-by-lr2: the fit curves share one peak LR; it needs a curve at a second one")
    scores = {}
    for s0 in grid:
        law, fit = fit_curves(pinned_law(CURVE_LAWS["convex-noise-eff"](), {"S0": s0}), inner)
        err = [np.abs(np.asarray(law.predict(fit.theta, law.prepare([c])), dtype=float) / c.loss[c.eval_index()] - 1)
               for c in extra]
        scores[s0] = float(np.mean(np.concatenate(err)))
    best = min(scores, key=scores.get)
    law, fit = fit_curves(pinned_law(CURVE_LAWS["convex-noise-eff"](), {"S0": best}), fit_set)
    return SecondLRSelected(law=law, theta=np.asarray(fit.theta, dtype=float), s0=best, scores=scores)


RULES = {"clock-avg": clock_average, "eff-s0-by-lr2": second_lr_s0}


def proxy_curve(root: Path, horizon: int, schedule: str, lr: str) -> Curve:
    curve = read_curve_file(root / f"{horizon}_{schedule}_{lr}" / "curve.jsonl", "val_loss")
    curve.min_step = PROXY_MIN_STEP
    return curve


def existing(root: Path, runs: list[tuple[int, str, str]]) -> list[Curve]:
    """The held-out proxy curves that exist (a partial set is scored with a note)."""
    from make_curve_validation_set import is_completed

    have = [r for r in runs if is_completed(root / f"{r[0]}_{r[1]}_{r[2]}")]
    if len(have) < len(runs):
        print(f"note: {len(runs) - len(have)} held-out proxy curves missing; scoring {len(have)}", file=sys.stderr)
    return [proxy_curve(root, *r) for r in have]


def protocols(proxies: Path | None, data: Path | None) -> dict[str, tuple]:
    """name -> (fit curves loader, held-out curves loader); loaders defer the reading."""
    import reproduce_mpl as mpl

    out: dict[str, tuple] = {}
    for size in mpl.SIZES:
        out[f"mpl-{size}M"] = (lambda s=size: [mpl.load_curve(s, n, data) for n in mpl.TRAIN],
                               lambda s=size: [mpl.load_curve(s, n, data) for n in mpl.TEST])
    if proxies is not None:
        out["proxy-horizon"] = (lambda: [proxy_curve(proxies, 600, s, BASE_LR) for s in FIT_SCHEDULES],
                                lambda: existing(proxies, [(1200, s, BASE_LR) for s in ALL_SCHEDULES]))
        for h in (600, 1200):
            out[f"proxy-lr-{h}"] = (lambda h=h: [proxy_curve(proxies, h, s, BASE_LR) for s in FIT_SCHEDULES],
                                    lambda h=h: existing(proxies, [(h, s, lr) for lr in OTHER_LRS
                                                                  for s in ALL_SCHEDULES]))
        for tag, extra in SECOND_LR.items():
            if not completed(proxies, (600, "constant", extra)):
                continue  # a set without that LR (e.g. one with peak LRs 2e-3 and 4e-3 only)
            for h in (600, 1200):
                out[f"proxy-{tag}-{h}"] = (
                    lambda h=h, x=extra: [proxy_curve(proxies, h, s, BASE_LR) for s in FIT_SCHEDULES]
                    + [proxy_curve(proxies, h, "constant", x)],
                    lambda h=h, x=extra: existing(proxies, [(h, s, lr) for lr in OTHER_LRS for s in ALL_SCHEDULES
                                                            if (s, lr) != ("constant", x)]))
    return out


def completed(root: Path, run: tuple[int, str, str]) -> bool:
    from make_curve_validation_set import is_completed

    return is_completed(root / f"{run[0]}_{run[1]}_{run[2]}")


def experiment_protocols(experiment: Path) -> dict[str, tuple]:
    """The two-peak-LR protocols on a curve_prediction experiment (the first proxy set): its fit schedules at
    its fit horizon and fit peak LR plus the constant run at the next peak LR above (`exp-lr2`) or below
    (`exp-lr2lo`); held out: every other curve at the fit horizon and another peak LR."""
    import reproduce_curve_lr_transfer as transfer
    from harness.experiment.curve_prediction_curves import CurveKey

    curves, params = transfer.load(experiment)
    h, base = params.fit_horizon, params.fit_peak_lr
    lrs = sorted({k.peak_lr for k in curves if k.seed_index == 0 and k.horizon == h})
    fit_set = [curves[CurveKey(s, h, base)] for s in params.fit_schedules]
    out: dict[str, tuple] = {}
    for tag, extra in (("lr2", [lr for lr in lrs if lr > base][:1]), ("lr2lo", [lr for lr in lrs if lr < base][-1:])):
        extra_key = CurveKey("constant", h, extra[0]) if extra else None
        if extra_key not in curves:
            continue
        held = [c for k, c in curves.items() if k.seed_index == 0 and k.horizon == h and k.peak_lr != base
                and k != extra_key]
        out[f"exp-{tag}-{h}"] = (lambda e=extra_key: fit_set + [curves[e]], lambda held=held: held)
    return out


def evaluate(law_name: str, fit_set: list[Curve], held_out: list[Curve], band: bool) -> dict:
    t0 = time.perf_counter()
    if law_name in RULES:
        rule = RULES[law_name](fit_set)
        predict, converged, band = rule.predict, True, False
        params = {"S0": rule.s0, "scores": rule.scores} if isinstance(rule, SecondLRSelected) else {}
    else:
        law, fit = fit_curves(law_name, fit_set)
        predict = lambda c: np.asarray(law.predict(fit.theta, law.prepare([c])), dtype=float)  # noqa: E731
        converged, params = bool(fit.converged), fit.params
    fit_s = time.perf_counter() - t0
    val_err = validation_errors(law_name, fit_set) if band else None
    q = calibrate_band(law_name, fit_set, BAND_LEVEL, errors=val_err) if band else None
    per_curve, by_ratio, inside, total = {}, {}, 0, 0
    # Directions relative to the peak LR most fit curves share (the base LR; a two-LR fit set adds one curve).
    lrs = [round(peak_lr(c), 12) for c in fit_set]
    base = max(set(lrs), key=lambda lr: (lrs.count(lr), lr))
    for c in held_out:
        y = c.loss[c.eval_index()]
        pred = predict(c)
        per_curve[c.name] = metrics(y, pred)["prede"]
        by_ratio.setdefault(f"{peak_lr(c) / base:.2g}x", []).append(per_curve[c.name])
        if q is not None:
            inside += int(np.sum(np.abs(pred - y) <= q * pred))
            total += y.size
    return {"prede": float(np.mean(list(per_curve.values()))), "per_curve": per_curve, "fit_s": fit_s,
            "by_ratio": {k: float(np.mean(v)) for k, v in sorted(by_ratio.items(), key=lambda kv: float(kv[0][:-1]))},
            "converged": converged, "band": q, "cover": inside / total if total else None,
            "val": float(np.mean(val_err)) if val_err is not None else None,
            "params": params}


def _law_or_pinned(spec: str):
    """A registered law, or `name@PARAM=value@...` with those values pinned (`pinned_law`)."""
    from harness.fit.curve_predict import pinned_law

    base, *pins = spec.split("@")
    if base not in CURVE_LAWS:
        raise SystemExit(f"error: unknown law '{base}' in '{spec}' (one of {', '.join(sorted(CURVE_LAWS))})")
    if not pins:
        return CURVE_LAWS[base]()
    try:
        values = {k: float(v) for k, v in (p.split("=") for p in pins)}
    except ValueError:
        raise SystemExit(f"error: '{spec}': pins are written @NAME=NUMBER, e.g. convex-noise-eff@S0=1") from None
    return pinned_law(CURVE_LAWS[base](), values)


def every_fit_lr_tasks(roots: list[Path]) -> list[tuple[str, bool, list[Curve], list[tuple[float, Curve]]]]:
    """(label, standard?, fit curves, [(peak-LR ratio, held-out curve)]) for every fit peak LR and horizon."""
    tasks = []
    for root in roots:
        if (root / "plan.json").is_file():  # a curve_prediction experiment (the first proxy set)
            import reproduce_curve_lr_transfer as transfer
            from harness.experiment.curve_prediction_curves import CurveKey

            curves, params = transfer.load(root)
            lrs = sorted({k.peak_lr for k in curves if k.seed_index == 0})
            for lr in lrs:
                fit_set = [curves[CurveKey(s, params.fit_horizon, lr)] for s in params.fit_schedules]
                held = [(k.peak_lr / lr, c) for k, c in curves.items() if k.seed_index == 0 and k.peak_lr != lr]
                tasks.append((f"{root.name}/{params.fit_horizon}/{lr:g}", lr == params.fit_peak_lr, fit_set, held))
            continue
        from make_curve_validation_set import HORIZONS, PEAK_LRS

        for h in HORIZONS:
            for lr in PEAK_LRS:
                fit_set = [proxy_curve(root, h, s, f"{lr:g}") for s in FIT_SCHEDULES]
                held = [(other / lr, c) for other in PEAK_LRS if other != lr
                        for c in existing(root, [(h, s, f"{other:g}") for s in ALL_SCHEDULES])]
                tasks.append((f"{root.name}/{h}/{lr:g}", f"{lr:g}" == BASE_LR, fit_set, held))
    return tasks


# The peak-LR multiples issue 12 scores (DEV of `--every-fit-lr`; scripts/calibrate_band_kappa.py).
DEV_RATIOS = (0.5, 2.0, 3.0)


def at_dev_ratio(ratio: float) -> bool:
    """Whether a held-out curve's peak-LR ratio to the fitted one is (within 5 %) one of DEV_RATIOS."""
    return any(abs(ratio - r) / r < 0.05 for r in DEV_RATIOS)


def every_fit_lr(laws: list[str], roots: list[Path]) -> None:
    """The development protocol of `--every-fit-lr` (module docstring)."""
    tasks = every_fit_lr_tasks(roots)

    summary = []
    for spec in laws:
        groups = []  # (set, standard?, ratio, mean PredE %)
        for label, standard, fit_set, held in tasks:
            law, fit = fit_curves(_law_or_pinned(spec), fit_set)
            by: dict[float, list[float]] = {}
            for ratio, c in held:
                y = c.loss[c.eval_index()]
                with np.errstate(all="ignore"):
                    pred = np.asarray(law.predict(fit.theta, law.prepare([c])), dtype=float)
                ok = np.isfinite(y)
                by.setdefault(round(ratio, 4), []).append(metrics(y[ok], pred[ok])["prede"])
            cells = {r: 100 * float(np.mean(v)) for r, v in sorted(by.items())}
            groups += [(label.split("/")[0], standard, r, e) for r, e in cells.items()]
            print(f"{spec:28s} {label:32s} " + " ".join(f"{r:g}x {e:.2f}" for r, e in cells.items()), flush=True)
        dev = [g for g in groups if at_dev_ratio(g[2])]
        sets = sorted({g[0] for g in groups}, key=[g[0] for g in groups].index)
        summary.append((spec, np.mean([g[3] for g in dev if g[1]]), np.mean([g[3] for g in dev]),
                        np.mean([g[3] for g in groups]), np.mean([g[3] for g in groups if g[2] < 1]),
                        np.mean([g[3] for g in groups if g[2] > 1]),
                        [np.mean([g[3] for g in dev if g[0] == s]) for s in sets]))
    print(f"\nmean PredE (%) over groups; DEV per set: {', '.join(sets)}")
    print(f"{'law':28s} {'STD':>6s} {'DEV':>6s} {'ALL':>6s} {'below':>6s} {'above':>6s}   DEV per set")
    for spec, std, dev, al, below, above, per in summary:
        print(f"{spec:28s} {std:6.3f} {dev:6.3f} {al:6.3f} {below:6.3f} {above:6.3f}   " + " ".join(f"{x:.3f}" for x in per))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--laws", nargs="+", default=list(LAWS),
                    help="registered curve laws (with --every-fit-lr also NAME@PARAM=value pins)")
    ap.add_argument("--rules", nargs="+", default=[], choices=sorted(RULES), help="also these prediction rules")
    ap.add_argument("--protocols", nargs="+", default=None, help="subset of protocol names")
    ap.add_argument("--proxies", type=Path, default=Path("/work/wt/curvedata"),
                    help="output folder of scripts/make_curve_validation_set.py ('' to skip)")
    ap.add_argument("--experiment", type=Path, default=None, metavar="DIR",
                    help="also the two-peak-LR protocols exp-lr2 / exp-lr2lo on a curve_prediction experiment")
    ap.add_argument("--data", type=Path, default=None, help="public data dir (default $HARNESS_DATA)")
    ap.add_argument("--no-band", action="store_true", help="skip the interval calibration (faster)")
    ap.add_argument("--json", type=Path, default=None, help="also write every number here")
    ap.add_argument("--every-fit-lr", action="store_true",
                    help="the development protocol: fit at every peak LR of each --dev-sets set (module docstring)")
    ap.add_argument("--dev-sets", nargs="+", type=Path, default=[], metavar="DIR")
    args = ap.parse_args()
    if args.every_fit_lr:
        if not args.dev_sets:
            ap.error("--every-fit-lr needs --dev-sets DIR ...")
        every_fit_lr(args.laws, args.dev_sets)
        return 0
    unknown = [law for law in args.laws if law not in CURVE_LAWS]
    if unknown:
        ap.error(f"unknown law(s) {', '.join(unknown)} (one of {', '.join(sorted(CURVE_LAWS))})")
    proxies = args.proxies if str(args.proxies) not in ("", ".") and args.proxies.is_dir() else None
    todo = protocols(proxies, args.data)
    if args.experiment is not None:
        todo.update(experiment_protocols(args.experiment))
    if args.protocols:
        todo = {k: v for k, v in todo.items() if k in args.protocols}
    results: dict[str, dict[str, dict]] = {}
    args.laws = list(args.laws) + [r for r in args.rules if r not in args.laws]
    for pname, (load_fit, load_held) in todo.items():
        fit_set, held_out = load_fit(), load_held()
        results[pname] = {}
        for law_name in args.laws:
            r = evaluate(law_name, fit_set, held_out, band=not args.no_band and law_name not in RULES)
            results[pname][law_name] = r
            cover = "" if r["cover"] is None else (f" val {100 * r['val']:.3f}% band ±{100 * r['band']:.2f}% "
                                                   f"cover {100 * r['cover']:.0f}%")
            ratios = (" ".join(f"{k} {100 * v:.3f}" for k, v in r["by_ratio"].items())
                      if pname.startswith(("proxy-lr", "exp-lr")) else "")
            print(f"{pname:15s} {law_name:20s} PredE {100 * r['prede']:.3f}%  fit {r['fit_s']:.1f}s "
                  f"conv={r['converged']}{cover}  {ratios}", flush=True)
    print(f"\nMean held-out PredE (%), default law = {DEFAULT_CURVE_LAW}; "
          f"[90% band coverage of held-out points]")
    names = list(results)
    print(f"{'law':20s} " + " ".join(f"{n:>15s}" for n in names))
    for law_name in args.laws:
        cells = []
        for n in names:
            r = results[n][law_name]
            cov = "" if r["cover"] is None else f" [{100 * r['cover']:.0f}]"
            cells.append(f"{100 * r['prede']:.3f}{cov}".rjust(15))
        print(f"{law_name:20s} " + " ".join(cells))
    if not args.no_band and not any(law in RULES for law in args.laws):
        print("\nSelection on fit curves only: mean |rel. error| of leave-one-curve-out + forward-in-time "
              "refits (%), and each law's mean rank over the protocols (lower is better)")
        ranks = {law: [] for law in args.laws}
        for n in names:
            order = sorted(args.laws, key=lambda law: results[n][law]["val"])
            for i, law in enumerate(order):
                ranks[law].append(i + 1)
        print(f"{'law':20s} " + " ".join(f"{n:>15s}" for n in names) + f" {'mean rank':>10s}")
        for law_name in args.laws:
            print(f"{law_name:20s} " + " ".join(f"{100 * results[n][law_name]['val']:>15.3f}" for n in names)
                  + f" {np.mean(ranks[law_name]):>10.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
