"""Wall time of one fit per law on reference data (goal: <= 10 s per law on 2 cores; curve laws
<= 5 s on 3 curves, issue 12), and of
scoring the 4,500-start Chinchilla grid in one vectorized call (goal: < 1 s).

Table-driven: add a row to BENCHES with a name and a function of the data directory that returns
(law, prepared data, observed y). Fits are single-threaded (OPENBLAS_NUM_THREADS=1). The
reference data is public data, not part of this repository (DIR from --data, else
$HARNESS_DATA, else ../shared/data; origins in docs/DATA.md).

    python scripts/bench_fit.py [--repeat N] [--only NAME ...] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.fit.data_dir import exit_if_missing  # noqa: E402
from harness.fit.fitter import fit_law  # noqa: E402
from harness.fit.laws.base import Law  # noqa: E402
from harness.fit.laws.final_loss import ChinchillaLaw  # noqa: E402
from harness.fit.registry import CURVE_LAWS, SCALING_LAWS  # noqa: E402

Case = Callable[[Path | None], tuple[Law, Any, np.ndarray]]


def _mpl_train_case(law_name: str, size: str = "400") -> Case:
    """A curve law on the MPL official train split (3 curves, 24k / 24k / 16k steps)."""

    def case(data: Path | None) -> tuple[Law, Any, np.ndarray]:
        import reproduce_mpl

        curves = [reproduce_mpl.load_curve(size, n, data) for n in reproduce_mpl.TRAIN]
        law = CURVE_LAWS[law_name]()
        return law, law.prepare(curves), reproduce_mpl.observed(curves)

    return case


def _tissue_example(data: Path | None) -> tuple[Law, Any, np.ndarray]:
    import reproduce_tissue

    curves = reproduce_tissue.tissue_curves(data)
    law = CURVE_LAWS["tissue"]()
    return law, law.prepare(curves), np.concatenate([c.loss[c.eval_index()] for c in curves])


def _chinchilla_case(law_name: str) -> Case:
    """A scaling law on the 240 Chinchilla points of Besiroglu et al. (N, D, loss)."""

    def case(data: Path | None) -> tuple[Law, Any, np.ndarray]:
        import reproduce_chinchilla

        points = reproduce_chinchilla.load_points(data)
        law = SCALING_LAWS[law_name]()
        return law, law.prepare(points), points["loss"].to_numpy()

    return case


BENCHES: dict[str, Case] = {
    "tissue (Tissue example, 2 curves)": _tissue_example,
    "tissue (MPL 400M train, 3 curves)": _mpl_train_case("tissue"),
    "tissue-true-warmup (MPL 400M train)": _mpl_train_case("tissue-true-warmup"),
    "power (MPL 400M train)": _mpl_train_case("power"),
    "mpl (MPL 25M train, 3 curves)": _mpl_train_case("mpl", "25"),
    "mpl (MPL 100M train, 3 curves)": _mpl_train_case("mpl", "100"),
    "mpl (MPL 400M train, 3 curves)": _mpl_train_case("mpl", "400"),
    "mpl-recipe (MPL 400M train, 3 curves)": _mpl_train_case("mpl-recipe", "400"),
    "lr-noise (MPL 25M train, 3 curves)": _mpl_train_case("lr-noise", "25"),
    "lr-noise (MPL 400M train, 3 curves)": _mpl_train_case("lr-noise", "400"),
    "lr-noise-clock (MPL 25M train, 3 curves)": _mpl_train_case("lr-noise-clock", "25"),
    "lr-noise-clock (MPL 100M train, 3 curves)": _mpl_train_case("lr-noise-clock", "100"),
    "lr-noise-clock (MPL 400M train, 3 curves)": _mpl_train_case("lr-noise-clock", "400"),
    "lr-noise2 (MPL 400M train, 3 curves)": _mpl_train_case("lr-noise2", "400"),
    "lr-noise-sqrt (MPL 400M train, 3 curves)": _mpl_train_case("lr-noise-sqrt", "400"),
    "convex-bound (MPL 400M train, 3 curves)": _mpl_train_case("convex-bound", "400"),
    "convex-noise-sqrt (MPL 400M train, 3 curves)": _mpl_train_case("convex-noise-sqrt", "400"),
    "convex-noise-eff (MPL 400M train, 3 curves)": _mpl_train_case("convex-noise-eff", "400"),
    "convex-noise-eff-fit (MPL 400M train, 3 curves)": _mpl_train_case("convex-noise-eff-fit", "400"),
    "chinchilla (240 Chinchilla points)": _chinchilla_case("chinchilla"),
    "kaplan (240 Chinchilla points)": _chinchilla_case("kaplan"),
    "gadre (240 Chinchilla points)": _chinchilla_case("gadre"),
    "farseer (240 Chinchilla points)": _chinchilla_case("farseer"),
    "compute (240 Chinchilla points)": _chinchilla_case("compute"),
}


def bench_chinchilla_scoring(data: Path | None, repeat: int) -> None:
    """Score Hoffmann's 4,500-start grid on the 240 Chinchilla points in one `predict` call: the
    first stage of every Chinchilla fit (was a wall-time assert in tests/test_fit_scaling.py)."""
    import reproduce_chinchilla

    law = ChinchillaLaw()
    prepared = law.prepare(reproduce_chinchilla.load_points(data))
    grid = law.initial_grid()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        law.predict(grid, prepared)
        times.append(time.perf_counter() - t0)
    print(f"{'chinchilla: score ' + str(len(grid)) + ' starts x ' + str(prepared['N'].size) + ' points':<40} "
          f"{'':>9} {min(times):>8.3f}   (goal < 1 s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None, help="substrings of bench names to run")
    parser.add_argument("--data", type=Path, default=None, help="data directory (default: $HARNESS_DATA, "
                        "else ../shared/data)")
    args = parser.parse_args()
    exit_if_missing(lambda: _run(args))


def _run(args: argparse.Namespace) -> None:
    print(f"{'bench':<40} {'prepare s':>9} {'fit s':>8} {'starts':>7} {'objective':>12} converged")
    if not args.only or any(s in "chinchilla: score" for s in args.only):
        bench_chinchilla_scoring(args.data, max(args.repeat, 3))
    for name, case in BENCHES.items():
        if args.only and not any(s in name for s in args.only):
            continue
        t0 = time.perf_counter()
        law, data, y = case(args.data)
        prep = time.perf_counter() - t0
        times = []
        for _ in range(args.repeat):
            t1 = time.perf_counter()
            fit = fit_law(law, data, y)
            times.append(time.perf_counter() - t1)
        print(f"{name:<40} {prep:>9.2f} {min(times):>8.2f} {fit.n_starts:>7} {fit.objective:>12.5e} {fit.converged}")


if __name__ == "__main__":
    main()
