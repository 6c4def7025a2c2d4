"""Data honesty: every run records the unique tokens of its training split and the epochs it made
over them (curve rows, status.json, the collected table), and warns at start when it will repeat data."""

from __future__ import annotations

import json

import pytest

from conftest import read_rows, run_train

from harness.collect import collect
from harness.data.repetition import epochs, repetition_warning


def test_repetition_warning_only_past_one_epoch():
    assert repetition_warning(1000, 1000) is None and repetition_warning(10, 1000) is None
    message = repetition_warning(2500, 1000)
    assert message is not None and "2,500" in message and "1,000 unique tokens" in message and "2.50 epochs" in message
    assert epochs(2500, 1000) == 2.5
    with pytest.raises(ValueError, match="unique_tokens"):
        epochs(10, 0)


def _train_split_size(run_dir) -> int:
    return json.loads((run_dir / "env.json").read_text())["data_manifest"]["split"]["n_train"]


def test_run_that_repeats_data_warns_and_records_epochs(train_env, tmp_path):
    run_dir = tmp_path / "repeats"
    # 60 steps x 128 x 32 = 245,760 tokens: more than the tiny data's training split (~197k tokens).
    proc = run_train(train_env, f"run_dir={run_dir}", "train.batch_size=128", "train.steps=60")
    assert proc.returncode == 0, proc.stderr[-3000:]
    unique = _train_split_size(run_dir)
    planned = 60 * 128 * 32
    assert planned > unique, "the test needs a run longer than the training split"
    assert (f"plans {planned:,} training tokens but the training split holds {unique:,} unique tokens: "
            f"it repeats the data {planned / unique:.2f} epochs") in proc.stderr
    rows = read_rows(run_dir)
    assert all(r["unique_tokens"] == unique for r in rows)
    assert all(r["epochs"] == pytest.approx(r["tokens"] / unique) for r in rows)
    assert rows[-1]["epochs"] > 1
    status = json.loads((run_dir / "status.json").read_text())
    assert status["unique_tokens"] == unique and status["epochs"] == pytest.approx(planned / unique)

    short = tmp_path / "fresh"
    proc = run_train(train_env, f"run_dir={short}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "repeats the data" not in proc.stderr
    assert json.loads((short / "status.json").read_text())["epochs"] == pytest.approx(20 * 4 * 32 / unique)

    table = collect(tmp_path).set_index("train.steps")
    assert table.loc[60, "unique_tokens"] == unique and table.loc[60, "epochs"] == pytest.approx(planned / unique)
    assert table.loc[20, "epochs"] == pytest.approx(20 * 4 * 32 / unique)
    # A run whose status.json predates these keys (or a failed one) falls back to the curve.
    status.pop("unique_tokens"), status.pop("epochs")
    (run_dir / "status.json").write_text(json.dumps(status))
    again = collect(tmp_path).set_index("train.steps")
    assert again.loc[60, "unique_tokens"] == unique and again.loc[60, "epochs"] == pytest.approx(planned / unique)
