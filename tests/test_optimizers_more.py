"""The optimizers added for optimizer comparisons (NAdamW, AdEMAMix, SOAP): each one's update against a
hand computation or the library class used directly, their validation, a whole run resumed mid-way
that writes the same curve rows as an uninterrupted one, and the optimizer FLOPs (Muon's and SOAP's
counts by hand, the curve's optimizer_flops / total_flops columns).

Their routing entries and in-process resume from a saved optimizer state are in test_optimizers.py
(the EXPECTED table and test_resume_from_saved_state_is_bit_identical), with the other optimizers'."""

from __future__ import annotations

import json

import pytest
import torch
from pytorch_optimizer import SOAP
from torch import nn

from conftest import read_rows, run_train
from harness.config import ConfigError, ModelConfig, to_run_config
from harness.loop import ComputeBudget
from harness.models import build_model, param_roles
from harness.optim.routing import build_optimizer, set_lr, step_flops
from test_optimizers import CPU, _loss, optim_cfg, tiny_model

NEW = ("nadamw", "ademamix", "soap")


def _grads(model: nn.Module, step: int) -> dict[str, torch.Tensor]:
    """Backpropagate one fixed batch; returns the gradients by parameter name."""
    batch = torch.randint(0, 64, (4, 17), generator=torch.Generator().manual_seed(step))
    _loss(model, batch).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _decayed(model: nn.Module, wd: float) -> dict[str, float]:
    """Each parameter's weight decay under the default routing (no decay on vectors)."""
    return {n: 0.0 if r.value == "vector" else wd for n, r in param_roles(model).items()}


def _run(model: nn.Module, optimizer: torch.optim.Optimizer, steps: int,
         by_hand=None) -> dict[str, torch.Tensor]:
    """`steps` optimizer steps; `by_hand(step, grads)` (if given) mirrors each step on its own copy."""
    for step in range(1, steps + 1):
        grads = _grads(model, step)
        if by_hand is not None:
            by_hand(step, grads)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---- updates -----------------------------------------------------------------------------------

def test_nadamw_update_by_hand() -> None:
    """optax's nadamw with decoupled decay: p -= lr (b1 m_t / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t))
    / (sqrt(v_t / (1 - b2^t)) + eps), after p *= 1 - lr wd."""
    lr, (b1, b2), eps, wd = 1e-2, (0.9, 0.95), 1e-8, 0.1
    model = tiny_model()
    optimizer = build_optimizer(model, optim_cfg("nadamw", lr=lr, weight_decay=wd), CPU)
    assert isinstance(optimizer, torch.optim.NAdam)
    set_lr(optimizer, 1.0)
    decay = _decayed(model, wd)
    p = {n: q.detach().clone().double() for n, q in model.named_parameters()}
    m = {n: torch.zeros_like(q) for n, q in p.items()}
    v = {n: torch.zeros_like(q) for n, q in p.items()}

    def by_hand(t: int, grads: dict[str, torch.Tensor]) -> None:
        for n, g in grads.items():
            g = g.double()
            m[n] = b1 * m[n] + (1 - b1) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            direction = b1 * m[n] / (1 - b1 ** (t + 1)) + (1 - b1) * g / (1 - b1 ** t)
            p[n] = p[n] * (1 - lr * decay[n]) - lr * direction / ((v[n] / (1 - b2 ** t)).sqrt() + eps)

    final = _run(model, optimizer, 3, by_hand)
    for n, value in final.items():
        torch.testing.assert_close(value.double(), p[n], rtol=1e-5, atol=1e-6, msg=n)
    # torch's own momentum warmup (momentum_decay 0.004) is a different update: the field matters.
    warm = tiny_model()
    other = _run(warm, build_optimizer(warm, optim_cfg("nadamw", lr=lr, weight_decay=wd, momentum_decay=0.004),
                                       CPU), 3)
    assert not all(torch.equal(other[n], final[n]) for n in final)


def test_ademamix_update_by_hand() -> None:
    """(m1 / (1 - b1^t) + alpha m3) / (sqrt(v / (1 - b2^t)) + eps), m3 = EMA of g with beta3 (no bias
    correction), decoupled decay first."""
    lr, (b1, b2), b3, alpha, eps, wd = 1e-2, (0.9, 0.95), 0.99, 5.0, 1e-8, 0.1
    model = tiny_model()
    cfg = optim_cfg("ademamix", lr=lr, betas=[b1, b2], beta3=b3, alpha=alpha, weight_decay=wd)
    optimizer = build_optimizer(model, cfg, CPU)
    set_lr(optimizer, 1.0)
    decay = _decayed(model, wd)
    p = {n: q.detach().clone().double() for n, q in model.named_parameters()}
    m1, m3, v = ({n: torch.zeros_like(q) for n, q in p.items()} for _ in range(3))

    def by_hand(t: int, grads: dict[str, torch.Tensor]) -> None:
        for n, g in grads.items():
            g = g.double()
            m1[n] = b1 * m1[n] + (1 - b1) * g
            m3[n] = b3 * m3[n] + (1 - b3) * g
            v[n] = b2 * v[n] + (1 - b2) * g * g
            update = (m1[n] / (1 - b1 ** t) + alpha * m3[n]) / ((v[n] / (1 - b2 ** t)).sqrt() + eps)
            p[n] = p[n] * (1 - lr * decay[n]) - lr * update

    final = _run(model, optimizer, 3, by_hand)
    for n, value in final.items():
        torch.testing.assert_close(value.double(), p[n], rtol=1e-5, atol=1e-6, msg=n)


def test_soap_matches_the_library_class_with_hand_made_groups() -> None:
    """Our build + routing gives pytorch_optimizer.SOAP each knob and each role's decay: the same
    parameters after 5 steps as the library class over groups made by hand (precondition_frequency=2,
    so the eigenbasis is refreshed by power iteration + QR twice)."""
    knobs = dict(lr=1e-2, betas=[0.9, 0.99], shampoo_beta=0.8, weight_decay=0.2, precondition_frequency=2,
                 max_precondition_dim=40, eps=1e-7)
    model = tiny_model()  # d_model 32, vocab 64: the embedding's 64-row side is above max_precondition_dim
    optimizer = build_optimizer(model, optim_cfg("soap", **knobs), CPU)
    assert isinstance(optimizer, SOAP)
    set_lr(optimizer, 1.0)
    ours = _run(model, optimizer, 5)

    reference = tiny_model()
    decay = _decayed(reference, knobs["weight_decay"])
    named = list(reference.named_parameters())
    groups = [{"params": [q for n, q in named if decay[n] > 0]}, {"params": [q for n, q in named if decay[n] == 0],
                                                                  "weight_decay": 0.0}]
    library = SOAP(groups, lr=1e-2, betas=(0.9, 0.99), shampoo_beta=0.8, weight_decay=0.2, precondition_frequency=2,
                   max_precondition_dim=40, eps=1e-7)
    theirs = _run(reference, library, 5)
    for n in ours:
        assert torch.equal(ours[n], theirs[n]), n
    # The knobs matter (a guard against a test that would pass with any config).
    other = tiny_model()
    changed = _run(other, build_optimizer(other, optim_cfg("soap", **{**knobs, "shampoo_beta": 0.5}), CPU), 5)
    assert not all(torch.equal(changed[n], ours[n]) for n in ours)


def test_soap_first_step_only_gathers_statistics() -> None:
    """As in the reference implementation, step 1 builds the preconditioner and moves nothing."""
    model = tiny_model()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, optim_cfg("soap", weight_decay=0.0), CPU)
    after = _run(model, optimizer, 1)
    assert all(torch.equal(after[n], before[n]) for n in before)
    after = _run(model, optimizer, 1)
    assert not all(torch.equal(after[n], before[n]) for n in before)


@pytest.mark.parametrize("bad, field", [
    ({"name": "soap", "precondition_frequency": 0}, "optim.precondition_frequency"),
    ({"name": "soap", "shampoo_beta": 1.0}, "optim.shampoo_beta"),
    ({"name": "soap", "max_precondition_dim": 0}, "optim.max_precondition_dim"),
    ({"name": "ademamix", "beta3": 1.0}, "optim.beta3"),
    ({"name": "ademamix", "alpha": -1.0}, "optim.alpha"),
    ({"name": "ademamix", "t_alpha_beta3": 0}, "optim.t_alpha_beta3"),
    ({"name": "nadamw", "momentum_decay": 0.0}, "optim.momentum_decay"),
    ({"name": "nadamw", "betas": [0.9, 1.0]}, "optim.betas"),
    ({"name": "nadamw", "fused": True}, "optim.fused"),  # torch's NAdam has no fused kernel
    ({"name": "adamw", "precondition_frequency": 5}, "optim.precondition_frequency"),
])
def test_bad_new_optim_config_names_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        to_run_config({"optim": bad})


# ---- a whole run resumed -----------------------------------------------------------------------

@pytest.mark.parametrize("name", NEW)
def test_run_resumed_mid_way_writes_the_same_curve(train_env, tmp_path, name: str) -> None:
    """20 steps in one go vs the same run cut back to its step-10 checkpoint and relaunched: a new
    process loads the optimizer state and writes rows 11-20 identical to the uninterrupted run's."""
    run_dir = tmp_path / "run"
    args = (f"run_dir={run_dir}", f"optim={name}", "train.steps=20", "train.checkpoint_every=10",
            "train.keep_checkpoints=3")
    proc = run_train(train_env, *args)
    assert proc.returncode == 0, proc.stderr
    reference = read_rows(run_dir)
    assert [r["step"] for r in reference] == list(range(1, 21))
    # Leave what a kill after the step-10 checkpoint leaves: that checkpoint, rows up to 14, a running status.
    (run_dir / "checkpoints" / "step_00000020.pt").unlink()
    lines = (run_dir / "curve.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "curve.jsonl").write_text("".join(lines[:14]))
    (run_dir / "status.json").write_text(json.dumps({"state": "running", "step": 14}))
    proc = run_train(train_env, *args)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "status.json").read_text())["resumed_from"] == 10
    resumed = read_rows(run_dir)
    drop = {"tokens_per_s"}  # wall-clock speed is the one column that may differ
    assert [{k: v for k, v in r.items() if k not in drop} for r in resumed] == \
           [{k: v for k, v in r.items() if k not in drop} for r in reference]


# ---- optimizer FLOPs ---------------------------------------------------------------------------

def test_muon_step_flops_by_hand() -> None:
    """A 64 x 256 matrix, 5 Newton-Schulz steps: X X^T (2 * 64^2 * 256), A @ A (2 * 64^3) and B @ X
    (2 * 64^2 * 256) per iteration, plus 12 elementwise FLOPs per entry."""
    muon = optim_cfg("muon", muon_ns_steps=5)
    per_iteration = 2 * 64 * 64 * 256 + 2 * 64 ** 3 + 2 * 64 * 64 * 256
    assert per_iteration == 4_718_592
    assert muon.step_flops([(64, 256)]) == 5 * per_iteration + 12 * 64 * 256 == 23_789_568
    assert muon.step_flops([(256, 64)]) == muon.step_flops([(64, 256)])  # the short side is r either way
    assert optim_cfg("muon", muon_ns_steps=3).step_flops([(64, 256)]) == 3 * per_iteration + 12 * 64 * 256
    with pytest.raises(ValueError, match="2-D"):
        muon.step_flops([(3, 8, 8)])


def test_soap_step_flops_by_hand() -> None:
    """A 16 x 48 matrix, both sides preconditioned: per side d, 8 n d + 3 d^2 per step and
    (14/3) d^3 per refresh over precondition_frequency steps; a 1-D tensor pays the elementwise part."""
    soap = optim_cfg("soap", precondition_frequency=10, max_precondition_dim=10000)
    n = 16 * 48
    sides = sum(8 * n * d + 3 * d * d + (14 / 3) * d ** 3 / 10 for d in (16, 48))
    assert soap.step_flops([(16, 48)]) == pytest.approx(14 * n + sides, rel=1e-12)
    assert soap.step_flops([(48,)]) == 14 * 48
    # A side above max_precondition_dim stays in the identity basis: no matrix work for it.
    capped = optim_cfg("soap", precondition_frequency=10, max_precondition_dim=20)
    assert capped.step_flops([(16, 48)]) == pytest.approx(14 * n + 8 * n * 16 + 3 * 16 ** 2 + (14 / 3) * 16 ** 3 / 10)


def test_step_flops_of_a_model_follows_the_routing() -> None:
    """Muon pays Newton-Schulz on the hidden matrices only; its AdamW fallback the elementwise rate."""
    model = tiny_model()
    roles = param_roles(model)
    hidden = [tuple(p.shape) for n, p in model.named_parameters() if roles[n].value == "hidden"]
    rest = sum(p.numel() for n, p in model.named_parameters() if roles[n].value != "hidden")
    muon = optim_cfg("muon")
    assert step_flops(model, muon) == muon.step_flops(hidden) + 14 * rest
    n_params = sum(p.numel() for p in model.parameters())
    assert step_flops(model, optim_cfg("adamw")) == 14 * n_params
    assert step_flops(model, optim_cfg("soap")) > step_flops(model, muon) > step_flops(model, optim_cfg("adamw"))


def test_compute_budget_keeps_model_flops_and_adds_the_optimizer() -> None:
    cfg = to_run_config({"model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "vocab_size": 64},
                         "train": {"batch_size": 4, "seq_len": 16}})
    budget = ComputeBudget.of(cfg, optimizer_flops_per_step=1000.0)
    plain = ComputeBudget.of(cfg)
    assert budget.flops(7) == plain.flops(7) == 7 * 4 * 16 * plain.flops_per_token
    assert plain.optimizer_flops(7) == 0.0
    assert budget.columns(7) == {"tokens": 7 * 64, "flops": plain.flops(7), "optimizer_flops": 7000.0,
                                 "total_flops": plain.flops(7) + 7000.0}


def test_curve_and_status_carry_optimizer_flops(train_env, tmp_path) -> None:
    run_dir = tmp_path / "run"
    proc = run_train(train_env, f"run_dir={run_dir}", "optim=muon", "train.steps=4")
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(run_dir)
    status = json.loads((run_dir / "status.json").read_text())
    per_step = status["optimizer_flops_per_step"]
    assert per_step > 0
    for row in rows:
        assert row["optimizer_flops"] == row["step"] * per_step
        assert row["total_flops"] == row["flops"] + row["optimizer_flops"]
        assert row["flops"] == row["tokens"] * status["flops_per_token"]  # flops is still the model's
    assert status["optimizer_flops"] == rows[-1]["optimizer_flops"]
    assert status["total_flops"] == rows[-1]["total_flops"]
    from harness.collect import collect

    table = collect(tmp_path)
    assert table.loc[0, "optimizer_flops"] == rows[-1]["optimizer_flops"]
    assert table.loc[0, "total_flops"] == rows[-1]["total_flops"]
    assert table.loc[0, "flops"] == rows[-1]["flops"]
