"""Kind `optimizer_comparison` (harness/experiment/optimizer_comparison.py): coordinate descent in
rounds (coordinate_descent.py) on synthetic losses, the speedup math (speedup.py) on synthetic
tables with a known answer and a null comparison, bad specs, the presets' plans, and the tiny spec
trained end to end (local launcher): rounds, relaunch trains nothing, the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from conftest import run_experiment as experiment
from harness.experiment.coordinate_descent import CONVERGED, MAX_ROUNDS, WAITING, descend, extend_value
from harness.experiment.speedup import Cell, fit_law, pooled_noise, speedup

TINY = "optimizers_tiny"






# ------------------------------------------------------------------ coordinate descent (pure)


def bowl(opt_lr: float, opt_wd: float = 0.1):
    """A loss with its minimum at (opt_lr, opt_wd), quadratic in log lr; records each call."""
    calls = []

    def loss(p):
        d = dict(p)
        calls.append(p)
        return 3.0 + 0.05 * math.log(d["lr"] / opt_lr) ** 2 + 0.5 * (d.get("wd", opt_wd) - opt_wd) ** 2
    return loss, calls


def test_descent_moves_to_the_optimum_and_stops():
    loss, _ = bowl(4e-3)
    walk = descend({"lr": [1e-3, 2e-3, 4e-3, 8e-3], "wd": [0.0, 0.1]}, {"lr": 1e-3, "wd": 0.0}, loss,
                   threshold=1e-3, max_rounds=10)
    assert walk.state == CONVERGED
    assert dict(walk.best) == {"lr": 4e-3, "wd": 0.1}
    # The start sat at the LR grid's low end: the grid grew one step below it (tried, worse).
    assert walk.extended == {"lr": [5e-4]}
    # wd's best (0.1) is its top, and a grid [0, 0.1] has no geometric step beyond it: reported.
    assert walk.edges == ["wd"]
    # Round 0 is the start; each round holds only points not tried before.
    assert walk.rounds[0] == [(("lr", 1e-3), ("wd", 0.0))]
    assert len(walk.points) == len(set(walk.points))


def test_an_edge_optimum_extends_the_grid_instead_of_being_reported():
    loss, _ = bowl(3.2e-2)  # beyond the grid's largest LR (8e-3)
    walk = descend({"lr": [1e-3, 2e-3, 4e-3, 8e-3]}, {"lr": 4e-3}, loss, threshold=1e-3, max_rounds=10)
    assert walk.state == CONVERGED
    assert walk.extended["lr"] == [1.6e-2, 3.2e-2, 6.4e-2]  # one geometric step at a time
    assert dict(walk.best)["lr"] == 3.2e-2 and walk.edges == []  # interior of the extended grid


def test_descent_waits_for_unknown_losses_and_stops_at_max_rounds():
    known = {}
    loss, _ = bowl(3.2e-2)
    walk = descend({"lr": [1e-3, 2e-3]}, {"lr": 1e-3}, lambda p: known.get(p), threshold=0.0, max_rounds=2)
    assert walk.state == WAITING and walk.rounds == [[(("lr", 1e-3),)]]
    walk = descend({"lr": [1e-3, 2e-3]}, {"lr": 1e-3}, loss, threshold=0.0, max_rounds=2)
    assert walk.state == MAX_ROUNDS and walk.moves == 2 and dict(walk.best)["lr"] == 4e-3


def test_small_improvements_do_not_move_the_walk():
    loss, _ = bowl(2e-3)
    # Moving from 1e-3 to 2e-3 gains 0.05 * ln(2)^2 = 0.024 < threshold 0.03: converged at the start.
    walk = descend({"lr": [1e-3, 2e-3, 4e-3]}, {"lr": 1e-3}, loss, threshold=0.03, max_rounds=5)
    assert walk.state == CONVERGED and dict(walk.best)["lr"] == 1e-3 and walk.edges == []


def test_extension_rules():
    assert extend_value("optim.lr", [1e-3, 2e-3], 1) == 4e-3
    assert extend_value("optim.lr", [1e-3, 2e-3], -1) == 5e-4
    assert extend_value("optim.weight_decay", [0.0, 0.1], -1) is None  # 0 is a bound
    assert extend_value("optim.momentum", [0.9, 0.95], 1) == 0.975     # geometric in 1 - x, below 1
    assert extend_value("schedule", ["cosine", "wsd"], 1) is None


# ------------------------------------------------------------------ speedup (pure)

A, B, C = 50.0, 0.3, 2.0


def law(D):
    return A * np.asarray(D, dtype=float) ** -B + C


def test_fit_law_recovers_a_known_law_with_three_multiples():
    Ds = [1e5, 2e5, 4e5, 8e5]
    fit = fit_law(Ds, law(Ds))
    assert fit.identified and fit.b == pytest.approx(B, abs=0.011)
    assert fit.effective_data(float(law(3e5))) == pytest.approx(3e5, rel=0.02)
    two = fit_law(Ds[:2], law(Ds[:2]))
    assert not two.identified and two.b == pytest.approx(0.3)  # the middle of the default prior


def test_speedup_on_a_synthetic_table_with_a_known_answer():
    rng = np.random.default_rng(0)
    baseline = {D: Cell(D, law(D) + rng.normal(0, 1e-3, 3), tokens_per_s=[1000.0] * 3, flops_per_token=100.0)
                for D in (1e5, 2e5, 4e5)}
    # The variant reaches at D = 1e5 what the baseline reaches at 2e5, at half the throughput and
    # with 25% more FLOPs per token (an optimizer's own work).
    variant = Cell(1e5, [float(law(2e5))] * 3, tokens_per_s=[500.0] * 3, flops_per_token=125.0)
    sp = speedup(baseline, variant, n_boot=300)
    assert sp.speedup == pytest.approx(2.0, rel=0.03)
    assert sp.interval[0] > 1 and sp.called
    assert sp.wallclock == pytest.approx(1.0, rel=0.03)  # twice the data efficiency, half the speed
    assert sp.flops == pytest.approx(1.6, rel=0.03)
    assert sp.wallclock_interval[0] < 1 < sp.wallclock_interval[1]


def test_null_comparison_gives_an_interval_containing_one():
    """A variant that is the baseline with other seeds: no speedup may be called."""
    for trial in range(5):
        rng = np.random.default_rng(100 + trial)
        sigma = 0.02
        baseline = {D: Cell(D, law(D) + rng.normal(0, sigma, 3)) for D in (1e5, 4e5)}
        null = Cell(4e5, law(4e5) + rng.normal(0, sigma, 3))
        noise = pooled_noise([*baseline.values(), null])
        sp = speedup(baseline, null, n_boot=400, noise=noise, seed=trial)
        assert sp.interval[0] <= 1 <= sp.interval[1], (trial, sp.speedup, sp.interval)
        assert not sp.called
        assert any("not identified" in n for n in sp.notes)  # 2 multiples: b from its prior


# ------------------------------------------------------------------ specs


@pytest.mark.parametrize("override, field", [
    ("optimizer_comparison.baseline=sgd", "optimizer_comparison.baseline"),
    ("optimizer_comparison.variants.adamw.start.optim.lr=5e-3", "optimizer_comparison.variants.adamw.start.optim.lr"),
    ("optimizer_comparison.variants.adamw.optimizer=adamx", "optimizer_comparison.variants.adamw.optimizer"),
    ("optimizer_comparison.seeds=0", "optimizer_comparison.seeds"),
    ("optimizer_comparison.sizes=[q7]", "optimizer_comparison.sizes[0]"),
    ("optimizer_comparison.b_prior=[0.4,0.2]", "optimizer_comparison.b_prior"),
    ("optimizer_comparison.max_round=3", "optimizer_comparison.max_round"),
])
def test_bad_spec_exits_2_naming_the_field_and_writes_nothing(module_env, tmp_path, override, field):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", TINY, override, "--dir", str(out), "--no-data-check")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: {field}" in proc.stderr
    assert not out.exists()


def test_presets_plan(module_env, tmp_path):
    for name, n_sizes in (("optimizers_cpu", 2), ("optimizers_gpu", 4)):
        out = tmp_path / name
        proc = experiment(module_env, "plan", name, "--dir", str(out), "--no-data-check")
        assert proc.returncode == 0, proc.stderr
        runs = json.loads((out / "plan.json").read_text())["runs"]
        cells = {(r["settings"]["variant"], r["settings"]["size"], r["settings"]["tokens_per_param"]) for r in runs}
        assert {"adamw", "muon", "lion"} <= {c[0] for c in cells}
        assert len({c[1] for c in cells}) == n_sizes
        assert not (out / "runs").exists()
        # Every run states its optimizer; no ladder (AdamW-derived) optim.* line comes before it.
        for r in runs:
            overrides = r["overrides"].split()
            first_optim = next(i for i, o in enumerate(overrides) if o.startswith("optim"))
            assert overrides[first_optim] == f"optim={r['settings']['optimizer']}"
    gpu = json.loads((tmp_path / "optimizers_gpu" / "plan.json").read_text())["runs"]
    n = sorted({r["N_non_embedding"] for r in gpu})
    assert 2.5e7 <= n[0] and n[-1] <= 3.5e8 and len({r["settings"]["tokens_per_param"] for r in gpu}) == 4


# ------------------------------------------------------------------ the tiny comparison, trained


@pytest.fixture(scope="module")
def finished(module_env, tmp_path_factory):
    out = tmp_path_factory.mktemp("optimizers") / "exp"
    proc = experiment(module_env, "run", TINY, "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc


def test_run_plans_in_rounds_until_the_descent_stops(finished):
    out, proc = finished
    assert "round 2: the results so far add" in proc.stdout
    plan = json.loads((out / "plan.json").read_text())
    runs = plan["runs"]
    assert [r["index"] for r in runs] == list(range(len(runs)))
    # Round-major order: a plan grows at its end, so earlier runs keep their index.
    rounds = [r["settings"]["round"] for r in runs]
    assert rounds == sorted(rounds)
    states = {json.loads((Path(r["run_dir"]) / "status.json").read_text())["state"] for r in runs}
    assert states == {"completed"}
    # Each cell's best config was trained with both seeds.
    for variant in ("adamw", "adamw_seed"):
        for tpp in (2.0, 4.0):
            seeds = {r["settings"]["seed"] for r in runs if r["settings"]["variant"] == variant
                     and r["settings"]["tokens_per_param"] == tpp and r["settings"]["role"] in ("seed", "noise_probe")}
            assert len(seeds) >= 1
    assert len(runs) == len({r["run_id"] for r in runs})


def test_relaunch_of_a_finished_comparison_trains_nothing(finished, module_env):
    out, _ = finished
    plan_before = (out / "plan.json").read_text()
    curves = sorted((out / "runs").glob("*/curve.jsonl"))
    before = {c: (c.read_bytes(), c.stat().st_mtime_ns) for c in curves}
    launches = sorted((out / "launches").iterdir())
    proc = experiment(module_env, "run", TINY, "--dir", str(out), in_process=True)  # launches nothing
    assert proc.returncode == 0, proc.stderr
    assert "nothing to launch" in proc.stdout and "round 2" not in proc.stdout
    assert sorted((out / "launches").iterdir()) == launches
    assert sorted((out / "runs").glob("*/curve.jsonl")) == curves
    assert all((c.read_bytes(), c.stat().st_mtime_ns) == before[c] for c in curves)
    assert json.loads((out / "plan.json").read_text())["runs"] == json.loads(plan_before)["runs"]
    # `plan` on the finished directory shows what is known: every round, nothing new.
    proc = experiment(module_env, "plan", TINY, "--dir", str(out), "--no-data-check")
    assert proc.returncode == 0, proc.stderr
    ids = [(r["index"], r["run_id"]) for r in json.loads((out / "plan.json").read_text())["runs"]]
    assert ids == [(r["index"], r["run_id"]) for r in json.loads(plan_before)["runs"]]


def test_report_records_speedups_and_the_null_variant_contains_one(finished, module_env):
    out, _ = finished
    proc = experiment(module_env, "report", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "report.json").read_text())
    records = summary["records"]
    assert len(records) == 4  # 2 variants x 1 size x 2 multiples
    for r in records:
        for key in ("variant", "optimizer", "N", "multiple", "D", "best_loss", "best_hparams", "n_runs", "seeds",
                    "speedup", "speedup_ci", "wallclock_speedup", "wallclock_speedup_ci"):
            assert key in r
        assert len(r["seeds"]) == 2 and r["best_loss"] > 0 and r["descent"] == "converged"
        lo, hi = r["speedup_ci"]
        assert lo <= 1 <= hi, r  # the baseline against itself, and the baseline with another seed
        assert r["speedup_called"] is False
    assert not summary["law_identified"]
    assert any("not identified" in w for w in summary["warnings"])
    assert "optimizer FLOPs counted" in summary["matched_flops"]  # curves carry optimizer_flops
    assert set(summary["plots"]) >= {"loss_vs_D.png", "speedup_vs_size.png", "sensitivity_adamw.png"}
    assert all((out / p).is_file() for p in summary["plots"])
    assert "| adamw_seed | adamw | 32x1 |" in (out / "report.md").read_text()
