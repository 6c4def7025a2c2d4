"""`python -m harness.collect`: real tiny runs in a `{hash}` sweep -> one table -> the fitting CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, run_train

from harness.collect import collect, main as collect_main
from harness.fit.__main__ import main as fit_main


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, harness_cache) -> Path:
    """Three completed tiny runs of different sizes/lengths under sweep/{hash}, plus a copy of one
    marked as still running (no final loss), nested one level deeper."""
    import os

    root = tmp_path_factory.mktemp("collect") / "sweep"
    env = dict(os.environ, HARNESS_CACHE=str(harness_cache), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false", WANDB_MODE="offline", WANDB_SILENT="true")
    for overrides in (["model.d_model=32", "train.steps=12"], ["model.d_model=48", "train.steps=16"],
                      ["model.d_model=64", "train.steps=20"]):
        proc = run_train(env, *overrides, "train.checkpoint_every=100", "optim.lr=1e-2",
                         f"run_dir='{root}/{{hash}}'")  # quoted: Hydra's grammar reads { as a dict
        assert proc.returncode == 0, proc.stderr[-2000:]
    first = sorted(p for p in root.iterdir() if p.is_dir())[0]
    unfinished = root / "nested" / "unfinished"
    shutil.copytree(first, unfinished, ignore=shutil.ignore_patterns("checkpoints", "tokenizer"))
    (unfinished / "status.json").write_text(json.dumps({"state": "running", "step": 5}))
    return root


def test_collect_table_matches_each_run(sweep: Path, capsys) -> None:
    assert collect_main([str(sweep), "--out", str(sweep / "table")]) == 0
    out = capsys.readouterr().out
    assert "4 run(s): completed 3, running 1; 3 with a final loss" in out
    csv, parquet = pd.read_csv(sweep / "table.csv"), pd.read_parquet(sweep / "table.parquet")
    assert len(csv) == len(parquet) == 4
    assert list(csv.columns) == list(parquet.columns)
    for col in ("N", "N_total", "N_non_embedding", "N_active", "D", "B", "lr", "wd", "flops", "C", "loss", "final_loss", "final_val_loss",
                "min_val_loss", "status", "step", "curve", "run_dir", "model.d_model", "optim.lr", "train.steps"):
        assert col in csv.columns, col

    for _, row in parquet.iterrows():
        status = json.loads((Path(row["run_dir"]) / "status.json").read_text())
        assert row["status"] == status["state"]
        assert row["step"] == status["step"]
        if status["state"] != "completed":
            assert pd.isna(row["loss"]) and pd.isna(row["final_loss"])
            # counts come from the config through harness/models/flops.py when status.json lacks them
            done = parquet[(parquet["status"] == "completed") & (parquet["model.d_model"] == row["model.d_model"])]
            assert row["N"] == done["N"].iloc[0]
            # unique tokens from the curve rows when status.json lacks them
            assert row["unique_tokens"] == done["unique_tokens"].iloc[0]
            continue
        # One naming from sweep to fit (issue 13): N non-embedding, N_total all parameters.
        assert row["N_total"] == status["params"]
        assert row["N"] == row["N_non_embedding"] == status["params_non_embedding"] < row["N_total"]
        assert row["B"] == row["train.batch_size"] * row["train.seq_len"]
        assert row["lr"] == row["optim.lr"] and row["wd"] == row["optim.weight_decay"]
        assert row["N_active"] == status["params_active"]
        assert row["D"] == status["tokens"]
        split = json.loads((Path(row["run_dir"]) / "env.json").read_text())["data_manifest"]["split"]
        assert row["unique_tokens"] == status["unique_tokens"] == split["n_train"]
        assert row["epochs"] == pytest.approx(row["D"] / split["n_train"])
        assert row["flops"] == pytest.approx(status["flops"]) and row["C"] == pytest.approx(status["flops"])
        assert row["final_loss"] == pytest.approx(status["final_loss"])
        assert row["final_val_loss"] == pytest.approx(status["final_val_loss"])
        assert row["loss"] == pytest.approx(status["final_val_loss"]) and row["loss_source"] == "val_loss"
        vals = [json.loads(line).get("val_loss") for line in open(row["curve"])]
        assert row["min_val_loss"] == pytest.approx(min(v for v in vals if v is not None))
        assert row["min_val_loss"] <= row["final_val_loss"]
        cfg_steps = row["train.steps"]
        assert row["step"] == cfg_steps and row["D"] == cfg_steps * row["train.batch_size"] * row["train.seq_len"]
    assert sorted(parquet.loc[parquet["status"] == "completed", "model.d_model"]) == [32, 48, 64]


def test_collected_csv_feeds_the_scaling_cli(sweep: Path, tmp_path: Path, capsys) -> None:
    assert collect_main([str(sweep)]) == 0  # default basename: SWEEP_DIR/runs
    capsys.readouterr()
    # 3 runs for a 3-parameter law: refused (exit 3, harness/fit/fit_checks.py) unless allowed.
    argv = ["scaling", "--law", "compute", "--fit", str(sweep / "runs.csv"), "--out", str(tmp_path / "fit")]
    assert fit_main(argv) == 3 and not (tmp_path / "fit").exists()
    capsys.readouterr()
    assert fit_main(argv + ["--allow-unconverged"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 row(s) without a final 'loss' (running 1); fitting on 3" in err
    params = json.loads((tmp_path / "fit" / "params.json").read_text())
    assert params["law"] == "compute" and params["n"] == 3
    assert any(w["kind"] == "underdetermined" for w in params["warnings"])
    assert (tmp_path / "fit" / "plot_scaling.png").is_file()


def test_collect_cli_subprocess_and_empty_dir(sweep: Path, tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "harness.collect", str(sweep), "--out", str(tmp_path / "t")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "t.parquet").is_file() and (tmp_path / "t.csv").is_file()
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([sys.executable, "-m", "harness.collect", str(tmp_path / "empty")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no run directories" in proc.stderr


def test_collect_fills_counts_from_config_when_status_has_none(sweep: Path) -> None:
    """A run that failed before writing counts still gets N from harness/models/flops.py."""
    frame = collect(sweep)
    running = frame[frame["status"] == "running"].iloc[0]
    assert running["N"] > 0 and running["flops_per_token"] > 0
    assert pd.isna(running["loss"]) and running["D"] > 0  # D from the curve's last row
