"""Model ladder / isoFLOP planner: sizes -> valid configs, N from harness.models.flops, the recipes'
rules, budgets met, override lines that compose to exactly the planned config, and a dry run that
plots and trains nothing."""

from __future__ import annotations

import dataclasses
import math
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from conftest import ROOT

from harness.config import RunConfig, register_configs, to_run_config
from harness.fit.hyperparams import PowerLinesResult
from harness.fit.powerlaw import PowerLaw
from harness.ladder import (ALWAYS_STATED, register_rule, LR_RULES, RECIPES, LadderConfig, LadderError, ParamTokensWarmup, Power,
                            PowerLawLR, StepLawBatch, StepLawLR, get_recipe, make_rule, plan_isoflop, plan_ladder,
                            size_spec)
from harness.ladder.cli import main as ladder_main
from harness.ladder.overrides import format_value
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


def _compose(overrides: list[str]) -> RunConfig:
    from hydra import compose

    return to_run_config(compose(config_name="config", overrides=overrides))


def test_overrides_compose_to_exactly_the_run_config(tmp_path: Path) -> None:
    """`python -m harness.train <overrides>` trains exactly `run_config()`: every field, with presets
    appended (--extra), another schedule, gpt2, and a run_root that needs quoting."""
    from hydra import initialize_config_dir

    register_configs()
    odd_root = str(tmp_path / "my runs, o'neil")
    plans = [
        (plan_ladder(["d64", "d256"], LadderConfig(vocab_size=512, seq_len=128, run_root="/tmp/never")), []),
        (plan_ladder(["d128"], LadderConfig(arch="gpt2", recipe=replace(RECIPES["default"], schedule="wsd"),
                                            run_root=odd_root)), []),
        (plan_ladder(["d128"], LadderConfig(seq_len=256)), ["train=gpu", "data=tinystories"]),
    ]
    # Computed before Hydra is initialized (the planner composes conf/config.yaml itself) ...
    lines = [(run, extra, run.overrides(extra)) for runs, extra in plans for run in runs]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for run, extra, line in lines:
            assert run.overrides(extra) == line  # ... and inside an initialized Hydra: the same line
            rc = run.run_config(extra)
            assert _compose(line) == rc
            assert flops.num_params(rc.model) == run.N
            assert flops.flops_per_token(rc.model, rc.train.seq_len) == run.flops_per_token
            assert (rc.train.steps, rc.train.batch_size, rc.train.seq_len, rc.optim.lr) == (
                run.steps, run.batch_size, run.seq_len, run.lr)
            assert rc.schedule == run.schedule_config() and rc.run_dir == f"{run.run_dir}"
            keys = [item.split("=", 1)[0] for item in line]
            assert set(ALWAYS_STATED) <= set(keys) and f"schedule={run.schedule}" in line
            assert "train.eval_every" not in keys  # equal to the base: left to it
            assert line[len(line) - len(extra):] == extra
    gpu_run, gpu_extra, gpu_line = lines[-1]
    # train=gpu would set seq_len 1024: the plan's 256 (also conf/config.yaml's) is stated anyway
    assert "train.seq_len=256" in gpu_line and gpu_run.run_config(gpu_extra).train.device == "cuda"
    wsd_line = lines[2][2]
    # conf/schedule/wsd.yaml cools down with sqrt; the plan (and its LR plot) uses the library default
    assert "schedule.cooldown=linear" in wsd_line


def test_override_values_parse_back_exactly() -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    values = [None, True, False, 0, -3, 0.1, 1e-05, 1e16, 0.005870736349349275, 1 / 3, "cosine", "runs/a-b/c.d",
              "1e5", "true", "Null", "nan", "with space, comma", "o'neil", "back\\", "a\\'b", "", [0.9, 0.95],
              ["vector"]]
    for value in values:
        parsed = parser.parse_override(f"k={format_value(value)}").value()
        assert parsed == value and type(parsed) is type(value), (value, format_value(value), parsed)


def test_default_recipe_plan_is_unchanged() -> None:
    """Today's default plan, number for number (seq_len 256, vocab 512, 20 tokens/param)."""
    expected = {"d64": (8, 1303, 65, 0.005870736349349275, 166208, 133440),
                "d256": (64, 4023, 201, 0.002015957365546595, 3426560, 3295488),
                "d512": (256, 7773, 389, 0.0010196429543913638, 25731584, 25469440)}
    runs = plan_ladder(list(expected), LadderConfig())
    for run in runs:
        got = (run.batch_size, run.steps, run.warmup_steps, run.lr, run.N, run.N_non_embedding)
        assert got == expected[run.size.name], run.name
        assert (run.weight_decay, run.schedule, run.min_lr_ratio) == (0.1, "cosine", 0.1)


def test_default_power_lr_rule() -> None:
    cfg = LadderConfig(vocab_size=512)
    for run in plan_ladder(["d64", "d256", "d512"], cfg):
        assert run.lr == pytest.approx(3e-3 * (run.N_non_embedding / 1e6) ** (-1 / 3))
    recipe = replace(RECIPES["default"], name="mine", lr=PowerLawLR(lr_ref=1e-2, n_ref=1e5, exponent=0.5),
                     param_count="total")
    run = plan_ladder(["d128"], LadderConfig(vocab_size=512, recipe=recipe))[0]
    assert run.lr == pytest.approx(1e-2 * (run.N / 1e5) ** -0.5)
    assert abs(run.D - 20 * run.N) <= run.tokens_per_step / 2


def test_step_law_input_sets_lr_and_batch() -> None:
    fitted = {"lr": {"coefficient": 0.5, "exponent_N": -0.5, "exponent_D": 0.1},
              "batch": {"coefficient": 2.0, "exponent_D": 0.5}, "batch_unit": "tokens"}
    cfg = LadderConfig(recipe=RECIPES["default"].with_step_law(fitted), vocab_size=512, seq_len=128)
    assert isinstance(cfg.recipe.lr, StepLawLR) and cfg.recipe.batch.law == Power(2.0, 0.0, 0.5)
    for run in plan_ladder(["d128", "d256"], cfg):
        n = run.N_non_embedding
        assert run.lr == pytest.approx(0.5 * n**-0.5 * run.D**0.1)
        target_tokens = 2.0 * (20 * n) ** 0.5
        assert run.batch_size == max(1, 2 ** round(math.log2(target_tokens / 128)))
    # the published Step Law by name
    run = plan_ladder(["d256"], LadderConfig(recipe=get_recipe("step-law"), vocab_size=512))[0]
    assert run.lr == pytest.approx(1.79 * run.N_non_embedding**-0.713 * run.D**0.307)
    with pytest.raises(LadderError, match="'batch'"):
        RECIPES["default"].with_step_law({"lr": fitted["lr"], "batch_unit": "tokens"})
    # A batch law of unknown or sequence units would be read as tokens: refused (issue 13).
    for unit in ({}, {"batch_unit": "sequences"}):
        with pytest.raises(LadderError, match="batch_unit"):
            RECIPES["default"].with_step_law({"lr": fitted["lr"], "batch": fitted["batch"], **unit})


def test_power_lines_sets_weight_decay() -> None:
    tau = PowerLaw(inputs=("D/N",), coefficient=0.3, exponents=(-0.5,))
    result = PowerLinesResult(tau_opt=tau, batch_opt=PowerLaw(inputs=("D",), coefficient=1.0, exponents=(0.5,)),
                              cells=None)
    recipe = RECIPES["default"].with_power_lines(result)
    run = plan_ladder(["d128"], LadderConfig(vocab_size=512, recipe=recipe))[0]
    n, d, b = run.N_non_embedding, run.D, run.tokens_per_step
    assert run.weight_decay == pytest.approx(b / (run.lr * d * 0.3 * (d / n) ** -0.5))
    assert run.run_config().optim.weight_decay == run.weight_decay


def test_recipes_are_named_frozen_rules_chosen_from_registries() -> None:
    default = get_recipe("default")
    assert default.name == "default" and isinstance(default.lr, PowerLawLR)
    assert isinstance(default.batch, StepLawBatch) and isinstance(default.warmup, ParamTokensWarmup)
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.tokens_per_param = 10  # type: ignore[misc]
    assert set(LR_RULES) == {"power", "step-law"}
    assert make_rule("lr", "step-law") == StepLawLR() and make_rule("lr", "power", exponent=0.5).exponent == 0.5
    assert "default" in default.describe() and "power(lr_ref=0.003" in default.describe()
    for call, match in [(lambda: make_rule("lr", "cubic"), "choose one of power, step-law"),
                        (lambda: get_recipe("huge"), "choose one of default, step-law"),
                        (lambda: PowerLawLR(lr_ref=0), "lr.lr_ref"),
                        (lambda: StepLawBatch(min_batch=8, max_batch=4), "batch.min_batch"),
                        (lambda: ParamTokensWarmup(max_fraction=1.5), "warmup.max_fraction"),
                        (lambda: replace(default, param_count="half"), "param_count"),
                        (lambda: replace(default, schedule="zigzag"), "schedule.name"),
                        (lambda: replace(default, lr=0.01), "lr: got float"),
                        (lambda: LadderConfig(arch="moe"), "arch"),
                        (lambda: LadderConfig(seq_len=0), "seq_len")]:
        with pytest.raises(LadderError, match=match):
            call()


def test_a_new_rule_is_one_registered_class() -> None:
    @register_rule(LR_RULES)
    @dataclasses.dataclass(frozen=True)
    class FixedLR:
        name: ClassVar[str] = "fixed"
        value: float = 1e-3

        def peak_lr(self, n: float, tokens: float) -> float:
            return self.value

    try:
        recipe = replace(RECIPES["default"], name="fixed-lr", lr=make_rule("lr", "fixed", value=2e-3))
        runs = plan_ladder(["d64", "d256"], LadderConfig(recipe=recipe))
        assert [r.lr for r in runs] == [2e-3, 2e-3]
        with pytest.raises(ValueError, match="already registered"):
            register_rule(LR_RULES)(FixedLR)
    finally:
        del LR_RULES["fixed"]


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


def test_cli_recipes_and_rule_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pandas as pd

    def plan_csv(*args: str) -> pd.DataFrame:
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        assert ladder_main(["dry-run", "--sizes", "d64", "d256", "--out", str(out), *args]) == 0
        return pd.read_csv(out / "plan.csv")

    default = plan_csv()
    assert "recipe default: D = 20 x N" in capsys.readouterr().out
    by_recipe = plan_csv("--recipe", "step-law")
    assert by_recipe.equals(plan_csv("--lr-rule", "step-law")) and not by_recipe["lr"].equals(default["lr"])
    assert "recipe step-law:" in capsys.readouterr().out  # the flag gave the step-law recipe's rules
    # flags change one rule of the chosen recipe
    halved = plan_csv("--lr-ref", "1.5e-3")
    assert "recipe default (modified)" in capsys.readouterr().out
    assert np.allclose(halved["lr"], default["lr"] / 2, rtol=1e-5)
    capped = plan_csv("--max-batch", "16", "--tokens-per-param", "40")
    assert capped["batch_size"].max() == 16 and (capped["D"] > 1.9 * default["D"]).all()
    capsys.readouterr()
    for bad, message in [(["--lr-rule", "step-law", "--lr-ref", "1e-3"], "only for the power LR rule"),
                         (["--extra", "nosuchgroup=x"], "--extra"),
                         (["--schedule", "zigzag"], "schedule.name"),
                         (["--arch", "moe"], "arch")]:
        out = tmp_path / "bad"
        assert ladder_main(["dry-run", "--sizes", "d64", "--out", str(out), *bad]) == 2, bad
        assert message in capsys.readouterr().err and not out.exists()
