"""Sparse pre-training (train.prune, harness/prune.py) and the N_avg it feeds (harness/collect.py).

Covers: the cubic schedule's numbers, every matrix at the schedule's sparsity after each update and
its pruned weights exactly zero after every optimizer step (embedding, readout and norms untouched),
SIGKILL + resume bit-identical with pruning on (losses, val losses, live counts, masks), dense hashes
unchanged, collect's N_avg / N_final for a dense and a pruned run, and bad configs refused naming the
field.
"""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import torch

from conftest import ROOT, read_rows, run_train, train_cmd, wait_for_rows
from harness.batched.compat import why_not_batchable
from harness.checkpoint import latest_checkpoint, load_checkpoint
from harness.collect import collect, live_params
from harness.config import ConfigError, PruneConfig, to_run_config
from harness.identity import config_hash, identity_fields
from harness.models import build_model
from harness.prune import Pruner, is_update_step, prunable_parameters, sparsity_at

# 120 steps, pruned to 60% between steps 30 and 90 (mask updates every 5), checkpoints every 10.
PRUNED = ["train.steps=120", "train.checkpoint_every=10", "train.deterministic=true", "train.num_threads=1",
          "train.eval_every=30", "train.prune.enabled=true", "train.prune.final_sparsity=0.6",
          "train.prune.every=5"]


def test_cubic_schedule_numbers():
    cfg = PruneConfig(enabled=True, final_sparsity=0.8, start_frac=0.2, end_frac=0.6, every=10)
    assert cfg.window(100) == (20, 60)
    assert [sparsity_at(t, 100, cfg) for t in (1, 20, 40, 60, 100)] == \
        [0.0, 0.0, pytest.approx(0.8 * (1 - 0.5 ** 3)), 0.8, 0.8]
    assert sparsity_at(30, 100, cfg) == pytest.approx(0.8 * (1 - 0.75 ** 3))
    assert [t for t in range(1, 101) if is_update_step(t, 100, cfg)] == [30, 40, 50, 60]
    uneven = PruneConfig(enabled=True, start_frac=0.25, end_frac=0.75, every=7)
    assert [t for t in range(1, 21) if is_update_step(t, 20, uneven)] == [12, 15]  # window (5, 15): its end too


def tiny_model(arch: str = "llama"):
    cfg = to_run_config({"model": {"arch": arch, "d_model": 32, "n_layers": 2, "n_heads": 2, "vocab_size": 64,
                                   "max_seq_len": 16}, "train": {"device": "cpu", "seq_len": 16}})
    torch.manual_seed(0)
    return build_model(cfg.model)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_matrices_follow_the_schedule_and_pruned_weights_stay_zero(arch):
    model = tiny_model(arch)
    cfg = PruneConfig(enabled=True, final_sparsity=0.7, start_frac=0.1, end_frac=0.7, every=3)
    steps = 40
    pruner = Pruner(cfg, model, steps)
    names = set(prunable_parameters(model))
    # Attention and MLP matrices only: 4 per layer (qkv, out and the MLP's two).
    assert len(names) == 8 and all(("attn" in n or "mlp" in n) and n.endswith("weight") for n in names)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    previous_masks, expected = pruner.state_dict(), 0.0
    for step in range(1, steps + 1):
        pruner.before_step(step)
        if is_update_step(step, steps, cfg):
            expected = sparsity_at(step, steps, cfg)
        tokens = torch.randint(0, 64, (2, 16))
        model(tokens).float().pow(2).mean().backward()
        pruner.mask_gradients()
        for name, p in prunable_parameters(model).items():
            assert not p.grad[~pruner.masks[name]].any(), (step, name)
        optimizer.step()
        optimizer.zero_grad()
        pruner.after_step()
        for name, p in prunable_parameters(model).items():
            mask = pruner.masks[name]
            assert (~mask).sum() == round(expected * p.numel()), (step, name)
            assert not p[~mask].any(), (step, name)  # held at zero after the optimizer step
            assert (previous_masks[name] | ~mask.cpu()).all()  # once pruned, pruned for good
        previous_masks = pruner.state_dict()
        assert pruner.columns()["sparsity"] == pytest.approx(expected, abs=1e-3)
    assert expected == 0.7
    live = pruner.columns()["params_live"]
    assert live == model.num_params(include_embedding=False) - sum((~m).sum().item() for m in pruner.masks.values())
    for name, p in model.named_parameters():  # embedding, readout, norm gains: trained, never pruned
        if name not in names and name.endswith("weight"):
            assert (p != 0).all(), name


def test_dense_hash_unchanged_and_prune_fields_enter_only_when_on():
    plain = {"run_dir": "x", "train": {"device": "cpu"}}
    # The default config's hash as computed before train.prune existed (tests/test_init_from.py pins it too).
    assert config_hash(to_run_config(plain)) == "2620581fa350"
    off = to_run_config({"run_dir": "x", "train": {"device": "cpu", "prune": {"final_sparsity": 0.9, "every": 3}}})
    assert config_hash(off) == "2620581fa350"
    on = to_run_config({"run_dir": "x", "train": {"device": "cpu", "prune": {"enabled": True}}})
    assert "train.prune.final_sparsity" in identity_fields(on) and config_hash(on) != "2620581fa350"
    on_more = to_run_config({"run_dir": "x", "train": {"device": "cpu", "prune": {"enabled": True,
                                                                                  "final_sparsity": 0.9}}})
    assert config_hash(on_more) != config_hash(on)
    assert "train.prune" in why_not_batchable(on) and why_not_batchable(off) is None


@pytest.mark.parametrize("prune, train, model, needle", [
    ({"final_sparsity": 1.0}, {}, {}, "train.prune.final_sparsity"),
    ({"final_sparsity": 0.0}, {}, {}, "train.prune.final_sparsity"),
    ({"start_frac": 0.8, "end_frac": 0.5}, {}, {}, "train.prune.start_frac"),
    ({"end_frac": 1.5}, {}, {}, "train.prune.start_frac"),
    ({"every": 0}, {}, {}, "train.prune.every"),
    ({"start_frac": 0.5, "end_frac": 0.52}, {"steps": 10}, {}, "train.prune.end_frac"),  # window (5, 5)
    ({}, {"parallel": "fsdp"}, {}, "train.prune.enabled: pruning runs single-process only"),
    ({}, {"parallel": "diloco", "batch_size": 16}, {}, "train.prune.enabled: pruning runs single-process only"),
    ({}, {}, {"arch": "moe"}, "train.prune.enabled: pruning supports dense archs only"),
])
def test_bad_prune_config_names_field_and_fix(prune, train, model, needle):
    with pytest.raises(ConfigError) as err:
        to_run_config({"train": {"device": "cpu", **train, "prune": {"enabled": True, **prune}}, "model": model})
    assert needle in str(err.value)


def test_live_params_is_the_token_weighted_average():
    rows = [{"step": 1, "tokens": 10, "params_live": 100}, {"step": 2, "tokens": 20, "params_live": 100},
            {"step": 3, "tokens": 30, "params_live": 70}, {"step": 4, "tokens": 40, "params_live": 50}]
    assert live_params(rows, 100, pruned=True) == {"N_avg": (100 + 100 + 70 + 50) / 4, "N_final": 50}
    dense = [{"step": s, "tokens": 10 * s} for s in (1, 2, 3)]
    assert live_params(dense, 100, pruned=False) == {"N_avg": 100.0, "N_final": 100}
    assert live_params([], 100, pruned=False) == {"N_avg": 100.0, "N_final": 100}
    assert live_params([], 100, pruned=True) == {"N_avg": None, "N_final": None}  # unknown, not N


# ---- end to end: real runs in subprocesses ---------------------------------------------------

@pytest.fixture(scope="module")
def runs(harness_cache, tmp_path_factory):
    """An uninterrupted pruned run and a dense one of the same length (module-scoped: one launch each)."""
    from conftest import training_env

    env = training_env(harness_cache, tmp_path_factory.mktemp("hf_home"))
    root = tmp_path_factory.mktemp("prune_runs")
    pruned = run_train(env, f"run_dir={root / 'pruned'}", *PRUNED)
    assert pruned.returncode == 0, pruned.stderr
    dense = run_train(env, f"run_dir={root / 'dense'}", *PRUNED[:5])
    assert dense.returncode == 0, dense.stderr
    return root, env


def test_pruned_run_logs_live_counts_on_schedule_and_collect_writes_n_avg(runs):
    root, _ = runs
    rows = read_rows(root / "pruned")
    n = json.loads((root / "pruned" / "status.json").read_text())["params_non_embedding"]
    live = [r["params_live"] for r in rows]
    assert live[:30] == [n] * 30  # dense before the window (steps 30..90)
    assert all(a >= b for a, b in zip(live, live[1:])) and live[-1] < n
    assert rows[-1]["sparsity"] == pytest.approx(0.6, abs=1e-3) and rows[89]["sparsity"] == rows[-1]["sparsity"]
    assert rows[59]["sparsity"] == pytest.approx(0.6 * (1 - 0.5 ** 3), abs=1e-3)  # step 60: half the window
    assert "params_live" not in read_rows(root / "dense")[0]  # dense curves are as before

    table = collect(root).set_index("run_dir")
    pruned, dense = table.loc[str(root / "pruned")], table.loc[str(root / "dense")]
    assert dense["N_avg"] == dense["N"] == dense["N_final"] == n
    assert pruned["N"] == n and pruned["N_final"] == live[-1]
    assert pruned["N_avg"] == pytest.approx(sum(live) / len(live))  # equal tokens per step
    assert live[-1] < pruned["N_avg"] < n
    # The last checkpoint holds the masks; it loads weights_only (load_checkpoint), and its pruned weights are zero.
    state = load_checkpoint(latest_checkpoint(root / "pruned" / "checkpoints"))
    assert set(state["prune_masks"]) and all(m.dtype == torch.bool for m in state["prune_masks"].values())
    for name, mask in state["prune_masks"].items():
        assert not state["model"][name][~mask].any()
    assert sum(int((~m).sum()) for m in state["prune_masks"].values()) == n - live[-1]
    assert "prune_masks" not in load_checkpoint(latest_checkpoint(root / "dense" / "checkpoints"))


def test_sigkill_and_resume_with_pruning_is_bit_identical(runs, tmp_path):
    root, env = runs
    killed = tmp_path / "killed"
    child = subprocess.Popen(train_cmd(f"run_dir={killed}", *PRUNED), cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(killed / "curve.jsonl", 45, child)  # inside the pruning window
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert 45 <= len(read_rows(killed)) < 120

    proc = run_train(env, f"run_dir={killed}", *PRUNED)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((killed / "status.json").read_text())
    assert status["resumed_from"] is not None and 40 <= status["resumed_from"] < 120
    ref, resumed = read_rows(root / "pruned"), read_rows(killed)
    assert [r["step"] for r in resumed] == list(range(1, 121))
    for key in ("loss", "val_loss", "params_live", "sparsity", "grad_norm"):
        assert [r.get(key) for r in resumed] == [r.get(key) for r in ref], key
    a = load_checkpoint(latest_checkpoint(killed / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(root / "pruned" / "checkpoints"))
    assert all(torch.equal(a["prune_masks"][k], b["prune_masks"][k]) for k in b["prune_masks"])
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in b["model"])


def test_check_script_fits_on_n_avg_and_reports_pruning_cost():
    """scripts/check_journey_pruning.py's fit-and-report on a table made by the journey law itself:
    the journey fit predicts the held-out runs, Chinchilla on the final count does not."""
    import numpy as np
    import pandas as pd

    from conftest import load_script

    check = load_script("check_journey_pruning")
    rows = []
    for width, n in ((32, 4e4), (64, 1.3e5), (96, 2.7e5), (128, 4.6e5)):
        for steps, sparsity in ((200, None), (400, None), (300, None), (400, 0.5), (400, 0.75)):
            n_avg = n if sparsity is None else n * (1 - 0.6 * sparsity)  # prunable share 0.8, window mid-run
            n_final = n if sparsity is None else n * (1 - 0.8 * sparsity)
            d = steps * 512.0
            rows.append({"name": f"d{width}_{steps}_{sparsity}", "model.d_model": width, "train.steps": steps,
                         "train.prune.enabled": sparsity is not None, "train.prune.final_sparsity": sparsity or 0.5,
                         "N": n, "N_avg": n_avg, "N_final": n_final, "D": d,
                         "loss": 1.8 + 400 / n_avg ** 0.5 + 900 / d ** 0.45})
    table = pd.DataFrame(rows)
    table["role"] = table.apply(check.role, axis=1)
    assert (table["role"] == "held_out").sum() == 4
    table, results = check.fit_and_predict(table)
    assert results["journey (N_avg)"]["held_out"]["prede"] < 1e-3
    assert results["chinchilla (N_final)"]["held_out"]["prede"] > 5 * results["journey (N_avg)"]["held_out"]["prede"]
    penalty = check.pruning_penalties(table, list(results))
    assert penalty["journey (N_avg)"] == pytest.approx(penalty["observed"], rel=0.05) and penalty["observed"] > 0
    assert penalty["chinchilla (N initial)"] == pytest.approx(0.0, abs=1e-12)
    assert "held-out mean rel. err." in check.report(table, results) and np.isfinite(penalty["observed"])
