"""DiLoCo (train.parallel=diloco, harness/diloco.py): equivalences, exact resume, the curve's outer-step
marks, communication accounting, and bad configs named by their field."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, read_rows, run_train, train_cmd, wait_for_rows
from harness.config import ConfigError, to_run_config
from harness.diloco import DilocoModel, comm_bytes_per_outer_step, outer_steps_done
from harness.identity import config_hash
from harness.models import build_model
from harness.runtime import Runtime

DILOCO = ["train.parallel=diloco", "train.deterministic=true"]


def diloco(replicas: int, inner_steps: int, *more: str) -> list[str]:
    return [*DILOCO, f"train.diloco.replicas={replicas}", f"train.diloco.inner_steps={inner_steps}", *more]


def test_one_replica_one_inner_step_plain_outer_sgd_equals_plain_training(train_env, tmp_path):
    """M=1, H=1, outer SGD with lr 1 and no momentum: theta <- theta - (theta - theta_1) = theta_1,
    which is plain training up to one rounding of the subtraction per step."""
    plain, dl = tmp_path / "plain", tmp_path / "diloco"
    assert run_train(train_env, f"run_dir={plain}", "train.deterministic=true").returncode == 0
    proc = run_train(train_env, f"run_dir={dl}", *diloco(1, 1, "train.diloco.outer_optimizer=sgd",
                                                         "train.diloco.outer_lr=1", "train.diloco.outer_momentum=0"))
    assert proc.returncode == 0, proc.stderr
    ref, rows = read_rows(plain), read_rows(dl)
    assert [r["step"] for r in rows] == [r["step"] for r in ref] == list(range(1, 21))
    for key in ("loss", "grad_norm", "val_loss"):
        got = [r[key] for r in rows if key in r]
        want = [r[key] for r in ref if key in r]
        assert len(got) == len(want) > 0
        assert got == pytest.approx(want, rel=1e-6), key
    for key in ("tokens", "flops", "optimizer_flops", "lr"):
        assert [r[key] for r in rows] == [r[key] for r in ref], key  # M=1: same accounting
    assert all(r["outer_step"] == r["step"] for r in rows)  # every step is an outer step
    status = json.loads((dl / "status.json").read_text())
    assert status["comm_bytes"] == 0 and status["outer_steps"] == 20  # one replica exchanges nothing


def test_diloco_differs_from_plain_and_marks_outer_steps(train_env, tmp_path):
    """M=2, H=6 over 20 steps: outer steps after 6, 12, 18 and the last step; tokens count both replicas;
    communication is 2 (M-1) x fp32 parameter bytes per outer step."""
    plain, dl = tmp_path / "plain", tmp_path / "diloco"
    assert run_train(train_env, f"run_dir={plain}", "train.deterministic=true").returncode == 0
    proc = run_train(train_env, f"run_dir={dl}", *diloco(2, 6))
    assert proc.returncode == 0, proc.stderr
    rows, ref = read_rows(dl), read_rows(plain)
    assert [r["step"] for r in rows if "outer_step" in r] == [6, 12, 18, 20]
    assert [r["outer_step"] for r in rows if "outer_step" in r] == [1, 2, 3, 4]
    assert all(r["pseudo_grad_norm"] > 0 for r in rows if "outer_step" in r)
    assert [r["tokens"] for r in rows] == [r["tokens"] for r in ref]  # global batch = M x per-replica batch
    # Step 1: the same model on the same batch (the mean of the halves' losses is the batch's loss);
    # from step 2 on each replica has stepped on its half batch alone.
    assert rows[0]["loss"] == pytest.approx(ref[0]["loss"], rel=1e-6) and rows[1]["loss"] != ref[1]["loss"]
    status = json.loads((dl / "status.json").read_text())
    per_outer = 2 * 1 * status["params"] * 4
    assert status["comm_bytes_per_outer_step"] == per_outer
    assert status["outer_steps"] == 4 and status["comm_bytes"] == 4 * per_outer
    assert status["dp_comm_bytes"] == 20 * per_outer
    assert status["diloco_replicas"] == 2 and status["diloco_inner_steps"] == 6
    # AdamW steps on both replicas: twice the plain run's optimizer FLOPs per step.
    assert status["optimizer_flops_per_step"] == 2 * json.loads((plain / "status.json").read_text())["optimizer_flops_per_step"]
    # Between outer steps the val loss is the last synchronized (outer) model's: unchanged.
    evals = {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
    assert evals[1] == evals[2] == evals[4]  # no outer step yet: the initial model
    assert evals[8] != evals[4] and evals[10] == evals[8]


def test_simulated_replicas_equal_torchrun_ranks(train_env, tmp_path):
    """Two replicas in one process give the curve two torchrun ranks (gloo) give, one replica each."""
    common = diloco(2, 4, "train.steps=12")
    sim, ranks = tmp_path / "simulated", tmp_path / "ranks"
    assert run_train(train_env, f"run_dir={sim}", *common).returncode == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "harness.train", *TINY, f"run_dir={ranks}", *common]
    proc = subprocess.run(cmd, cwd=ROOT, env=train_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((ranks / "env.json").read_text())["world_size"] == 2
    a, b = read_rows(sim), read_rows(ranks)
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 13))
    for key in ("loss", "grad_norm", "val_loss", "pseudo_grad_norm"):
        got, want = [r[key] for r in b if key in r], [r[key] for r in a if key in r]
        assert len(got) == len(want) > 0
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7), key
    # The checkpoints hold the same state: the outer model and both replicas (gathered from the ranks).
    sa, sb = (torch.load(d / "checkpoints" / "step_00000012.pt", weights_only=False) for d in (sim, ranks))
    assert len(sa["replicas"]) == len(sb["replicas"]) == 2
    for k, v in sa["model"].items():
        torch.testing.assert_close(sb["model"][k], v, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("how", ["sigkill", "sigterm"])
def test_resume_is_exact(train_env, tmp_path, how):
    """Killed (SIGKILL: back to the last checkpoint) or preempted (SIGTERM: checkpoint now) mid-run,
    between outer steps, then relaunched: the curve equals an uninterrupted run's exactly. This needs
    the outer model, the outer Nesterov momentum and both replicas' weights and AdamW states."""
    common = diloco(2, 7, "train.steps=300", "train.checkpoint_every=10", "train.eval_every=25", "train.num_threads=1")
    reference = tmp_path / "reference"
    assert run_train(train_env, f"run_dir={reference}", *common).returncode == 0
    run_dir = tmp_path / how
    child = subprocess.Popen(train_cmd(f"run_dir={run_dir}", *common), cwd=ROOT, env=train_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(run_dir / "curve.jsonl", 40, child)
    child.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGTERM)
    code = child.wait(timeout=120)
    assert code == (-signal.SIGKILL if how == "sigkill" else 75)
    proc = run_train(train_env, f"run_dir={run_dir}", *common)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((run_dir / "status.json").read_text())
    resumed = status["resumed_from"]
    assert resumed is not None and 30 <= resumed < 300  # killed at row 40 or later; checkpoints every 10
    if how == "sigkill":
        assert resumed % 10 == 0  # a checkpoint (every 10), mostly between outer steps (every 7)
    ref_rows, rows = read_rows(reference), read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 301))
    for key in ("loss", "grad_norm", "val_loss", "pseudo_grad_norm", "outer_step", "comm_bytes"):
        assert [r.get(key) for r in rows] == [r.get(key) for r in ref_rows], key  # bit-identical
    ref_status = json.loads((reference / "status.json").read_text())
    for key in ("final_val_loss", "outer_steps", "comm_bytes"):
        assert status[key] == ref_status[key]


def test_checkpoint_of_another_replica_count_is_refused(train_env, tmp_path):
    """A checkpoint holds every replica; loading it into a run with another replica count fails,
    naming the field."""
    common = diloco(2, 4, "train.steps=8")
    run_dir = tmp_path / "run"
    assert run_train(train_env, f"run_dir={run_dir}", *common, "train.steps=8").returncode == 0
    state = torch.load(run_dir / "checkpoints" / "step_00000008.pt", weights_only=False)
    cfg = to_run_config({"model": {"arch": "llama", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1,
                                   "vocab_size": 300},
                         "train": {"seq_len": 32, "batch_size": 4, "parallel": "diloco",
                                   "diloco": {"replicas": 4, "inner_steps": 4}}})
    rt = Runtime(device=torch.device("cpu"), autocast_dtype=None)
    model = DilocoModel.build(build_model(cfg.model), cfg.train, rt, lambda m: torch.optim.AdamW(m.parameters()))
    with pytest.raises(ConfigError, match=r"^train\.diloco\.replicas: the checkpoint holds 2 replicas"):
        model.load_state_dict(state)


def _cfg(**train):
    return {"run_dir": "x", "train": {"device": "cpu", "parallel": "diloco", **train}}


@pytest.mark.parametrize("train, field", [
    ({"diloco": {"replicas": 0}}, "train.diloco.replicas"),
    ({"diloco": {"inner_steps": 0}}, "train.diloco.inner_steps"),
    ({"diloco": {"outer_optimizer": "adam"}}, "train.diloco.outer_optimizer"),
    ({"diloco": {"outer_lr": 0.0}}, "train.diloco.outer_lr"),
    ({"diloco": {"outer_momentum": 1.0}}, "train.diloco.outer_momentum"),
    ({"diloco": {"outer_momentum": 0.0}}, "train.diloco.outer_momentum"),  # nesterov needs momentum
    ({"batch_size": 6, "diloco": {"replicas": 4}}, "train.batch_size"),
    ({"batch_size": 8, "micro_batch_size": 4, "diloco": {"replicas": 4}}, "train.micro_batch_size"),
    ({"diloco": {"replica": 2}}, "train.diloco.replica"),  # a misspelled key
])
def test_bad_diloco_config_names_the_field(train, field):
    with pytest.raises(ConfigError) as err:
        to_run_config(_cfg(**train))
    assert str(err.value).startswith(f"{field}:"), str(err.value)


def test_replicas_must_spread_evenly_over_ranks():
    cfg = to_run_config({"model": {"arch": "llama", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1,
                                   "vocab_size": 300},
                         "train": {"seq_len": 32, "batch_size": 6, "parallel": "diloco", "diloco": {"replicas": 3}}})
    rt = Runtime(device=torch.device("cpu"), autocast_dtype=None, rank=0, world_size=2)
    with pytest.raises(ConfigError, match=r"^train\.diloco\.replicas: 3 replicas cannot be spread over 2 ranks"):
        DilocoModel.build(build_model(cfg.model), cfg.train, rt, lambda m: torch.optim.AdamW(m.parameters()))


def test_diloco_fields_are_identity_only_under_diloco():
    plain = to_run_config({"run_dir": "x", "train": {"device": "cpu"}})
    assert config_hash(plain) == "2620581fa350"  # unchanged by the new train.diloco section
    other = to_run_config({"run_dir": "x", "train": {"device": "cpu", "diloco": {"replicas": 4}}})
    assert config_hash(other) == config_hash(plain)  # ignored unless parallel=diloco
    a = to_run_config(_cfg(diloco={"outer_lr": 0.7}))
    b = to_run_config(_cfg(diloco={"outer_lr": 0.5}))
    assert config_hash(a) != config_hash(b) != config_hash(plain)


def test_outer_step_count_and_bytes():
    assert [outer_steps_done(s, 4, 10) for s in (3, 4, 8, 9, 10)] == [0, 1, 2, 2, 3]
    assert outer_steps_done(12, 4, 12) == 3
    assert comm_bytes_per_outer_step(1, 1000) == 0
    assert comm_bytes_per_outer_step(4, 1000) == 6000
