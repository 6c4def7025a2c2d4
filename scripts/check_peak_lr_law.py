"""The default curve fit at new peak LRs, end to end (issue 12; README "Which curve law by default").

For each proxy set (scripts/make_curve_validation_set.py) and horizon: `python -m harness.fit curve` fits
constant + cosine + WSD linear at the base peak LR 2e-3 and predicts all 5 schedules at 1e-3 / 4e-3 / 6e-3,
once as the default does (predictions at a new peak LR by DEFAULT_PEAK_LR_LAW) and once with
`--peak-lr-law none`; it prints the mean PredE per peak LR from metrics.json. `--band` adds the coverage
and mean half-width of the 90 % band each of the two runs wrote (`--band 0.9`). `--seed-pair A B`
compares two seeds of one proxy (same runs, other train.seed; 600 steps, peak LRs 2e-3 and 4e-3): their
difference, and each law's 2e-3 -> 4e-3 transfer on either seed and on the two-seed mean.

    python scripts/check_peak_lr_law.py --sets /work/wt/curvedata4 /work/wt/curvedata /work/wt/curvedata3 [--band]
        [--seed-pair /work/wt/curvedata4 /work/wt/curvedata4_seed3] [--seed-mean /work/wt/curvedata6 /work/wt/curvedata6_seed22]

`--seed-mean A B ...` takes full sets of one proxy that differ only in train.seed: it prints their spread per
horizon and peak LR, then the same end-to-end check on the seed-mean curves (fit curves and targets averaged).

The fits run with --allow-unconverged: on these short proxies the default's floor L0 often sits on 0, which
the CLI otherwise refuses (the script prints how many fits that was).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.fit.curve_predict import fit_curves  # noqa: E402
from harness.fit.fitter import metrics  # noqa: E402
from harness.fit.registry import DEFAULT_CURVE_LAW, DEFAULT_PEAK_LR_LAW  # noqa: E402
from validate_curve_laws import ALL_SCHEDULES, BASE_LR, FIT_SCHEDULES, OTHER_LRS, proxy_curve  # noqa: E402

BAND_LEVEL = 0.9


def _copied(run_dirs: list[Path], into: Path) -> list[str]:
    """curve.jsonl files all share one name; the CLI names outputs by file stem, so copy to <run>.jsonl."""
    out = []
    for d in run_dirs:
        target = into / f"{d.name}.jsonl"
        target.write_text((d / "curve.jsonl").read_text())
        out.append(str(target))
    return out


def cli_transfer(root: Path, horizon: int, scratch: Path, band: bool) -> None:
    fit = _copied([root / f"{horizon}_{s}_{BASE_LR}" for s in FIT_SCHEDULES], scratch)
    pred = _copied([root / f"{horizon}_{s}_{lr}" for lr in OTHER_LRS for s in ALL_SCHEDULES], scratch)
    for label, extra in (("default (peak-LR law)", []), ("default, one law", ["--peak-lr-law", "none"])):
        out = scratch / "out"
        cmd = [sys.executable, "-m", "harness.fit", "curve", "--fit", *fit, "--predict", *pred, "--target",
               "val_loss", "--min-step", "151", "--allow-unconverged", "--out", str(out), *extra,
               *(["--band", str(BAND_LEVEL)] if band else [])]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            print(f"{root.name} {horizon} {label}: exit {done.returncode}\n{done.stderr[-800:]}")
            continue
        predicted = json.loads((out / "metrics.json").read_text())["predict"]
        params = json.loads((out / "params.json").read_text())
        by_lr: dict[str, list[float]] = {}
        for name, m in predicted.items():
            by_lr.setdefault(name.rsplit("_", 1)[1], []).append(m["prede"])
        refused = sum(w["kind"] in ("on_bound", "not_converged", "implausible_prediction") for w in params["warnings"])
        mean = 100 * np.mean([m["prede"] for m in predicted.values()])
        print(f"{root.name:14s} {horizon:5d}  {label:22s} mean PredE {mean:.3f} %  "
              + "  ".join(f"{lr}: {100 * np.mean(v):.2f}" for lr, v in sorted(by_lr.items()))
              + f"  (peak-LR law: {params.get('peak_lr_law', {}).get('law')}; fit problems kept as warnings: {refused})"
              + (band_coverage(out, predicted) if band else ""), flush=True)


def band_coverage(out: Path, predicted: dict) -> str:
    """Coverage and mean half-width of the band the CLI wrote (pred_<curve>.csv) over the held-out points."""
    import pandas as pd

    inside = total = 0
    widths = []
    for name in predicted:
        t = pd.read_csv(out / f"pred_{name}.csv").dropna(subset=["val_loss"])
        inside += int(((t.val_loss >= t.val_loss_band_lo) & (t.val_loss <= t.val_loss_band_hi)).sum())
        total += len(t)
        widths.append(float(np.mean((t.val_loss_band_hi - t.val_loss_band_lo) / 2 / t.val_loss_pred)))
    return f"  {BAND_LEVEL:.0%} band: covers {100 * inside / total:.0f} %, mean half-width {100 * np.mean(widths):.1f} %"


def seed_pair(a: Path, b: Path, laws: list[str]) -> None:
    diffs = []
    for lr in (BASE_LR, "0.004"):
        d = []
        for s in ALL_SCHEDULES:
            ca, cb = proxy_curve(a, 600, s, lr), proxy_curve(b, 600, s, lr)
            ia, ib = ca.eval_index(), cb.eval_index()
            d.append(np.mean(np.abs(cb.loss[ib] - ca.loss[ia]) / ca.loss[ia]))
        print(f"seeds {a.name} vs {b.name}, peak LR {lr}: mean |difference| {100 * np.mean(d):.2f} %")
        diffs += d
    print(f"  all: {100 * np.mean(diffs):.2f} % (one run vs an ideal expected curve: ~{100 * np.mean(diffs) / np.sqrt(2):.2f} %)")

    def curve(which: str, s: str, lr: str):
        if which == "mean":
            ca, cb = proxy_curve(a, 600, s, lr), proxy_curve(b, 600, s, lr)
            return replace(ca, loss=(ca.loss + cb.loss) / 2)
        return proxy_curve(a if which == "first" else b, 600, s, lr)

    for law_name in laws:
        row = []
        for which in ("first", "second", "mean"):
            law, fit = fit_curves(law_name, [curve(which, s, BASE_LR) for s in FIT_SCHEDULES])
            errs = []
            for s in ALL_SCHEDULES:
                c = curve(which, s, "0.004")
                errs.append(metrics(c.loss[c.eval_index()], np.asarray(law.predict(fit.theta, law.prepare([c]))))["prede"])
            row.append(f"{which} seed {100 * np.mean(errs):.2f} %")
        print(f"  {law_name:18s} 2e-3 -> 4e-3: " + ", ".join(row), flush=True)


def seed_mean_set(roots: list[Path], into: Path) -> Path:
    """A proxy set whose curves are the seed means of `roots` (same runs, other train.seed): loss and val_loss
    averaged per step; the steps and the LR must agree (they do when only the seed differs)."""
    from harness.tracking.curve import read_curve_lines

    into.mkdir(parents=True, exist_ok=True)
    for run in sorted(p.name for p in roots[0].iterdir() if (p / "curve.jsonl").is_file()):
        seeds = [[obj for _, obj in read_curve_lines(r / run / "curve.jsonl")] for r in roots]
        for other in seeds[1:]:
            if [(o["step"], o["lr"]) for o in other] != [(o["step"], o["lr"]) for o in seeds[0]]:
                raise SystemExit(f"--seed-mean: {run} has other steps or LRs in {roots} (not seeds of one set)")
        rows = []
        for objs in zip(*seeds):
            row = dict(objs[0])
            for key in ("loss", "val_loss"):
                if all(o.get(key) is not None for o in objs):
                    row[key] = float(np.mean([float(o[key]) for o in objs]))
            rows.append(json.dumps(row))
        (into / run).mkdir(exist_ok=True)
        (into / run / "curve.jsonl").write_text("\n".join(rows) + "\n")
    return into


def seed_spread(roots: list[Path]) -> None:
    """Mean |difference| between the first seed and each other one, per horizon and peak LR (all schedules)."""
    for horizon in (600, 1200):
        cells = []
        for lr in (OTHER_LRS[0], BASE_LR, *OTHER_LRS[1:]):
            d = []
            for s in ALL_SCHEDULES:
                ca = proxy_curve(roots[0], horizon, s, lr)
                ia = ca.eval_index()
                ia = ia[ca.step[ia] >= 151]
                for other in roots[1:]:
                    cb = proxy_curve(other, horizon, s, lr)
                    d.append(np.mean(np.abs(cb.loss[ia] - ca.loss[ia]) / ca.loss[ia]))
            cells.append(f"{lr}: {100 * np.mean(d):.2f}")
        print(f"seed spread {' vs '.join(r.name for r in roots)} at {horizon} steps (mean |difference|, %): "
              + "  ".join(cells), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="*", type=Path, default=[], help="proxy sets (make_curve_validation_set.py)")
    ap.add_argument("--band", action="store_true", help="also the coverage of the 90 %% band the CLI writes")
    ap.add_argument("--seed-pair", nargs=2, type=Path, default=None, metavar=("FIRST", "SECOND"),
                    help="two seeds of one proxy (600 steps, peak LRs 2e-3 and 4e-3)")
    ap.add_argument("--seed-mean", nargs="+", type=Path, default=None, metavar="SET",
                    help="full proxy sets that differ only in train.seed: their spread, then the CLI transfer on the "
                         "seed-mean curves (fit and targets averaged over the seeds)")
    args = ap.parse_args(argv)
    for root in args.sets + (args.seed_mean or []):
        if not (root / f"600_constant_{BASE_LR}" / "curve.jsonl").is_file():
            ap.error(f"--sets {root}: no proxy set there (make it with scripts/make_curve_validation_set.py)")
    with tempfile.TemporaryDirectory() as tmp:
        for root in args.sets:
            for horizon in (600, 1200):
                cli_transfer(root, horizon, Path(tmp), args.band)
        if args.seed_mean:
            seed_spread(args.seed_mean)
            mean = seed_mean_set(args.seed_mean, Path(tmp) / f"seed-mean-of-{len(args.seed_mean)}")
            for horizon in (600, 1200):
                cli_transfer(mean, horizon, Path(tmp), args.band)
    if args.seed_pair:
        seed_pair(*args.seed_pair, [DEFAULT_PEAK_LR_LAW, "convex-noise-sqrt", DEFAULT_CURVE_LAW])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
