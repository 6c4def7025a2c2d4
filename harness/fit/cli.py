"""Command line of the fitting stage: `python -m harness.fit SUBCOMMAND ...` (SUBCOMMAND --help for all options).

Fit a registered law (harness/fit/registry.py) to files; OUT receives params.json, metrics.json,
pred_<name>.csv per predicted file and plot_<mode>.png:

    curve   [--law LAW] [--peak-lr-law LAW|none] --fit A.csv ... [--predict X.csv ...] [--predict-schedule S.yaml ...]
            --out DIR [--target loss|val_loss] [--bootstrap N] [--band LEVEL] [--seed S]
            [--max-points M] [--min-step K] [--fill-lr linear]
            --law defaults to DEFAULT_CURVE_LAW in harness/fit/registry.py (chosen by
            scripts/validate_curve_laws.py, docs/CURVE_LAWS.md); without --law, a prediction at a
            peak LR no fit curve has is made by DEFAULT_PEAK_LR_LAW (--peak-lr-law LAW|none) and
            named in params.json. --predict-schedule takes a schedule
            file (any schedule of harness/schedules.py plus `steps` and `peak_lr`) and writes
            pred_<file stem>.csv, its predicted curve.
    scaling --law LAW --fit runs.csv [--predict targets.csv ...] --out DIR [--bootstrap N] [--seed S]

  Curve inputs are CSV (`step,lr,loss`, one row per optimizer step; logged every N steps or from a
  later step only with --fill-lr linear, which fills in the LR and says so) or a harness `curve.jsonl`;
  scaling inputs are CSV with the law's columns (e.g. `N,D,loss`; prediction targets may omit the
  loss), such as the table of `python -m harness.collect`. See harness/fit/io.py.

Analyse a table of runs (harness/fit/isoflop.py, harness/fit/hyperparams.py); the result is printed
as JSON and, with --out FILE, also written there:

    SUBCOMMAND TABLE      OPTIONS                                         COLUMNS
    isoflop    runs.csv   [--budgets 6e18 1e19 ...] [--rel-tol 0.05]      N, D, loss (C optional, else 6ND)
    envelope   curves.csv [--run-column run]                              N, D (tokens so far), loss, run
    steplaw    runs.csv   [--tol 0.0025] [--n-boot 1000] [--seed 0]       N, D, lr, B, loss
    powerlines runs.csv   [--n-boot 1000] [--seed 0]                      N, D, B, lr, wd, loss
    critbatch  curves.csv --targets 3.2 3.1 3.0 [--run-column run]        run, B, step, loss
    powersched runs.csv   [--seq-len L] [--n-boot 1000] [--allow-edge]    D, B, lr, loss (+ seq_len, N optional)

  powerlines also fits B_crit(D) when the table sweeps D at fixed (N, B), and with --target-loss X
  --loss-law params.json [--max-steps S] picks the (N, D, B) of least compute within S steps, or with
  --compute C --max-steps S the (N, D, B) of least loss
  (ASSUMED formulas: docs/POWER_SCHEDULER.md). powersched fits the Power Scheduler's
  lr_opt = a * beta * n^b (beta sequences per step, n tokens) from WSD / constant-LR sweeps.

  TABLE may also be given as --fit TABLE. Column names are those `python -m harness.collect` writes
  (N non-embedding, D tokens, B tokens per step, lr, wd, C FLOPs, loss); rows without a loss are
  skipped with a note. steplaw and powerlines validate the grid: a cell with < 3 runs or whose best
  run is at the edge of its lr / B sweep is an error naming the cell (--allow-edge: a warning).

Every input is read and validated before anything is written; bad input exits with status 2 and
a message naming the file (and row) and the fix, and creates nothing. A fit that did not
converge, has a parameter on a bound, or predicts outside its data's plausible range exits with
status 3 and writes nothing (harness/fit/fit_checks.py); `--allow-unconverged` keeps it, with the
problems as warnings on stderr and in params.json / metrics.json.

This module imports only the standard library and the registry's names, so `--help` answers at
once; numpy, pandas, scipy and matplotlib load when a subcommand runs.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: tiny BLAS calls, threads only cost

import argparse  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Sequence  # noqa: E402

from harness.fit.registry import CURVE_LAWS, DEFAULT_CURVE_LAW, DEFAULT_PEAK_LR_LAW, SCALING_LAWS  # noqa: E402


def _fit_law(args: argparse.Namespace) -> int:
    from harness.fit import law_fit

    return law_fit.run(args)


def _analysis(args: argparse.Namespace) -> int:
    from harness.fit import analyses

    return analyses.run(args)


def _add_law_fit(sub: argparse._SubParsersAction, mode: str, laws: dict) -> None:
    p = sub.add_parser(mode, help=f"fit a {mode} law to files",
                       description=f"Fit a {mode} law; see `python -m harness.fit --help`.")
    if mode == "curve":
        p.add_argument("--law", default=None, choices=sorted(laws),
                       help=f"curve law (default: {DEFAULT_CURVE_LAW}, with predictions at a peak LR no fit curve has "
                            f"made by {DEFAULT_PEAK_LR_LAW}, see --peak-lr-law; validation: docs/CURVE_LAWS.md)")
        p.add_argument("--peak-lr-law", default=None, choices=sorted(laws) + ["none"],
                       help=f"law for predictions at a peak LR that no fit curve has (default: {DEFAULT_PEAK_LR_LAW} "
                            "when --law is not given, else none = --law for every prediction); it is fitted on the "
                            "same fit curves, and params.json's `peak_lr_law` says which curves it predicted")
    else:
        p.add_argument("--law", required=True, choices=sorted(laws),
                       help=("farseer is EXPERIMENTAL: the paper's decomposition and staged fit are followed, but its "
                             "closed form is a guess (not read in the paper); it needs >= 5 model sizes. "
                             "kaplan-steps (columns N, step, B) is a seed law checked on held-out sizes of Step Law's grid "
                             "(docs/STEPLAW.md); chinchilla-journey (N_avg, D; collect writes N_avg for train.prune runs) "
                             "is checked on pruned runs by scripts/check_journey_pruning.py. cmr (columns ratio, T, L0) has "
                             "an ASSUMED loss surface "
                             "L0 + (T/T_ref)^p (a + b r^q) (the CMR paper's text was not available); its critical "
                             "ratio comes from the mixture_sweep report, which also checks the surface forward in T (docs/MIXTURES.md). "
                             "three-term (columns N, B in "
                             "tokens, step) is EXPERIMENTAL: Schaipp 2026's L = E + A/N^a + B/M^b + C/K^c, taken "
                             "from secondary sources (the paper's text was not available); on Step Law's grid its "
                             "optimal-batch exponent does not match the paper's quoted one, while it predicts held-out "
                             "sizes' losses to 0.5 percent (docs/STEPLAW.md). "
                             "See harness/fit/laws/"))
    p.add_argument("--fit", required=True, nargs="+", type=Path, help="input files to fit on")
    p.add_argument("--predict", nargs="*", default=[], type=Path, help="input files to predict")
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.add_argument("--bootstrap", type=int, default=0, metavar="N",
                   help="bootstrap resamples for intervals; 0 = none. curve: over curves; scaling: over (N, D) "
                        "cells (runs when each cell has one), each refit from several starts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--allow-unconverged", action="store_true",
                   help="keep a fit that did not converge, has a parameter on a bound or predicts outside its "
                        "data's plausible range (a warning in the output and in metrics.json / params.json); "
                        "without it such a fit exits with status 3 and writes nothing")
    if mode == "scaling":
        p.add_argument("--select-settings", action="store_true",
                       help="for extrapolation in compute: choose the Huber delta and compute weighting by fitting "
                            "the lower 80%% of the fit runs and predicting the rest, then refit on all "
                            "(harness/fit/extrapolation.py); the choice is stored in params.json")
    if mode == "curve":
        p.add_argument("--target", default="loss", choices=("loss", "val_loss"),
                       help="which loss to fit (curve.jsonl has both; a CSV needs that column)")
        p.add_argument("--max-points", type=int, default=1000,
                       help="evaluate at most this many observed rows per curve (evenly thinned)")
        p.add_argument("--min-step", type=int, default=1,
                       help="fit and score only rows at or after this step (e.g. the end of warmup)")
        p.add_argument("--fill-lr", default=None, choices=("linear",),
                       help="read curve files (--fit and --predict) logged every N steps and/or from a later step: "
                            "the LR of each missing step is interpolated linearly between the logged rows around it "
                            "(exact on linear warmup/decay, ~exact on cosine; a step decay between two rows is "
                            "smeared over their gap), and steps 0 .. first row - 1 get a linear ramp from 0 to the "
                            "first row's LR (right only if that row is at or inside a linear warmup from 0); their "
                            "loss is unobserved. The counts are printed and stored in params.json / metrics.json "
                            "(lr_filled). Default: such files are refused")
        p.add_argument("--predict-schedule", action="append", default=[], type=Path, metavar="FILE",
                       help="schedule file (.yaml/.json: name + its fields, steps, peak_lr) to predict; "
                            "writes pred_<stem>.csv; repeatable")
        p.add_argument("--band", type=float, default=0.0, metavar="LEVEL",
                       help="add a calibrated LEVEL (e.g. 0.9) prediction band (loss_band_lo/hi) from "
                            "leave-one-curve-out and forward-in-time refits; 0 = none. At a peak LR no fit curve "
                            "has, widened by refits over what one peak LR cannot pin down (the clock exponent): "
                            "docs/CURVE_LAWS.md")
    p.set_defaults(run=_fit_law)


def _add_analysis(sub: argparse._SubParsersAction, mode: str, help_text: str, columns: str) -> argparse.ArgumentParser:
    p = sub.add_parser(mode, help=help_text, description=f"{help_text}. Columns: {columns}.")
    p.add_argument("table", type=Path, nargs="?", default=None, help=f"CSV with columns {columns}")
    p.add_argument("--fit", type=Path, default=None, metavar="TABLE", help="the table, as the law fits take it")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="also write the JSON result here")
    p.set_defaults(run=_analysis)
    return p


def _add_grid_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-edge", action="store_true",
                   help="a cell with < 3 runs or its best run on the grid's edge is a warning, not an error")
    p.add_argument("--batch-unit", choices=("tokens", "sequences"), default="tokens",
                   help="unit of column B (harness.collect writes tokens per step); sequences need --seq-len")
    p.add_argument("--seq-len", type=int, default=None,
                   help="tokens per sequence, to convert B between tokens and sequences")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.fit", description=__doc__.split("\n\nThis module")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True, metavar="SUBCOMMAND")
    _add_law_fit(sub, "curve", CURVE_LAWS)
    _add_law_fit(sub, "scaling", SCALING_LAWS)

    p = _add_analysis(sub, "isoflop", "Chinchilla Approach 2: IsoFLOP parabolas -> N_opt(C), D_opt(C)",
                      "N, D, loss (C optional, else 6ND)")
    p.add_argument("--budgets", type=float, nargs="+", help="nominal FLOP budgets of the sweep")
    p.add_argument("--rel-tol", type=float, default=0.05, help="budget grouping tolerance (relative)")
    p = _add_analysis(sub, "envelope", "Chinchilla Approach 1: lowest loss over training curves at each C",
                      "N, D (tokens so far), loss, run")
    p.add_argument("--run-column", default="run", help="run id column (absent: one curve per N)")
    p = _add_analysis(sub, "steplaw", "Step Law: lr_opt(N, D) and B_opt(D) from near-optimal runs",
                      "N, D, lr, B, loss")
    p.add_argument("--tol", type=float, default=0.0025, help="near-optimal tolerance (relative to the cell's best)")
    p.add_argument("--method", choices=("official", "vertex"), default="official",
                   help="official: OLS on the near-optimal runs (--tol); vertex (experimental): OLS on each cell's "
                        "quadratic vertex, window chosen by leave-one-size-out validation (docs/STEPLAW.md)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (over cells)")
    p.add_argument("--seed", type=int, default=0)
    _add_grid_options(p)
    p = _add_analysis(sub, "powerlines",
                      "Power Lines: tau_opt(D/N), B_opt(D) and B_crit(D) from lr / weight-decay / batch sweeps",
                      "N, D, B, lr, wd, loss")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (over cells)")
    p.add_argument("--seed", type=int, default=0)
    _add_grid_options(p)
    p.add_argument("--target-loss", type=float, default=None,
                   help="Pareto choice: the (N, D, B) reaching this loss with the least compute within --max-steps "
                        "steps. ASSUMED formulas (the paper's section was not read): D = D_min (1 + B/B_crit(D_min)), "
                        "time = steps, D_min from --loss-law; see docs/POWER_SCHEDULER.md")
    p.add_argument("--loss-law", default=None, metavar="PARAMS",
                   help="L(N, D) for --target-loss: `harness.fit scaling --law chinchilla`'s params.json, or "
                        "E=..,A=..,alpha=..,B=..,beta=..")
    p.add_argument("--compute", type=float, default=None,
                   help="Pareto choice at a compute budget: the (N, D, B) of least loss for this many FLOPs (6 N D) "
                        "within --max-steps steps (same ASSUMED formulas)")
    p.add_argument("--max-steps", type=float, default=None, help="time budget in optimizer steps (none: no limit)")
    p = _add_analysis(sub, "powersched", "Power Scheduler: lr_opt = a * beta * n^b from WSD / constant-LR sweeps "
                      "(beta sequences per step, n tokens; b shared, a from lr_opt / beta)",
                      "D (tokens), B (tokens per step, or --batch-unit sequences), lr, loss; seq_len or --seq-len; "
                      "N optional")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (over cells)")
    p.add_argument("--seed", type=int, default=0)
    _add_grid_options(p)
    p = _add_analysis(sub, "critbatch", "critical batch size: S_min, E_min, B_crit per target loss",
                      "run, B, step, loss")
    p.add_argument("--targets", type=float, nargs="+", required=True, help="target losses")
    p.add_argument("--run-column", default="run", help="run id column")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from harness.fit.fit_checks import FitRefused  # after parsing: keeps --help free of numpy and pandas
    from harness.fit.io import InputError

    try:
        return args.run(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except FitRefused as e:  # harness/fit/fit_checks.py: converged, off the bounds, plausible predictions
        print(f"error: {e}", file=sys.stderr)
        return 3
    except RuntimeError as e:  # e.g. every start of the fit is invalid
        print(f"error: fit failed: {e}", file=sys.stderr)
        return 1
