"""The fitting CLI on the curve of a real harness run (train -> curve.jsonl -> law)."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest

from conftest import ROOT, run_train


def test_fit_cli_on_a_harness_run(train_env, tmp_path, capsys):
    run_dir = tmp_path / "run"
    proc = run_train(train_env, f"run_dir={run_dir}", "train.steps=120", "train.eval_every=10", "schedule=wsd",
                     "schedule.warmup_steps=10")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "fit"
    cmd = [sys.executable, "-m", "harness.fit", "curve", "--law", "tissue", "--fit", str(run_dir / "curve.jsonl"),
           "--predict", str(run_dir / "curve.jsonl"), "--target", "val_loss", "--min-step", "11", "--out", str(out)]
    fit = subprocess.run(cmd, cwd=ROOT, env=train_env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr
    assert (out / "params.json").is_file() and (out / "plot_curve.png").is_file()

    # Fit quality on the run's val loss after warmup (measured: R² 0.967, mean relative error 1.2 %,
    # worst 3.1 % on 20 eval steps). The bounds leave room for changes in training, not for a
    # broken fit: a law that ignored the schedule or a mis-indexed prediction lands far outside.
    metrics = json.loads((out / "metrics.json").read_text())
    quality = metrics["fit"]
    assert quality["n"] >= 15
    assert quality["r2"] >= 0.9, quality
    assert quality["prede"] <= 0.03 and quality["worste"] <= 0.08, quality
    # The prediction file agrees with the curve row by row and with the reported metrics.
    pred = pd.read_csv(out / "pred_run.csv")
    rows = {r["step"]: float(r["val_loss"]) for r in map(json.loads, (run_dir / "curve.jsonl").read_text().splitlines())
            if "val_loss" in r}
    assert pred["step"].tolist() == [s for s in sorted(rows) if s >= 11]
    assert pred["val_loss"].tolist() == pytest.approx([rows[s] for s in pred["step"]])
    rel = (pred["val_loss_pred"] / pred["val_loss"] - 1).abs()
    assert rel.max() <= 0.08 and rel.mean() == pytest.approx(metrics["predict"]["run"]["prede"], rel=1e-6)

    # Leaving out every observed row is refused, and nothing is written. In process, through the
    # `main(argv)` that `python -m harness.fit` exits with (the fit above was its subprocess).
    from harness.fit.__main__ import main

    bad_out = tmp_path / "bad"
    capsys.readouterr()
    assert main(cmd[3:-4] + ["--min-step", "100000", "--out", str(bad_out)]) == 2
    assert "--min-step" in capsys.readouterr().err
    assert not bad_out.exists()
