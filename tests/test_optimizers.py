"""Optimizers: the role routing rule, each optimizer learning, Lion by hand, Muon's inputs, config
errors, and bit-identical resume from a saved optimizer state (Muon + AdamW, Lion, ...)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from pytorch_optimizer import SOAP, AdEMAMix
from torch import nn

from harness.checkpoint import load_checkpoint, save_checkpoint
from harness.config import ConfigError, ModelConfig, OptimConfig, optim_config, to_run_config
from harness.models import ParamRole, build_model, param_roles
from harness.models.roles import InitKind, ParamSpec, tag
from harness.optim.lion import Lion
from harness.optim.routing import MultiOptimizer, build_optimizer, param_groups, set_lr

CPU = torch.device("cpu")
E, H, R, V = ParamRole.EMBEDDING, ParamRole.HIDDEN, ParamRole.READOUT, ParamRole.VECTOR

# The routing rule, written out: optimizer name -> role -> (optimizer that updates it, decayed?).
EXPECTED = {
    "adamw": {E: ("adamw", True), H: ("adamw", True), R: ("adamw", True), V: ("adamw", False)},
    "adam": {E: ("adam", True), H: ("adam", True), R: ("adam", True), V: ("adam", False)},
    "muon": {E: ("adamw", True), H: ("muon", True), R: ("adamw", True), V: ("adamw", False)},
    "lion": {E: ("lion", True), H: ("lion", True), R: ("lion", True), V: ("lion", False)},
    "sgd": {E: ("sgd", True), H: ("sgd", True), R: ("sgd", True), V: ("sgd", False)},
    # Every role, as in each reference implementation (SOAP keeps 1-D parameters in the identity basis).
    "nadamw": {E: ("nadamw", True), H: ("nadamw", True), R: ("nadamw", True), V: ("nadamw", False)},
    "ademamix": {E: ("ademamix", True), H: ("ademamix", True), R: ("ademamix", True), V: ("ademamix", False)},
    "soap": {E: ("soap", True), H: ("soap", True), R: ("soap", True), V: ("soap", False)},
}
TORCH_CLASS = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "muon": torch.optim.Muon, "lion": Lion,
               "sgd": torch.optim.SGD, "nadamw": torch.optim.NAdam, "ademamix": AdEMAMix, "soap": SOAP}


def optim_cfg(name: str, **overrides) -> OptimConfig:
    """The shipped conf/optim/<name>.yaml, with overrides."""
    yaml = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "optim" / f"{name}.yaml")
    cfg = to_run_config({"optim": OmegaConf.merge(yaml, overrides)}).optim
    return cfg


def tiny_model(arch: str = "llama", tied: bool = False, vocab: int = 64) -> nn.Module:
    torch.manual_seed(0)
    return build_model(ModelConfig(arch=arch, d_model=32, n_layers=2, n_heads=2, vocab_size=vocab,
                                   max_seq_len=16, tie_embeddings=tied))


@pytest.mark.parametrize("name", list(EXPECTED))
@pytest.mark.parametrize("arch, tied", [("llama", False), ("llama", True), ("gpt2", False), ("gpt2", True)])
def test_routing_rule_per_arch(name: str, arch: str, tied: bool) -> None:
    model = tiny_model(arch, tied)
    roles = param_roles(model)
    assert ("lm_head.weight" in roles) == (not tied)
    optimizer = build_optimizer(model, optim_cfg(name), CPU)
    groups = optimizer.param_groups
    # Every parameter lands in exactly one group.
    seen = [id(p) for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters()) and len(seen) == len(set(seen))
    owner = {id(p): g for g in groups for p in g["params"]}
    for pname, param in model.named_parameters():
        group = owner[id(param)]
        expected_optimizer, decayed = EXPECTED[name][roles[pname]]
        assert (group["optimizer"], group["role"]) == (expected_optimizer, roles[pname].value), pname
        assert group["weight_decay"] == (optim_cfg(name).weight_decay if decayed else 0.0), pname
    # The groups are handed to the right torch optimizers.
    parts = optimizer.parts if isinstance(optimizer, MultiOptimizer) else [optimizer]
    for part in parts:
        for group in part.param_groups:
            assert isinstance(part, TORCH_CLASS[group["optimizer"]])
    if name == "muon":
        (muon,) = [p for p in parts if isinstance(p, torch.optim.Muon)]
        hidden = [p for n, p in model.named_parameters() if roles[n] is H]
        muon_params = [p for g in muon.param_groups for p in g["params"]]
        assert [id(p) for p in muon_params] == [id(p) for p in hidden]
        assert all(p.ndim == 2 for p in muon_params)


def test_muon_gets_only_2d_hidden_matrices() -> None:
    """A hidden tensor that is not a matrix (e.g. stacked MoE experts) goes to AdamW."""
    model = tiny_model()
    model.experts = tag(nn.Parameter(torch.zeros(3, 8, 8)), ParamSpec(H, InitKind.ZEROS))
    optimizer = build_optimizer(model, optim_cfg("muon"), CPU)
    muon, adamw = optimizer.parts
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert all(p.ndim == 2 for g in muon.param_groups for p in g["params"])
    assert any(p is model.experts for g in adamw.param_groups for p in g["params"])


def test_decay_roles_and_lr_multipliers_are_configurable() -> None:
    model = tiny_model()
    cfg = optim_cfg("muon", no_decay_roles=["vector", "embedding"], muon_lr=0.02)
    groups = {g["name"]: g for g in param_groups(model, cfg, lr_multipliers={R: 0.5})}
    assert groups["adamw.embedding"]["weight_decay"] == 0.0 and groups["muon.hidden"]["weight_decay"] == 0.1
    assert groups["muon.hidden"]["base_lr"] == 0.02 and groups["adamw.vector"]["base_lr"] == cfg.lr
    assert groups["adamw.readout"]["base_lr"] == 0.5 * cfg.lr
    optimizer = build_optimizer(model, cfg, CPU, lr_multipliers={R: 0.5})
    set_lr(optimizer, 0.25)  # a schedule multiplier keeps the groups' ratios
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"muon.hidden": 0.005, "adamw.embedding": 0.25 * cfg.lr,
                   "adamw.readout": 0.125 * cfg.lr, "adamw.vector": 0.25 * cfg.lr}


def _loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())


@pytest.mark.parametrize("name, lr", [("adamw", 3e-3), ("adam", 3e-3), ("muon", 3e-3), ("lion", 1e-3),
                                      ("sgd", 0.1), ("nadamw", 3e-3), ("ademamix", 3e-3), ("soap", 3e-3)])
def test_each_optimizer_decreases_the_loss(name: str, lr: float) -> None:
    model = tiny_model()
    batch = torch.randint(0, 64, (8, 17), generator=torch.Generator().manual_seed(1))
    optimizer = build_optimizer(model, optim_cfg(name, lr=lr), CPU)
    set_lr(optimizer, 1.0)
    losses = []
    for _ in range(20):
        loss = _loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3, losses


def test_lion_update_by_hand() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = Lion([p], lr=0.1, betas=(0.9, 0.99), weight_decay=0.5)
    # Step 1: m = 0, so u = sign(0.1 * g).
    p.grad = torch.tensor([0.3, -0.2])
    opt.step()
    # p = p * (1 - 0.1 * 0.5) - 0.1 * sign(g) = [0.95 - 0.1, -1.9 + 0.1]
    assert p.tolist() == pytest.approx([0.85, -1.8], abs=1e-7)
    m = [0.01 * 0.3, 0.01 * -0.2]  # m = 0.99 * 0 + 0.01 * g
    assert opt.state[p]["exp_avg"].tolist() == pytest.approx(m, abs=1e-9)
    # Step 2: g flips sign but is small: c = 0.9 * m + 0.1 * g decides the sign.
    p.grad = torch.tensor([-0.001, -0.5])
    opt.step()
    c = [0.9 * m[0] + 0.1 * -0.001, 0.9 * m[1] + 0.1 * -0.5]  # [+0.0026, -0.0518]
    expected = [0.85 * 0.95 - 0.1 * (1 if c[0] > 0 else -1), -1.8 * 0.95 - 0.1 * (1 if c[1] > 0 else -1)]
    assert p.tolist() == pytest.approx(expected, abs=1e-6)
    assert opt.state[p]["exp_avg"].tolist() == pytest.approx([0.99 * m[0] + 0.01 * -0.001,
                                                              0.99 * m[1] + 0.01 * -0.5], abs=1e-9)


@pytest.mark.parametrize("bad, field", [({"name": "adamx"}, "optim.name"), ({"momentum": 1.5}, "optim.momentum"),
                                        ({"no_decay_roles": ["bias"]}, "optim.no_decay_roles"),
                                        ({"name": "sgd", "momentum": 0.0, "nesterov": True}, "optim.nesterov"),
                                        ({"muon_adjust_lr": "moonshot"}, "optim.muon_adjust_lr"),
                                        ({"name": "lion", "fused": True}, "optim.fused")])
def test_bad_optim_config_names_the_field(bad: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        to_run_config({"optim": bad})


def _train(model: nn.Module, optimizer: torch.optim.Optimizer, steps: range) -> list[float]:
    losses = []
    for step in steps:
        set_lr(optimizer, 1.0 / step)  # a schedule that changes every step
        batch = torch.randint(0, 64, (4, 17), generator=torch.Generator().manual_seed(step))
        loss = _loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("name", ["muon", "lion", "sgd", "adam", "nadamw", "ademamix", "soap"])
def test_resume_from_saved_state_is_bit_identical(name: str, tmp_path) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        cfg = optim_cfg(name, nesterov=True) if name == "sgd" else optim_cfg(name)
        model = tiny_model()
        optimizer = build_optimizer(model, cfg, CPU)
        uninterrupted = _train(model, optimizer, range(1, 9))
        final = {k: v.clone() for k, v in model.state_dict().items()}

        model = tiny_model()
        optimizer = build_optimizer(model, cfg, CPU)
        first = _train(model, optimizer, range(1, 5))
        path = save_checkpoint(tmp_path, 4, {"step": 4, "model": model.state_dict(),
                                             "optimizer": optimizer.state_dict()}, keep_last=1)
        del model, optimizer
        state = load_checkpoint(path)  # weights_only=True: the optimizer state must be plain data
        model = tiny_model()
        optimizer = build_optimizer(model, cfg, CPU)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        resumed = first + _train(model, optimizer, range(5, 9))
        assert resumed == uninterrupted
        for key, value in model.state_dict().items():
            assert torch.equal(value, final[key]), key
    finally:
        torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("name", ["adamw", "adam", "muon", "lion", "sgd", "nadamw", "ademamix", "soap"])
def test_shipped_optim_configs_validate(name: str) -> None:
    assert optim_cfg(name).name == name


def test_each_optimizer_owns_its_fields() -> None:
    from harness.optimizers import OPTIMIZERS, MuonConfig

    assert OPTIMIZERS.names() == ("adamw", "adam", "muon", "lion", "sgd", "nadamw", "ademamix", "soap")
    with pytest.raises(ConfigError, match=r"optim.muon_lr: .*optim.name=muon"):
        to_run_config({"optim": {"name": "adamw", "muon_lr": 0.02}})
    with pytest.raises(ConfigError, match=r"optim.momentum: .*optim.name=muon/sgd"):
        optim_config("adamw", momentum=0.9)
    with pytest.raises(ConfigError, match="optim.name: got 'adagrad'"):
        optim_config("adagrad")
    muon = optim_config("muon", lr=1e-2, muon_lr=0.02, betas=[0.8, 0.9])
    assert isinstance(muon, MuonConfig) and muon.base_lr == 0.02
    # Muon's non-matrix parameters go to AdamW with Muon's lr, betas and weight decay.
    fallback = muon.fallback()
    assert (fallback.name, fallback.lr, fallback.betas, fallback.weight_decay) == ("adamw", 1e-2, [0.8, 0.9], 0.1)
