"""Model ladder / isoFLOP planner: sizes -> valid configs, N from harness.models.flops, the LR rules,
budgets met, and a dry run that plots and trains nothing."""

from __future__ import annotations

import math
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT

from harness.config import register_configs, to_run_config
from harness.fit.laws.hyperparams import PowerLinesResult
from harness.fit.powerlaw import PowerLaw
from harness.ladder import (LadderConfig, LadderError, Power, plan_isoflop, plan_ladder, size_spec)
from harness.models import flops


def test_size_specs() -> None:
    tiny = size_spec("tiny")
    assert tiny.name == "tiny" and (tiny.d_model, tiny.n_layers, tiny.n_heads) == (64, 2, 2)
    s = size_spec("d64")
    assert (s.d_model, s.n_layers, s.n_heads) == (64, 2, 2)  # head_dim 32 below 256
    s = size_spec("d512")
    assert (s.d_model, s.n_layers, s.n_heads) == (512, 8, 8)  # head_dim 64, depth = width / 64
    s = size_spec("256x6")
    assert (s.d_model, s.n_layers, s.n_heads) == (256, 6, 4)
    for bad in ("d100", "big", "d0", "300x2"):
        with pytest.raises(LadderError):
            size_spec(bad)


def test_ladder_configs_are_valid_and_match_the_plan() -> None:
    cfg = LadderConfig(vocab_size=300, seq_len=64)
    runs = plan_ladder(["d64", "d128", "d256"], cfg)
    for run in runs:
        rc = run.run_config()  # validates
        assert flops.num_params(rc.model) == run.N
        assert flops.num_params(rc.model, include_embedding=False) == run.N_non_embedding
        assert rc.train.steps * rc.train.batch_size * rc.train.seq_len == run.D
        # D = 20 N (non-embedding) up to rounding the steps
        assert abs(run.D - 20 * run.N_non_embedding) <= run.tokens_per_step / 2
        assert run.flops == pytest.approx(run.D * flops.flops_per_token(rc.model, rc.train.seq_len))
        assert math.log2(run.batch_size).is_integer()
        assert 0 <= rc.schedule.warmup_steps <= 0.25 * rc.train.steps
    assert [r.N for r in runs] == sorted(r.N for r in runs)


def test_overrides_compose_to_the_planned_model() -> None:
    """The Hydra override line, applied to conf/config.yaml (llama_1m sets d_ff), trains the planned N."""
    from hydra import compose, initialize_config_dir

    register_configs()
    runs = plan_ladder(["d64", "d256"], LadderConfig(vocab_size=512, seq_len=128, run_root="/tmp/never"))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for run in runs:
            rc = to_run_config(compose(config_name="config", overrides=run.overrides()))
            assert flops.num_params(rc.model) == run.N
            assert flops.flops_per_token(rc.model, rc.train.seq_len) == run.flops_per_token
            assert (rc.train.steps, rc.train.batch_size, rc.optim.lr) == (run.steps, run.batch_size,
                                                                           pytest.approx(run.lr, rel=1e-5))
            assert rc.schedule.warmup_steps == run.warmup_steps and rc.run_dir == f"/tmp/never/{run.name}"


def test_default_power_lr_rule() -> None:
    cfg = LadderConfig(vocab_size=512)
    for run in plan_ladder(["d64", "d256", "d512"], cfg):
        assert run.lr == pytest.approx(3e-3 * (run.N_non_embedding / 1e6) ** (-1 / 3))
    cfg = LadderConfig(vocab_size=512, lr_ref=1e-2, n_ref=1e5, lr_exponent=0.5, param_count="total")
    run = plan_ladder(["d128"], cfg)[0]
    assert run.lr == pytest.approx(1e-2 * (run.N / 1e5) ** -0.5)
    assert abs(run.D - 20 * run.N) <= run.tokens_per_step / 2


def test_step_law_input_sets_lr_and_batch() -> None:
    fitted = {"lr": {"coefficient": 0.5, "exponent_N": -0.5, "exponent_D": 0.1},
              "batch": {"coefficient": 2.0, "exponent_D": 0.5}}
    cfg = LadderConfig.from_step_law(fitted, vocab_size=512, seq_len=128)
    for run in plan_ladder(["d128", "d256"], cfg):
        n = run.N_non_embedding
        assert run.lr == pytest.approx(0.5 * n**-0.5 * run.D**0.1)
        target_tokens = 2.0 * (20 * n) ** 0.5
        assert run.batch_size == max(1, 2 ** round(math.log2(target_tokens / 128)))
    # the published Step Law by name
    run = plan_ladder(["d256"], LadderConfig(lr_rule="step-law", vocab_size=512))[0]
    assert run.lr == pytest.approx(1.79 * run.N_non_embedding**-0.713 * run.D**0.307)


def test_power_lines_sets_weight_decay() -> None:
    tau = PowerLaw(inputs=("D/N",), coefficient=0.3, exponents=(-0.5,))
    result = PowerLinesResult(tau_opt=tau, batch_opt=PowerLaw(inputs=("D",), coefficient=1.0, exponents=(0.5,)),
                              cells=None)
    run = plan_ladder(["d128"], LadderConfig(vocab_size=512, power_lines=result))[0]
    n, d, b = run.N_non_embedding, run.D, run.tokens_per_step
    assert run.weight_decay == pytest.approx(b / (run.lr * d * 0.3 * (d / n) ** -0.5))
    assert run.run_config().optim.weight_decay == pytest.approx(run.weight_decay)


def test_isoflop_plan_meets_budgets_and_skips_short_runs() -> None:
    cfg = LadderConfig(vocab_size=512, seq_len=128, min_steps=200)
    budgets = [1e14, 3e14, 1e15]
    runs, skipped = plan_isoflop(budgets, ["d64", "d128", "d256", "d512", "d1024"], cfg)
    assert runs
    for run in runs:
        assert run.budget in budgets
        assert run.flops == pytest.approx(run.budget, rel=0.03)
        assert run.steps >= 200
    # d1024 at 1e14 FLOPs would train for fewer steps: skipped, and said so
    assert any("d1024_C1e14" in s for s in skipped)
    assert not any(r.name.endswith("d1024_C1e14") for r in runs)
    assert any(r.name.endswith("d1024_C3e14") for r in runs)
    per_budget = {b: sorted(r.N for r in runs if r.budget == b) for b in budgets}
    assert all(len(v) >= 2 for v in per_budget.values())
    # within a budget, bigger models see fewer tokens
    for b in budgets:
        ds = [r.D for r in sorted((r for r in runs if r.budget == b), key=lambda r: r.N)]
        assert ds == sorted(ds, reverse=True)
    with pytest.raises(LadderError):
        plan_isoflop([-1.0], ["d64"], cfg)


def _run_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name in ("status.json", "config.yaml", "curve.jsonl")]


def test_dry_run_cli_prints_plots_and_trains_nothing(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "harness.ladder", "dry-run", "--sizes", "d64", "d128", "--budgets", "1e14", "3e14",
           "--seq-len", "128", "--device-tflops", "989", "--mfu", "0.4", "--out", str(tmp_path / "plan"),
           "--run-root", str(tmp_path / "runs"), "--emit-overrides", "--extra", "data=embedded"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "isoFLOP plan" in out and "ladder_d64_C1e14" in out and "est_time" in out and "N_non_embedding" in out
    lines = [line for line in out.splitlines() if line.startswith("model.arch=")]
    assert len(lines) == 4 and all(line.endswith("data=embedded") for line in lines)
    assert all(shlex.split(line)[0] == "model.arch=llama" for line in lines)
    png = tmp_path / "plan" / "lr_schedules.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "plan" / "overrides.txt").read_text().splitlines() == lines
    import pandas as pd

    plan = pd.read_csv(tmp_path / "plan" / "plan.csv")
    assert np.allclose(plan["flops"] / plan["budget"], 1.0, atol=0.03)
    assert not (tmp_path / "runs").exists() and not _run_files(tmp_path)

    # plain ladder with a CPU throughput; bad size -> exit 2
    proc = subprocess.run([sys.executable, "-m", "harness.ladder", "dry-run", "--sizes", "tiny", "xs",
                           "--cpu-tokens-per-s", "20000", "--out", str(tmp_path / "plan2")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0 and "D = 20 x N" in proc.stdout and "estimated total" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "harness.ladder", "dry-run", "--sizes", "d100",
                           "--out", str(tmp_path / "plan3")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "multiple of 32" in proc.stderr and not (tmp_path / "plan3").exists()


def test_power_is_a_power() -> None:
    assert Power(2.0, 0.5, -1.0)(4.0, 2.0) == pytest.approx(2.0)
