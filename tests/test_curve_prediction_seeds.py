"""`curve_prediction.curve_seeds`: every curve of a study trained with several seeds, the report fitting
and scoring their means (harness/experiment/curve_prediction.py). The plan repeats round 0 per seed
(branches off the same seed's constant run); `seed_mean` refuses curves that are not seeds of one run;
a tiny study run end to end reports the spread that the runs' own curves give."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_experiment as experiment

SPEC = "curve_prediction_tiny"
# One horizon and one peak LR keep the end-to-end study at 8 runs (4 schedules x 2 seeds).
SMALL = ("curve_prediction.horizons=[24]", "curve_prediction.peak_lrs=[1e-2]", "curve_prediction.optimize.enabled=false",
         "curve_prediction.curve_seeds=2")


def test_plan_repeats_round_zero_per_seed_with_branches_off_their_own_seed(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", SPEC, "curve_prediction.curve_seeds=3", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert len(runs) == 3 * 3 * 7  # the single-seed plan (3 peak LRs x 7 runs) per seed
    seeds = {r["settings"]["seed_index"]: set() for r in runs}
    for r in runs:
        seeds[r["settings"]["seed_index"]].add(r["settings"]["seed"])
    assert {k: len(v) for k, v in seeds.items()} == {0: 1, 1: 1, 2: 1}
    assert sorted(s for v in seeds.values() for s in v) == [0, 1000, 2000]
    by_id = {r["run_id"]: r for r in runs}
    branches = [r for r in runs if r["settings"]["role"] == "branch"]
    assert len(branches) == 3 * 12
    for b in branches:
        assert by_id[b["parent"]]["settings"]["seed"] == b["settings"]["seed"]
    keys = [(r["settings"]["schedule"], r["settings"]["horizon"], r["settings"]["peak_lr"], r["settings"]["seed"])
            for r in runs]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_bad_curve_seeds_exit_2_naming_the_field(module_env, tmp_path, value):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", SPEC, f"curve_prediction.curve_seeds={value}", "--dir", str(out))
    assert proc.returncode == 2 and "curve_prediction.curve_seeds" in proc.stderr, proc.stdout + proc.stderr
    assert not out.exists()


def test_seed_mean_averages_and_refuses_other_schedules():
    from harness.experiment.curve_prediction_curves import seed_mean
    from harness.fit.io import Curve

    step = np.arange(1, 11)
    lr = np.full(10, 1e-3)
    a = Curve("a", "a", step, lr, np.linspace(4.0, 3.0, 10))
    b = Curve("b", "b", step, lr, np.linspace(4.0, 3.0, 10) * 1.02)
    mean, spread = seed_mean([a, b], "m")
    np.testing.assert_allclose(mean.loss, np.linspace(4.0, 3.0, 10) * 1.01)
    assert mean.name == "m" and spread == pytest.approx(0.01 / 1.01)
    other = Curve("c", "c", step, lr * 2, a.loss)
    with pytest.raises(ValueError, match="other steps or LRs"):
        seed_mean([a, other], "m")


def _val(path: Path) -> tuple[np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    pts = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    return np.array([p[0] for p in pts]), np.array([p[1] for p in pts], dtype=float)


def test_tiny_study_fits_seed_means_and_reports_their_spread(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "run", SPEC, *SMALL, "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = experiment(module_env, "report", str(out))
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    summary = json.loads((out / "report.json").read_text())
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert len(runs) == 8 and not [w for w in summary["warnings"] if "seed" in w]  # every curve has both seeds
    # The spread from the runs' own curves: per schedule, each seed's mean |seed - mean| / mean after warmup.
    by_schedule: dict[str, list] = {}
    for r in runs:
        by_schedule.setdefault(r["settings"]["schedule"], []).append(_val(Path(r["run_dir"]) / "curve.jsonl"))
    spreads = []
    for (s0, v0), (s1, v1) in by_schedule.values():
        assert np.array_equal(s0, s1) and not np.allclose(v0, v1)  # other seeds, other curves
        keep = s0 > 2  # after the 2 warmup steps
        mean = (v0[keep] + v1[keep]) / 2
        spreads.append(np.mean([np.mean(np.abs(v[keep] - mean) / mean) for v in (v0, v1)]))
    seeds = summary["curve_seeds"]
    assert seeds["n"] == 2 and seeds["spread"]["all"] == pytest.approx(np.mean(spreads), rel=1e-9)
    assert "mean of its 2 seeds" in (out / "report.md").read_text()
    # The fit is on the seed means: the default law's fit curves are the three fit schedules, once each.
    default = summary["laws"]["default"]
    assert default["error"] is None and sorted(c["group"] for c in default["curves"]) == ["fit"] * 3 + ["schedules"]
