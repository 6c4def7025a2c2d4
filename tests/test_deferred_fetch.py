"""train.fetch_every: the loss and gradient norm stay on the device and are fetched every N steps
(and at checkpoint / eval / last steps); the curve still has every step's row, identical to
fetching each step, and a non-finite loss still stops the run at its own step."""

from __future__ import annotations

import json

from conftest import read_rows, run_train

COMMON = ["train.deterministic=true", "train.steps=23", "train.checkpoint_every=10", "train.eval_every=6"]


def test_deferred_fetch_writes_the_same_curve(train_env, tmp_path):
    for name, every in (("each", 1), ("deferred", 4)):
        proc = run_train(train_env, f"run_dir={tmp_path / name}", f"train.fetch_every={every}", *COMMON)
        assert proc.returncode == 0, proc.stderr
    each, deferred = read_rows(tmp_path / "each"), read_rows(tmp_path / "deferred")
    assert [r["step"] for r in deferred] == list(range(1, 24))
    for a, b in zip(deferred, each):
        assert list(a) == list(b)  # same columns, same order
        assert {k: v for k, v in a.items() if k != "tokens_per_s"} == {k: v for k, v in b.items() if k != "tokens_per_s"}
    assert sorted(p.name for p in (tmp_path / "deferred" / "checkpoints").iterdir()) == \
        sorted(p.name for p in (tmp_path / "each" / "checkpoints").iterdir())
    status = json.loads((tmp_path / "deferred" / "status.json").read_text())
    assert status["state"] == "completed" and status["final_loss"] == each[-1]["loss"]


def test_deferred_fetch_stops_at_the_first_non_finite_step(train_env, tmp_path):
    bad = ["optim.lr=1e30", "train.grad_clip=0", "schedule.warmup_steps=0", "train.checkpoint_every=8"]
    results = {}
    for name, every in (("each", 1), ("deferred", 5)):
        run_dir = tmp_path / name
        proc = run_train(train_env, f"run_dir={run_dir}", f"train.fetch_every={every}", *bad)
        assert proc.returncode == 3, proc.stderr
        status = json.loads((run_dir / "status.json").read_text())
        results[name] = (status["step"], len(read_rows(run_dir)), status["last_checkpoint"])
    assert results["deferred"] == results["each"]
    step, rows, _ = results["each"]
    assert rows == step - 1
