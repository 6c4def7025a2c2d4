"""Fit one registered law to input files and produce every output (`python -m harness.fit curve|scaling`).

Curves without --law: DEFAULT_CURVE_LAW, plus DEFAULT_PEAK_LR_LAW fitted on the same curves for every
prediction at a peak LR no fit curve has (`resolve_curve_laws`; params.json `peak_lr_law`).

`run(args)` reads and validates every input, fits, bootstraps when asked, and only then writes
OUT/params.json (parameters, with bootstrap intervals when asked, and with --band how the band
was built and which predictions it widened at a new peak LR), metrics.json (on the fit set and
on every predicted file with observed values), pred_<name>.csv per predicted file and
plot_<mode>.png, and prints a metrics table. Bad input raises `InputError` before anything is
written (the CLI turns it into exit status 2). Inputs: harness/fit/io.py; curve files read with
--fill-lr get `lr_filled` (per curve, how many steps' LR was filled in) in params.json and metrics.json;
curves whose LR was re-created from schedule columns (schedule_table.py) get `lr_from_schedule` there.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from harness.files import atomic_write_json, atomic_write_text
from harness.fit import fit_checks, plots
from harness.fit.bootstrap_starts import bootstrap_cells, cell_labels
from harness.fit.curve_files import read_curves
from harness.fit.curve_predict import (PEAK_LR_TOLERANCE, PeakLRBand, at_fitted_peak_lr,  # noqa: F401 (re-export)
                                       fitted_peak_lrs, peak_lr, peak_lr_band)
from harness.fit.extrapolation import fit_for_extrapolation
from harness.fit.fitter import BootstrapResult, FitResult, bootstrap, fit_law, metrics
from harness.fit.io import Curve, InputError, read_scaling_csv
from harness.fit.laws.base import Law
from harness.fit.registry import CURVE_LAWS, DEFAULT_CURVE_LAW, DEFAULT_PEAK_LR_LAW, SCALING_LAWS


@dataclass
class Outputs:
    """Everything to write, computed before the out dir is touched."""

    params: dict[str, Any]
    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    series: list[plots.Series] = field(default_factory=list)
    fit_data: dict[str, Any] | None = None  # the law's prepared fit set, for law-specific checks
    # Predictions the fit set cannot vouch for (kept, never refused): printed and stored with the warnings.
    notices: list[dict[str, str]] = field(default_factory=list)
    # Further fits whose predictions are in the outputs (the peak-LR law), checked like the main one.
    other_fits: list["FittedCurveLaw"] = field(default_factory=list)


@dataclass
class FittedCurveLaw:
    """One curve law fitted on the fit curves, with what its predictions need (interval, band)."""

    name: str
    law: Law
    data: dict[str, Any]
    fit: FitResult
    boot: BootstrapResult | None
    band: PeakLRBand | None
    predictions: dict[str, np.ndarray] = field(default_factory=dict)  # what it predicted, for fit_checks


# ----------------------------------------------------------------------------------------------
# Curve laws
# ----------------------------------------------------------------------------------------------


def _observed(curves: Sequence[Curve]) -> np.ndarray:
    return np.concatenate([c.loss[c.eval_index()] for c in curves])


def _check_bootstrap_supported(law: Law, args: argparse.Namespace, name: str | None = None) -> None:
    if args.bootstrap > 0 and law.n_refine == 0:
        raise InputError(f"--bootstrap: law '{name or args.law}' does its own fitting and cannot be bootstrapped; "
                         "drop --bootstrap or use a law fitted by the generic fitter (e.g. 'mpl')")


def resolve_curve_laws(args: argparse.Namespace) -> tuple[str, str | None]:
    """(the law for every prediction, the law for predictions at a new peak LR or None).

    Without --law: DEFAULT_CURVE_LAW, and DEFAULT_PEAK_LR_LAW at new peak LRs (harness/fit/registry.py says
    why). An explicit --law predicts everything unless --peak-lr-law names another law; `none` turns it off."""
    law = args.law or DEFAULT_CURVE_LAW
    peak = getattr(args, "peak_lr_law", None)
    if peak is None:
        peak = DEFAULT_PEAK_LR_LAW if args.law is None else None
    if peak in ("none", law):
        peak = None
    return law, peak


def _fit_curve_law(name: str, fit_curves: Sequence[Curve], y: np.ndarray, groups: np.ndarray | None,
                   args: argparse.Namespace) -> FittedCurveLaw:
    law = CURVE_LAWS[name]()
    data = law.prepare(fit_curves)
    fit = fit_law(law, data, y, seed=args.seed)
    boot = _bootstrap(law, data, y, fit, args, groups)
    return FittedCurveLaw(name, law, data, fit, boot, _band(args, name, fit_curves, law, fit))


def run_curve(args: argparse.Namespace) -> Outputs:
    args.law, peak_name = resolve_curve_laws(args)
    for name in filter(None, (args.law, peak_name)):
        _check_bootstrap_supported(CURVE_LAWS[name](), args, name)
    fill_lr = getattr(args, "fill_lr", None)
    fit_curves = read_curves(args.fit, args.target, need_loss=True, fill_lr=fill_lr)
    _check_band_level(args)
    pred_curves = read_curves(args.predict, args.target, need_loss=False, fill_lr=fill_lr)
    pred_curves += _schedule_curves(args, [c.name for c in pred_curves])
    for c in fit_curves + pred_curves:
        c.max_points = args.max_points
        c.min_step = args.min_step
    for c in fit_curves:
        if c.n_observed == 0:
            raise InputError(f"{c.path}: no observed loss at or after step {args.min_step}. "
                             "Fix: lower --min-step or fit on a longer curve.")
    y = _observed(fit_curves)
    groups = np.concatenate([np.full(c.eval_index().size, i) for i, c in enumerate(fit_curves)])
    groups = groups if len(fit_curves) > 1 else None

    main = _fit_curve_law(args.law, fit_curves, y, groups, args)
    fitted = fitted_peak_lrs(fit_curves)
    at_new_lr = {c.name for c in pred_curves if not at_fitted_peak_lr(c, fitted)}
    peak = _fit_curve_law(peak_name, fit_curves, y, groups, args) if peak_name and at_new_lr else None
    fallback = None
    if peak is not None and getattr(args, "peak_lr_law", None) is None and not args.allow_unconverged:
        # The default's second law is a refinement, not a requirement: if its fit fails a check, the main
        # law predicts everything and the outputs say why. An explicit --peak-lr-law is checked like --law,
        # and with --allow-unconverged both fits are kept and their problems become warnings.
        problems = _fit_problems(peak, {c.name: np.asarray(peak.law.predict(peak.fit.theta, peak.law.prepare([c])))
                                        for c in pred_curves if c.name in at_new_lr}, y)
        if problems:
            fallback = {"kind": "peak_lr_law_rejected",
                        "message": f"the peak-LR law {peak.name!r} was not used: {problems[0].message.split('. Fix')[0]}; "
                                   f"predictions at new peak LRs are made by {args.law!r}"}
            peak = None
    widened: dict[str, list[str]] = {main.name: [], peak.name if peak else "": []}

    out = Outputs(params=_params_json(main.law, main.fit, main.boot, args), metrics={"fit": main.fit.metrics,
                                                                                     "fit_curves": {}, "predict": {}},
                  fit_data=main.data)
    for role, curves in (("fit", fit_curves), ("predict", pred_curves)):
        for c in curves:
            by = peak if peak is not None and role == "predict" and c.name in at_new_lr else main
            idx = c.eval_index()
            data = by.law.prepare([c])
            pred = np.asarray(by.law.predict(by.fit.theta, data), dtype=float)
            by.predictions[f"{role} set {c.name!r}"] = pred
            obs = c.loss[idx]
            lo = hi = None
            table = pd.DataFrame({"step": c.step[idx], "lr": c.lr[idx], args.target: obs,
                                  f"{args.target}_pred": pred})
            if by.boot is not None:
                lo, hi = by.boot.predict_interval(by.law, data)
                table[f"{args.target}_pred_lo"], table[f"{args.target}_pred_hi"] = lo, hi
            if by.band is not None:
                # The plain band, or at a new peak LR the envelope over the weak parameter widened with the
                # LR distance (curve_predict.PeakLRBand). The peak-LR law's band alone, not a union with the
                # main law's: calibrated, it covers as stated at about 3/4 of the union's width
                # (docs/CURVE_LAWS.md "Band widened with the LR distance").
                _, band_lo, band_hi = by.band.limits(c)
                table[f"{args.target}_band_lo"], table[f"{args.target}_band_hi"] = band_lo, band_hi
                if by.band.widens(c):
                    widened[by.name].append(c.name)
            ok = np.isfinite(obs)
            if role == "predict":
                out.tables[f"pred_{c.name}.csv"] = table
                if ok.any():
                    out.metrics["predict"][c.name] = metrics(obs[ok], pred[ok])
            else:
                out.metrics["fit_curves"][c.name] = metrics(obs[ok], pred[ok])
            out.series.append(plots.Series(c.name, c.step[idx].astype(float), obs, pred, role, lo, hi))
    if main.band is not None:
        out.params["band"] = main.band.to_json(widened[main.name])
        _print_widened(main.band, widened[main.name])
    if peak is not None:
        out.params["peak_lr_law"] = _peak_lr_law_json(peak, sorted(at_new_lr), widened[peak.name], args)
        out.other_fits.append(peak)
        _print_widened(peak.band, widened[peak.name])
        print(f"note: {len(at_new_lr)} prediction(s) at a peak LR no fit curve has are made by {peak.name!r} "
              f"(fitted on the same curves), the rest by {main.name!r}: --peak-lr-law none uses {main.name!r} for all")
    out.metrics["held_params"] = out.params["held_params"]
    out.notices = peak_lr_identification_notices(main.law, fit_curves)
    if peak is not None:
        out.notices += peak_lr_identification_notices(peak.law, fit_curves, option="--peak-lr-law")
    out.notices += peak_lr_notices(fit_curves, pred_curves, (peak or main).band is not None,
                                   widened[peak.name if peak else main.name], peak_law=peak.name if peak else None)
    if fallback is not None:
        out.notices.append(fallback)
    _record_lr_fill(out, fit_curves + pred_curves)
    return out


def _record_lr_fill(out: Outputs, curves: Sequence[Curve]) -> None:
    """--fill-lr never acts silently: params.json and metrics.json get `lr_filled` (per curve, the counts of
    `Curve.lr_fill`), and each filled curve a notice (printed and stored with the warnings). An LR re-created
    from a file's schedule columns is exact given them, so it is recorded (`lr_from_schedule`), not warned of."""
    from_schedule = {c.name: c.lr_schedule for c in curves if c.lr_schedule is not None}
    if from_schedule:
        out.params["lr_from_schedule"] = from_schedule
        out.metrics["lr_from_schedule"] = from_schedule
    filled = [c for c in curves if c.lr_fill is not None]
    if not filled:
        return
    out.params["lr_filled"] = {c.name: c.lr_fill.to_json() for c in filled}
    out.metrics["lr_filled"] = {c.name: c.lr_fill.to_json() for c in filled}
    for c in filled:
        f = c.lr_fill
        out.notices.append({"kind": "lr_filled",
                            "message": f"{c.path}: --fill-lr {f.method} filled in the LR of {f.between_rows} step(s) "
                                       f"between logged rows and of {f.before_first_row} before the first row (a ramp "
                                       "from 0 at step 0); their loss is unobserved. Right only if the run's schedule "
                                       "is linear between logged rows (a step decay between two rows is smeared over "
                                       "their gap) and the first row is at or inside a linear warmup from 0"})


def _fit_problems(fitted: FittedCurveLaw, predictions: dict[str, np.ndarray],
                  observed: np.ndarray) -> list[fit_checks.Problem]:
    """fit_checks' problems of a fitted curve law and of its `predictions`."""
    return fit_checks.check_fit(fitted.law, fitted.fit.theta, bool(fitted.fit.converged), predictions, observed,
                                fitted.data)


def _print_widened(band: PeakLRBand | None, widened: Sequence[str]) -> None:
    if band is None or not widened:
        return
    kept = ", ".join(f"{k} = {v:g}" for f in band.kept() for k, v in f.values.items())
    print(f"note: band widened for {len(widened)} prediction(s) at a peak LR no fit curve has: envelope of "
          f"the refits with {kept} (objective within {band.tolerance:.0%} of the best), each x (1 +- "
          f"({band.half_width:.4f} + {band.distance_width:g} * |ln(peak LR / fitted peak LR)|))")


def _peak_lr_law_json(peak: FittedCurveLaw, curves: Sequence[str], widened: Sequence[str],
                      args: argparse.Namespace) -> dict[str, Any]:
    """params.json's record of the second law: which predictions it made, its fit, interval and band."""
    out = {"law": peak.name, "predicted": list(curves),
           "why": "one peak LR cannot show how the loss responds to the LR; this law transfers best to other "
                  "peak LRs on our proxies (harness/fit/registry.py DEFAULT_PEAK_LR_LAW, docs/CURVE_LAWS.md)",
           **_params_json(peak.law, peak.fit, peak.boot, args)}
    if peak.band is not None:
        out["band"] = peak.band.to_json(list(widened))
    return out


def held_params(law: Law) -> dict[str, float]:
    """The law's parameters held fixed (lower == upper), not fitted: params.json and metrics.json say which."""
    return {p.name: float(p.lower) for p in law.params if p.lower == p.upper}


def spans_several_peak_lrs(curves: Sequence[Curve]) -> bool:
    """Whether the curves' peak LRs differ by more than PEAK_LR_TOLERANCE (a factor)."""
    fitted = [f for f in fitted_peak_lrs(curves) if f > 0]
    return len(fitted) > 1 and max(fitted) / min(fitted) > PEAK_LR_TOLERANCE


def peak_lr_identification_notices(law: Law, fit_curves: Sequence[Curve],
                                   option: str = "--law") -> list[dict[str, str]]:
    """A notice when a sibling law suits the fit set better: a law that holds a parameter only curves at
    several peak LRs identify names its fitted sibling (`law_at_several_peak_lrs`), and the sibling names the
    held one (`law_at_one_peak_lr`); e.g. `convex-noise-eff` (S0 held) and `convex-noise-eff-fit`."""
    several = spans_several_peak_lrs(fit_curves)
    other = getattr(law, "law_at_several_peak_lrs" if several else "law_at_one_peak_lr", None)
    if other is None:
        return []
    held, other_held = held_params(law), held_params(CURVE_LAWS[other]())
    lrs = ", ".join(f"{f:.3g}" for f in fitted_peak_lrs(fit_curves))
    if several:
        names = ", ".join(f"{k} = {v:g}" for k, v in held.items() if k not in other_held)
        message = (f"the fit curves span several peak LRs ({lrs}), which identify what '{law.name}' holds fixed "
                   f"({names}); '{option} {other}' fits it from them (which of the two transferred better with a "
                   "second peak LR on our proxies: docs/CURVE_LAWS.md \"Two peak LRs\")")
    else:
        names = ", ".join(k for k in other_held if k not in held)
        message = (f"the fit curves share one peak LR ({lrs}), which does not identify '{law.name}''s {names} "
                   f"(the fitted value is arbitrary along a flat objective). Fix: '{option} {other}' (it holds "
                   f"{names}), or add a fit curve at a second peak LR")
    return [{"kind": "peak_lr_identification", "message": message}]


def peak_lr_notices(fit_curves: Sequence[Curve], pred_curves: Sequence[Curve], has_band: bool,
                    widened: Sequence[str] = (), peak_law: str | None = None) -> list[dict[str, str]]:
    """One notice per predicted curve whose peak LR no fit curve shares (within PEAK_LR_TOLERANCE, a factor):
    the fit set has not seen that LR, so its in-sample error does not say how far off the prediction is, and
    a band is trustworthy there only if it was widened (curves named in `widened`)."""
    fitted = fitted_peak_lrs(fit_curves)
    out = []
    for c in pred_curves:
        if at_fitted_peak_lr(c, fitted):
            continue
        peak = peak_lr(c)
        band = ""
        if c.name in widened:
            band = (" and its band is widened by refits over the law's weakly identified parameter (the default's "
                    "90 % band then covers 95-100 % at 0.5x and 2x on our proxies, but 67-70 % at 3x, past the "
                    "optimal LR)")
        elif has_band:
            band = (" and the band is calibrated at the fitted peak LR(s) (this law declares no weakly identified "
                    "parameter to widen it by): expect it to cover less than its level")
        out.append({"kind": "peak_lr_extrapolation",
                    "message": f"prediction {c.name!r} has peak LR {peak:.3g}, which no fit curve has (fitted: "
                               f"{', '.join(f'{f:.3g}' for f in fitted)}): peak-LR transfer is the weakest prediction "
                               f"of every curve law (2-4 % mean error on our proxies, docs/CURVE_LAWS.md)"
                               f"{f'; it is predicted by {peak_law!r}, the best law there (1.5-2.8 %)' if peak_law else ''}"
                               f"{band}. "
                               "Fix: add a fit curve at (or around) that peak LR"})
    return out


def _schedule_curves(args: argparse.Namespace, taken: list[str]) -> list[Curve]:
    """--predict-schedule files as curves with no observed loss (LR from harness.schedules); a
    name already `taken` by another prediction target is an input error (outputs would collide)."""
    from harness.fit.curve_predict import read_schedule_spec, schedule_curve

    curves = [schedule_curve(read_schedule_spec(p)) for p in getattr(args, "predict_schedule", [])]
    taken = list(taken)
    for c in curves:
        if c.name in taken:
            raise InputError(f"{c.path}: another prediction target is also named '{c.name}'. "
                             "Fix: rename one file so the outputs do not collide.")
        taken.append(c.name)
    return curves


def _check_band_level(args: argparse.Namespace) -> None:
    level = getattr(args, "band", 0.0)
    if level and not 0 < level < 1:
        raise InputError(f"--band {level}: the level must be in (0, 1), e.g. 0.9 (or 0 for no band)")


def _band(args: argparse.Namespace, name: str, fit_curves: Sequence[Curve], law: Law,
          fit: FitResult) -> PeakLRBand | None:
    """The calibrated --band of law `name` (harness/fit/curve_predict.py: plain at the fitted peak LR,
    widened at new ones), or None."""
    level = getattr(args, "band", 0.0)
    if not level:
        return None
    band = peak_lr_band(name, fit_curves, level, law=law, fit=fit, seed=args.seed)
    print(f"note: {level:.0%} band of {name} = prediction x (1 +- {band.half_width:.4f}), calibrated on the fit "
          "curves (leave-one-curve-out and forward-in-time refits)")
    return band


# ----------------------------------------------------------------------------------------------
# Scaling laws
# ----------------------------------------------------------------------------------------------


def _prepare_checked(law: Law, table: pd.DataFrame, path: str) -> dict[str, Any]:
    try:
        return law.prepare(table)
    except (ValueError, KeyError) as e:
        raise InputError(f"{path}: {e}") from None


def run_scaling(args: argparse.Namespace) -> Outputs:
    law = SCALING_LAWS[args.law]()
    _check_bootstrap_supported(law, args)
    cols = list(law.required_columns)
    fit_tables = [read_scaling_csv(p, cols, law.target, need_target=True) for p in args.fit]
    pred_tables = [read_scaling_csv(p, cols, law.target, need_target=False) for p in args.predict]
    names = [Path(p).stem for p in args.predict]
    if len(set(names)) != len(names):
        raise InputError(f"--predict files share a name ({names}); rename them so outputs do not collide")
    fit_table = pd.concat(fit_tables, ignore_index=True)
    fit_data = _prepare_checked(law, fit_table, ", ".join(map(str, args.fit)))
    pred_data = [_prepare_checked(law, t, str(p)) for t, p in zip(pred_tables, args.predict)]
    y = fit_table[law.target].to_numpy(dtype=float)

    settings = None
    if getattr(args, "select_settings", False):  # robust-fit settings chosen by extrapolation inside the fit set
        try:
            chosen = fit_for_extrapolation(law, fit_table, seed=args.seed)
        except ValueError as e:
            raise InputError(f"--select-settings: {e}") from None
        fit, settings = chosen.fit, chosen.summary()
    else:
        fit = fit_law(law, fit_data, y, seed=args.seed)
    # Scaling laws: resample (N, D) cells, each refit from several starts (harness/fit/bootstrap_starts.py).
    boot = None if args.bootstrap <= 0 else bootstrap_cells(
        law, fit_data, y, fit, groups=cell_labels(fit_table), n_boot=args.bootstrap, seed=args.seed)

    out = Outputs(params=_params_json(law, fit, boot, args), metrics={"fit": fit.metrics, "predict": {}},
                  fit_data=fit_data)
    if settings is not None:
        out.params["fit_settings"] = settings
    first = cols[0]
    out.series.append(plots.Series("fit", fit_table[first].to_numpy(float), y,
                                   np.asarray(law.predict(fit.theta, fit_data), dtype=float), "fit"))
    for name, table, data in zip(names, pred_tables, pred_data):
        pred = np.asarray(law.predict(fit.theta, data), dtype=float)
        table = table.copy()
        table[f"{law.target}_pred"] = pred
        lo = hi = None
        if boot is not None:
            lo, hi = boot.predict_interval(law, data)
            table[f"{law.target}_pred_lo"], table[f"{law.target}_pred_hi"] = lo, hi
        out.tables[f"pred_{name}.csv"] = table
        obs = table[law.target].to_numpy(dtype=float)
        ok = np.isfinite(obs)
        if ok.any():
            out.metrics["predict"][name] = metrics(obs[ok], pred[ok])
        out.series.append(plots.Series(name, table[first].to_numpy(float), obs, pred, "predict", lo, hi))
    return out


# ----------------------------------------------------------------------------------------------
# Shared
# ----------------------------------------------------------------------------------------------


def _bootstrap(law: Law, data: dict[str, Any], y: np.ndarray, fit: FitResult, args: argparse.Namespace,
               groups: np.ndarray | None) -> BootstrapResult | None:
    if args.bootstrap <= 0:
        return None
    return bootstrap(law, data, y, groups=groups, n_boot=args.bootstrap, seed=args.seed, fit=fit)


def _params_json(law: Law, fit: FitResult, boot: BootstrapResult | None, args: argparse.Namespace) -> dict[str, Any]:
    out = {**fit.to_json(), "held_params": held_params(law), "fit_files": [str(p) for p in args.fit],
           "seed": args.seed}
    if boot is not None:
        out["bootstrap"] = boot.to_json()
    return out


def _print_table(out: Outputs, law: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{law}: metrics")
    for col in ("set", "n", "R²", "MAE", "RMSE", "PredE", "WorstE"):
        table.add_column(col, justify="right" if col != "set" else "left")
    rows = [("fit (all)", out.metrics["fit"])]
    rows += [(f"fit: {k}", m) for k, m in out.metrics.get("fit_curves", {}).items()]
    routed = set(out.params.get("peak_lr_law", {}).get("predicted", ()))
    other = out.params.get("peak_lr_law", {}).get("law")
    rows += [(f"predict: {k}" + (f" [{other}]" if k in routed else ""), m) for k, m in out.metrics["predict"].items()]
    for name, m in rows:
        table.add_row(name, str(m["n"]), f"{m['r2']:.4f}", f"{m['mae']:.4g}", f"{m['rmse']:.4g}",
                      f"{100 * m['prede']:.3f}%", f"{100 * m['worste']:.3f}%")
    Console().print(table)


def write_outputs(out: Outputs, out_dir: Path, *, mode: str, target: str, law: str) -> None:
    atomic_write_json(out_dir / "params.json", out.params)
    atomic_write_json(out_dir / "metrics.json", out.metrics)
    for name, table in out.tables.items():
        atomic_write_text(out_dir / name, table.to_csv(index=False))
    plot = plots.plot_curves if mode == "curve" else plots.plot_scaling
    plot(out.series, out_dir / f"plot_{mode}.png", target=target, law=law)


def _checked(out: Outputs, args: argparse.Namespace) -> Outputs:
    """Refuse (FitRefused) or, with --allow-unconverged, warn: harness/fit/fit_checks.py."""
    law = (CURVE_LAWS if args.mode == "curve" else SCALING_LAWS)[args.law]()
    theta = [out.params["params"][name] for name in law.param_names]
    observed = np.concatenate([s.y for s in out.series if s.role == "fit"])
    predictions = {f"{s.role} set {s.name!r}": s.y_pred for s in out.series}
    problems = fit_checks.check_fit(law, theta, bool(out.params.get("converged", True)), predictions, observed,
                                    out.fit_data)
    for other in out.other_fits:  # an explicit --peak-lr-law is held to the same checks, its problems named as its own
        problems += [fit_checks.Problem(p.kind, f"(--peak-lr-law {other.name}) {p.message}")
                     for p in _fit_problems(other, other.predictions, observed)]
    warnings = fit_checks.enforce(problems, allow=getattr(args, "allow_unconverged", False)) + out.notices
    out.params["warnings"] = out.metrics["warnings"] = warnings
    for w in warnings:
        print(f"warning: {w['message']}", file=sys.stderr)
    return out


def run(args: argparse.Namespace) -> int:
    """Compute every output of `args.mode` (curve or scaling), check it (refuse or, with
    --allow-unconverged, warn), then write them; returns 0."""
    out = _checked(run_curve(args) if args.mode == "curve" else run_scaling(args), args)
    label = args.law
    if "peak_lr_law" in out.params:
        label = f"{args.law} ({out.params['peak_lr_law']['law']} at new peak LRs)"
    write_outputs(out, args.out, mode=args.mode, target=getattr(args, "target", "loss"), law=label)
    _print_table(out, label)
    print(f"wrote {args.out}")
    return 0
