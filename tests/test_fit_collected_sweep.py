"""Issue 13: a collected sweep feeds every hyperparameter fit with no renaming.

One real tiny run gives a genuine run directory (config.yaml, status.json, curve.jsonl). It is
cloned into an lr x batch x size x tokens grid whose configs are edited and whose final losses
and curves follow a known landscape (training 225 runs would take an hour on CPU):

    loss = 3 + 0.01 ln(lr / lr_opt)^2 + 0.005 ln(B / B_opt)^2,
    lr_opt = 0.5 N^-0.5 D^0.1,  B_opt = c D^0.5 tokens (c puts B_opt on the grid's middle values),

with N the non-embedding parameter count harness/models/flops.py gives each config. Then
`python -m harness.collect` writes runs.csv and `python -m harness.fit steplaw | powerlines |
critbatch | isoflop` read it as it is (critbatch from the runs' curve files), and the Step-Law
JSON sets the ladder's batch in sequences from B in tokens.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import run_train

from harness.collect import main as collect_main
from harness.fit.__main__ import main as fit_main
from harness.tracking.curve import read_curve

SIZES = (32, 48, 64)                     # d_model
D_MULTIPLES = (1, 4, 16)                 # D = multiple x D1
FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)     # lr and B around their optimum
B_OPT_SEQS_AT_D1 = 8                     # B_opt(D1) in sequences: 8, 16, 32 at the three D
B_CRIT = 6e4                             # tokens, for the curves' steps-to-target


def _non_embedding(model_cfg: dict) -> int:
    from omegaconf import OmegaConf

    from harness.config import ModelConfig
    from harness.models import flops

    model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), model_cfg))
    return flops.num_params(model, include_embedding=False)


def _curve(steps: int, batch_tokens: int) -> list[dict]:
    """loss(s) = 3 + (s / S(B))^-1 with S(B) = 40 (1 + B_CRIT / B): every batch size reaches a
    loss after S_min (1 + B_crit/B) steps (McCandlish), so critbatch recovers B_CRIT. (The curve
    ignores the final-loss landscape: its lr and B penalties would shift the targets' steps.)
    Logged at 400 log-spaced steps, as a long run thins its curve."""
    scale = 40.0 * (1.0 + B_CRIT / batch_tokens)
    logged = np.unique(np.geomspace(1, steps, 400).round().astype(int))
    return [{"step": int(s), "tokens": int(s) * batch_tokens, "loss": 3.0 + (s / scale) ** -1.0} for s in logged]


@pytest.fixture(scope="module")
def collected(tmp_path_factory, harness_cache) -> Path:
    env = dict(os.environ, HARNESS_CACHE=str(harness_cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", WANDB_MODE="offline", WANDB_SILENT="true")
    root = tmp_path_factory.mktemp("collected")
    template = root / "template"
    proc = run_train(env, "train.steps=4", "train.checkpoint_every=100", f"run_dir='{template}'")
    assert proc.returncode == 0, proc.stderr[-2000:]
    base_cfg = yaml.safe_load((template / "config.yaml").read_text())
    base_status = json.loads((template / "status.json").read_text())
    seq_len = base_cfg["train"]["seq_len"]
    d1 = 2**20 * seq_len  # every batch below divides it: whole steps
    b_coef = B_OPT_SEQS_AT_D1 * seq_len / d1**0.5
    sweep = root / "sweep"
    for d_model in SIZES:
        cfg = json.loads(json.dumps(base_cfg))
        cfg["model"]["d_model"] = d_model
        n = _non_embedding(cfg["model"])
        for mult in D_MULTIPLES:
            d = mult * d1
            lr_opt, b_opt = 0.5 * n**-0.5 * d**0.1, b_coef * d**0.5
            for fl in FACTORS:
                for fb in FACTORS:
                    batch_seqs = int(round(b_opt * fb / seq_len))
                    steps = d // (batch_seqs * seq_len)
                    loss = 3.0 + 0.01 * np.log(fl) ** 2 + 0.005 * np.log(fb) ** 2
                    run = sweep / f"d{d_model}_m{mult}_lr{fl}_b{fb}"
                    shutil.copytree(template, run, ignore=shutil.ignore_patterns("checkpoints", "tokenizer", "*.png"))
                    cfg["optim"]["lr"], cfg["train"]["batch_size"], cfg["train"]["steps"] = lr_opt * fl, batch_seqs, steps
                    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
                    status = {k: v for k, v in base_status.items()
                              if not k.startswith("params") and "flops" not in k}  # counts from the config
                    status.update(state="completed", step=steps, tokens=d, final_loss=loss, final_val_loss=loss)
                    (run / "status.json").write_text(json.dumps(status))
                    rows = _curve(steps, batch_seqs * seq_len)
                    (run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert collect_main([str(sweep)]) == 0
    return sweep / "runs.csv"


def test_collected_columns(collected: Path) -> None:
    runs = pd.read_csv(collected)
    assert len(runs) == len(SIZES) * len(D_MULTIPLES) * len(FACTORS) ** 2
    assert (runs["B"] == runs["train.batch_size"] * runs["train.seq_len"]).all()
    assert (runs["N"] < runs["N_total"]).all() and (runs["lr"] == runs["optim.lr"]).all()
    np.testing.assert_allclose(runs["C"], runs["D"] * runs["flops_per_token"], rtol=1e-9)


def test_steplaw_reads_the_collected_table_and_feeds_the_ladder(collected: Path, tmp_path: Path) -> None:
    out = tmp_path / "steplaw.json"
    assert fit_main(["steplaw", "--fit", str(collected), "--n-boot", "50", "--out", str(out)]) == 0
    law = json.loads(out.read_text())
    assert law["warnings"] == [] and law["n_cells"] == 9 and law["batch_unit"] == "tokens"
    assert law["lr"]["exponent_N"] == pytest.approx(-0.5, abs=0.02)
    assert law["lr"]["exponent_D"] == pytest.approx(0.1, abs=0.02)
    assert law["batch"]["exponent_D"] == pytest.approx(0.5, abs=0.02)

    from harness.ladder import RECIPES
    from harness.ladder.plan import LadderConfig, plan_ladder

    runs = pd.read_csv(collected)
    seq_len = int(runs["train.seq_len"].iloc[0])
    recipe = RECIPES["default"].with_step_law(law)
    (run,) = plan_ladder(["d256"], LadderConfig(recipe=recipe, vocab_size=512, seq_len=seq_len))
    want_tokens = law["batch"]["coefficient"] * run.D ** law["batch"]["exponent_D"]
    # B in tokens becomes the nearest power-of-two number of sequences (read as sequences, it would
    # be seq_len times larger and clamp at the 1024-sequence maximum).
    assert 1 < want_tokens / seq_len < 1024  # inside the rule's [1, 1024] sequences: no clamping
    assert abs(np.log2(run.batch_size * seq_len / want_tokens)) <= 0.5 + 1e-9


def test_powerlines_reads_the_collected_table(collected: Path, tmp_path: Path) -> None:
    out = tmp_path / "powerlines.json"
    assert fit_main(["powerlines", str(collected), "--n-boot", "20", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    # This grid's lr_opt ignores B at one weight decay, so tau_opt = B/(lr wd D) grows as B: the one warning
    assert result["batch_unit"] == "tokens" and result["tau_batch_slope"] == pytest.approx(1.0, abs=0.05)
    assert len(result["warnings"]) == 1 and "tau_opt moves with the batch" in result["warnings"][0]
    assert result["batch_opt"]["exponent_D"] == pytest.approx(0.5, abs=0.05)


def test_critbatch_reads_the_collected_curves(collected: Path, tmp_path: Path) -> None:
    runs = pd.read_csv(collected)
    cell = runs[(runs["model.d_model"] == SIZES[0]) & (runs["D"] == runs["D"].min())]
    best_lr = cell.loc[cell["loss"].idxmin(), "lr"]
    rows = [{"run": r["run_dir"], "B": r["B"], **row}  # text run ids, as a sweep has them
            for _, r in cell[cell["lr"] == best_lr].iterrows() for row in read_curve(r["curve"])]
    curves = tmp_path / "curves.csv"
    pd.DataFrame(rows).to_csv(curves, index=False)
    out = tmp_path / "critbatch.json"
    assert fit_main(["critbatch", str(curves), "--targets", "3.6", "3.4", "--out", str(out)]) == 0
    per_target = json.loads(out.read_text())["per_target"]
    assert [t["B_crit"] for t in per_target] == pytest.approx([B_CRIT, B_CRIT], rel=0.02)


def test_isoflop_reads_the_collected_table(collected: Path, tmp_path: Path) -> None:
    """One budget per D multiple is not an IsoFLOP sweep: the analysis must say so, naming the file."""
    runs = pd.read_csv(collected)
    best = runs.loc[runs.groupby(["N", "D"])["loss"].idxmin()]
    table = tmp_path / "best.csv"
    best.to_csv(table, index=False)
    assert fit_main(["isoflop", str(table)]) == 2
