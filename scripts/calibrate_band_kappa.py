"""Calibrate a curve law's `peak_lr_distance_width` (kappa) on proxy sets (issue 12; docs/CURVE_LAWS.md
"Band widened with the LR distance").

At a peak LR no fit curve has, `--band` is the envelope of the law's refits over its weak parameter, each x
(1 +- (q + kappa * |ln(peak LR / nearest fitted peak LR)|)). kappa = the smallest value whose band covers
`--level` of the held-out points, pooled over every task of every set: fit constant + cosine + WSD linear at
EVERY peak LR and horizon of a set (scripts/validate_curve_laws.py `every_fit_lr_tasks`), predict every
schedule at 0.5x, 2x and 3x that LR. For each held-out point the script computes the kappa it needs (0 when
the band without kappa already covers it); kappa is their `level` quantile. It also prints the leave-one-set-
out check (kappa from the other sets, coverage on the one left out) and the mean half-width with kappa.

    python scripts/calibrate_band_kappa.py --law convex-noise-eff --sets experiments/curve_prediction_cpu \\
        /work/wt/curvedata /work/wt/curvedata3 /work/wt/curvedata4 /work/wt/curvedata5

(the law's own declared kappa is ignored while calibrating). Sets are outputs of
scripts/make_curve_validation_set.py or a curve_prediction experiment.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.fit.curve_predict import peak_lr_band  # noqa: E402
from harness.fit.registry import CURVE_LAWS  # noqa: E402
from validate_curve_laws import BASE_LR, at_dev_ratio, every_fit_lr_tasks  # noqa: E402


def needed_kappa(y: np.ndarray, lo: np.ndarray, hi: np.ndarray, distance: float) -> np.ndarray:
    """Per point, the kappa that puts y inside [lo (1 - kappa d), hi (1 + kappa d)] (0 if already inside)."""
    if not distance > 0:
        raise ValueError(f"distance must be > 0 (|ln of a peak-LR ratio|), got {distance}")
    over = np.maximum((lo - y) / lo, (y - hi) / hi)
    return np.maximum(over, 0.0) / distance


@dataclass
class SetPoints:
    """Needed kappa and (half-width without kappa, distance) of every held-out point of one set."""

    need: list[float]
    widths: list[tuple[float, float]]


def collect(law: str, roots: list[Path], level: float) -> dict[str, SetPoints]:
    out: dict[str, SetPoints] = {}
    for label, _, fit_set, held in every_fit_lr_tasks(roots):
        band = replace(peak_lr_band(law, fit_set, level), distance_width=0.0)
        points = out.setdefault(label.split("/")[0], SetPoints([], []))
        for ratio, curve in held:
            if not at_dev_ratio(ratio):
                continue
            y = curve.loss[curve.eval_index()]
            pred, lo, hi = band.limits(curve)
            d = abs(float(np.log(ratio)))
            points.need += needed_kappa(y, lo, hi, d).tolist()
            points.widths += [(float(w), d) for w in (hi - lo) / 2 / pred]
        print(f"  {label}", file=sys.stderr, flush=True)
    return out


def report(law: str, sets: dict[str, SetPoints], level: float) -> float:
    pooled = np.concatenate([np.asarray(p.need) for p in sets.values()])
    kappa = float(np.quantile(pooled, level))
    widths = [w + kappa * d for p in sets.values() for w, d in p.widths]
    print(f"{law}: {pooled.size} held-out points in {len(sets)} sets; covered without kappa "
          f"{100 * np.mean(pooled == 0):.1f} %; kappa for {level:.0%} pooled = {kappa:.4f} "
          f"(mean half-width {100 * np.mean(widths):.2f} %)")
    if len(sets) > 1:
        for name, p in sets.items():
            rest = np.concatenate([np.asarray(q.need) for n, q in sets.items() if n != name])
            k = float(np.quantile(rest, level))
            print(f"  leave out {name:24s} kappa {k:.4f} -> coverage there {100 * np.mean(np.asarray(p.need) <= k):.1f} %")
    return kappa


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--law", required=True, choices=sorted(CURVE_LAWS))
    ap.add_argument("--sets", nargs="+", type=Path, required=True, help="proxy sets or curve_prediction experiments")
    ap.add_argument("--level", type=float, default=0.9, help="band level and target coverage")
    args = ap.parse_args(argv)
    if not 0 < args.level < 1:
        ap.error(f"--level {args.level}: must be in (0, 1), e.g. 0.9")
    for root in args.sets:
        if not (root / "plan.json").is_file() and not (root / f"600_constant_{BASE_LR}" / "curve.jsonl").is_file():
            ap.error(f"--sets {root}: no proxy set or curve_prediction experiment there "
                     "(make one with scripts/make_curve_validation_set.py)")
    report(args.law, collect(args.law, args.sets, args.level), args.level)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
