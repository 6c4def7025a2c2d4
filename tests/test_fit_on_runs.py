"""The fitting CLI on the curve of a real harness run (train -> curve.jsonl -> law)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, run_train


def test_fit_cli_on_a_harness_run(train_env, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(train_env, f"run_dir={run_dir}", "train.steps=120", "train.eval_every=10", "schedule=wsd",
                     "schedule.warmup_steps=10")
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "fit"
    cmd = [sys.executable, "-m", "harness.fit", "curve", "--law", "tissue", "--fit", str(run_dir / "curve.jsonl"),
           "--target", "val_loss", "--min-step", "11", "--out", str(out)]
    fit = subprocess.run(cmd, cwd=ROOT, env=train_env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    text = json.dumps(metrics)
    assert "R2" in text or "r2" in text.lower()
    assert (out / "params.json").is_file() and any(out.glob("*.png"))

    # Leaving out every observed row is refused, and nothing is written.
    bad_out = tmp_path / "bad"
    bad = subprocess.run(cmd[:-4] + ["--min-step", "100000", "--out", str(bad_out)], cwd=ROOT, env=train_env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--min-step" in bad.stderr
    assert not bad_out.exists()
