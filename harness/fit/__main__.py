"""Command line of the fitting stage.

    python -m harness.fit curve   --law {mpl,tissue,tissue-true-warmup,power,...} --fit A.csv B.csv ...
                                  [--predict X.csv ...] --out DIR [--target loss|val_loss]
                                  [--bootstrap N] [--seed S] [--max-points M] [--min-step K]
    python -m harness.fit scaling --law {chinchilla,...} --fit runs.csv [--predict targets.csv ...]
                                  --out DIR [--bootstrap N] [--seed S]

Curve inputs are CSV (`step,lr,loss`, one row per optimizer step) or a harness `curve.jsonl`;
scaling inputs are CSV with the law's columns (e.g. `N,D,loss`; prediction targets may omit the
loss). See harness/fit/io.py.

DIR receives params.json (parameters, with bootstrap intervals when asked), metrics.json (on the
fit set and on every predicted file with observed values), pred_<name>.csv per predicted file and
plot_<mode>.png. Every input is read and validated before anything is written; bad input exits
with status 2 and a message naming the file, row and fix, and creates nothing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: tiny BLAS calls, threads only cost

import argparse  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.files import atomic_write_json, atomic_write_text  # noqa: E402
from harness.fit import plots  # noqa: E402
from harness.fit.fitter import BootstrapResult, FitResult, bootstrap, fit_law, metrics  # noqa: E402
from harness.fit.io import Curve, InputError, read_curves, read_scaling_csv  # noqa: E402
from harness.fit.laws.base import Law  # noqa: E402
from harness.fit.registry import CURVE_LAWS, SCALING_LAWS  # noqa: E402


@dataclass
class Outputs:
    """Everything to write, computed before the out dir is touched."""

    params: dict[str, Any]
    metrics: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    series: list[plots.Series] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Curve laws
# ----------------------------------------------------------------------------------------------


def _observed(curves: Sequence[Curve]) -> np.ndarray:
    return np.concatenate([c.loss[c.eval_index()] for c in curves])


def _check_bootstrap_supported(law: Law, args: argparse.Namespace) -> None:
    if args.bootstrap > 0 and law.n_refine == 0:
        raise InputError(f"--bootstrap: law '{args.law}' does its own fitting and cannot be bootstrapped; "
                         "drop --bootstrap or use a law fitted by the generic fitter (e.g. 'mpl')")


def run_curve(args: argparse.Namespace) -> Outputs:
    law = CURVE_LAWS[args.law]()
    _check_bootstrap_supported(law, args)
    fit_curves = read_curves(args.fit, args.target, need_loss=True)
    pred_curves = read_curves(args.predict, args.target, need_loss=False)
    for c in fit_curves + pred_curves:
        c.max_points = args.max_points
        c.min_step = args.min_step
    for c in fit_curves:
        if c.n_observed == 0:
            raise InputError(f"{c.path}: no observed loss at or after step {args.min_step}. "
                             "Fix: lower --min-step or fit on a longer curve.")
    fit_data = law.prepare(fit_curves)
    y = _observed(fit_curves)
    groups = np.concatenate([np.full(c.eval_index().size, i) for i, c in enumerate(fit_curves)])

    fit = fit_law(law, fit_data, y, seed=args.seed)
    boot = _bootstrap(law, fit_data, y, fit, args, groups if len(fit_curves) > 1 else None)

    out = Outputs(params=_params_json(law, fit, boot, args), metrics={"fit": fit.metrics, "fit_curves": {},
                                                                        "predict": {}})
    for role, curves in (("fit", fit_curves), ("predict", pred_curves)):
        for c in curves:
            idx = c.eval_index()
            data = law.prepare([c])
            pred = np.asarray(law.predict(fit.theta, data), dtype=float)
            obs = c.loss[idx]
            lo = hi = None
            table = pd.DataFrame({"step": c.step[idx], "lr": c.lr[idx], args.target: obs,
                                  f"{args.target}_pred": pred})
            if boot is not None:
                lo, hi = boot.predict_interval(law, data)
                table[f"{args.target}_pred_lo"], table[f"{args.target}_pred_hi"] = lo, hi
            ok = np.isfinite(obs)
            if role == "predict":
                out.tables[f"pred_{c.name}.csv"] = table
                if ok.any():
                    out.metrics["predict"][c.name] = metrics(obs[ok], pred[ok])
            else:
                out.metrics["fit_curves"][c.name] = metrics(obs[ok], pred[ok])
            out.series.append(plots.Series(c.name, c.step[idx].astype(float), obs, pred, role, lo, hi))
    return out


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

    fit = fit_law(law, fit_data, y, seed=args.seed)
    boot = _bootstrap(law, fit_data, y, fit, args, None)

    out = Outputs(params=_params_json(law, fit, boot, args), metrics={"fit": fit.metrics, "predict": {}})
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
    out = {**fit.to_json(), "fit_files": [str(p) for p in args.fit], "seed": args.seed}
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
    rows += [(f"predict: {k}", m) for k, m in out.metrics["predict"].items()]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.fit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    for mode, laws in (("curve", CURVE_LAWS), ("scaling", SCALING_LAWS)):
        p = sub.add_parser(mode, help=f"fit a {mode} law")
        p.add_argument("--law", required=True, choices=sorted(laws))
        p.add_argument("--fit", required=True, nargs="+", type=Path, help="input files to fit on")
        p.add_argument("--predict", nargs="*", default=[], type=Path, help="input files to predict")
        p.add_argument("--out", required=True, type=Path, help="output directory")
        p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                       help="bootstrap resamples (over curves / runs) for intervals; 0 = none")
        p.add_argument("--seed", type=int, default=0)
        if mode == "curve":
            p.add_argument("--target", default="loss", choices=("loss", "val_loss"),
                           help="which loss to fit (curve.jsonl has both; a CSV needs that column)")
            p.add_argument("--max-points", type=int, default=1000,
                           help="evaluate at most this many observed rows per curve (evenly thinned)")
            p.add_argument("--min-step", type=int, default=1,
                           help="fit and score only rows at or after this step (e.g. the end of warmup)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    target = getattr(args, "target", "loss")
    try:
        out = run_curve(args) if args.mode == "curve" else run_scaling(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except RuntimeError as e:  # e.g. every start of the fit is invalid
        print(f"error: fit failed: {e}", file=sys.stderr)
        return 1
    write_outputs(out, args.out, mode=args.mode, target=target, law=args.law)
    _print_table(out, args.law)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
