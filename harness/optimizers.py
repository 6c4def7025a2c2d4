"""Optimizers: one registered config class per optimizer, owning its fields, their validation and
how it builds the torch optimizer. Pure Python at import time (torch is imported inside `build`),
so harness.config can import it; the role routing and grouping live in harness/optim/routing.py.

| optim.name | class          | updates                                                   |
|------------|----------------|-----------------------------------------------------------|
| adamw      | AdamWConfig    | every parameter                                           |
| adam       | AdamConfig     | every parameter (coupled L2 weight decay)                 |
| muon       | MuonConfig     | 2-D HIDDEN matrices; everything else AdamW (`fallback()`) |
| lion       | LionConfig     | every parameter                                           |
| sgd        | SGDConfig      | every parameter (coupled L2 weight decay)                 |

Adding an optimizer: a class here with `@OPTIMIZERS.register("name")` and a `build(groups, device)`,
plus conf/optim/name.yaml. `hidden_matrices_only = True` with a `fallback()` config routes only 2-D
HIDDEN matrices to it (how Muon is registered).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from harness.checks import ConfigError, one_of, require
from harness.registry import Registry

if TYPE_CHECKING:
    import torch

PARAM_ROLES = ("embedding", "hidden", "readout", "vector")  # harness.models.roles.ParamRole values

OPTIMIZERS: Registry["OptimConfig"] = Registry("optim.name")


@dataclass
class OptimConfig(ABC):
    """Fields every optimizer has. Every parameter role except those in `no_decay_roles` gets
    `weight_decay`."""

    name: str = ""
    lr: float = 3e-3
    weight_decay: float = 0.1
    # Parameter roles that get no weight decay: any of embedding, hidden, readout, vector.
    no_decay_roles: list[str] = field(default_factory=lambda: ["vector"])

    # Route only 2-D HIDDEN matrices to this optimizer and everything else to `fallback()`.
    hidden_matrices_only: ClassVar[bool] = False

    def validate(self) -> None:
        require(type(self) is OPTIMIZERS.get(self.name), "optim.name",
                f"{self.name!r} does not match the class {type(self).__name__}; build optimizer configs "
                "with harness.config.optim_config(name, ...)")
        require(self.lr > 0, "optim.lr", "must be positive")
        require(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        for role in self.no_decay_roles:
            require(role in PARAM_ROLES, "optim.no_decay_roles", f"got {role!r}; list some of {', '.join(PARAM_ROLES)}")

    @property
    def base_lr(self) -> float:
        """Base LR of the parameters this optimizer updates (before muP multipliers and the schedule)."""
        return self.lr

    @property
    def width_independent_hidden_update(self) -> bool:
        """True when the update of a hidden matrix already has the size muP asks for at every width,
        so muP's hidden LR multiplier (1/width_mult) must not be applied on top."""
        return False

    def fallback(self) -> "OptimConfig":
        """The optimizer of the parameters a `hidden_matrices_only` optimizer does not take."""
        raise TypeError(f"{type(self).__name__} takes every parameter; it has no fallback")

    @abstractmethod
    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        """The torch optimizer over `groups` (each with `base_lr`; harness.optim.routing makes them)."""


def with_lr(groups: list[dict]) -> list[dict]:
    return [{**g, "lr": g["base_lr"]} for g in groups]


@dataclass
class _Adaptive(OptimConfig):
    """Adam-family fields."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    # None: fused kernels on CUDA, foreach elsewhere.
    fused: Optional[bool] = None

    def validate(self) -> None:
        super().validate()
        _check_betas(self.betas)
        require(self.eps > 0, "optim.eps", "must be positive")

    def fused_kwargs(self, device: "torch.device") -> dict[str, bool]:
        fused = self.fused if self.fused is not None else device.type == "cuda"
        # foreach and fused are mutually exclusive; foreach is the fast path on CPU.
        return {"fused": True} if fused else {"foreach": True}


def _check_betas(betas: list[float]) -> None:
    require(len(betas) == 2 and all(0 <= b < 1 for b in betas), "optim.betas",
            "must be two numbers in [0, 1), e.g. [0.9, 0.95]")


@dataclass
class _Momentum(OptimConfig):
    momentum: float = 0.9
    nesterov: bool = False

    def validate(self) -> None:
        super().validate()
        require(0 <= self.momentum < 1, "optim.momentum", "must be in [0, 1), e.g. 0.9")
        require(not (self.nesterov and self.momentum == 0), "optim.nesterov",
                "Nesterov needs optim.momentum > 0; set optim.nesterov=false or a momentum")


@OPTIMIZERS.register("adamw")
@dataclass
class AdamWConfig(_Adaptive):
    name: str = "adamw"

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        import torch

        return torch.optim.AdamW(with_lr(groups), lr=self.lr, betas=tuple(self.betas), eps=self.eps,
                                 **self.fused_kwargs(device))


@OPTIMIZERS.register("adam")
@dataclass
class AdamConfig(_Adaptive):
    name: str = "adam"

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        import torch

        # Adam's weight decay is an L2 term added to the gradient (coupled), as in torch.optim.Adam.
        return torch.optim.Adam(with_lr(groups), lr=self.lr, betas=tuple(self.betas), eps=self.eps,
                                **self.fused_kwargs(device))


@OPTIMIZERS.register("muon")
@dataclass
class MuonConfig(_Adaptive, _Momentum):
    """torch.optim.Muon on 2-D HIDDEN matrices; AdamW (betas, eps, fused) on everything else.

    LR convention: with `muon_adjust_lr=match_rms_adamw` (default, Moonshot's "Muon is Scalable")
    torch scales each matrix's LR by 0.2 * sqrt(max(fan_out, fan_in)), which matches the update RMS
    of AdamW, so one `lr` (and `weight_decay`) serves both parts. `muon_lr` overrides the matrices'
    base LR (e.g. 0.02 with `muon_adjust_lr=original`, Keller Jordan's sqrt(max(1, fan_out/fan_in))).
    """

    name: str = "muon"
    muon_lr: Optional[float] = None
    muon_ns_steps: int = 5
    muon_adjust_lr: str = "match_rms_adamw"  # match_rms_adamw | original

    hidden_matrices_only: ClassVar[bool] = True

    def validate(self) -> None:
        super().validate()
        if self.muon_lr is not None:
            require(self.muon_lr > 0, "optim.muon_lr", "must be positive, or null for optim.lr")
        require(self.muon_ns_steps > 0, "optim.muon_ns_steps", "must be a positive integer, e.g. 5")
        one_of(self.muon_adjust_lr, "optim.muon_adjust_lr", ("match_rms_adamw", "original"))

    @property
    def base_lr(self) -> float:
        return self.muon_lr if self.muon_lr is not None else self.lr

    @property
    def width_independent_hidden_update(self) -> bool:
        # muon_adjust_lr=original scales by sqrt(max(1, fan_out/fan_in)): the orthogonalized update has
        # the spectral norm muP asks for at every width. match_rms_adamw matches AdamW's update RMS.
        return self.muon_adjust_lr == "original"

    def fallback(self) -> OptimConfig:
        return AdamWConfig(lr=self.lr, weight_decay=self.weight_decay, no_decay_roles=list(self.no_decay_roles),
                           betas=list(self.betas), eps=self.eps, fused=self.fused)

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        import torch
        from torch.distributed.tensor import DTensor

        if any(isinstance(p, DTensor) for g in groups for p in g["params"]):
            raise ConfigError("optim.name: muon is not supported with train.parallel=fsdp (Newton-Schulz needs "
                              "each full matrix); use train.parallel=ddp, or optim.name=adamw under FSDP")
        return torch.optim.Muon(with_lr(groups), lr=self.lr, weight_decay=self.weight_decay, momentum=self.momentum,
                                nesterov=self.nesterov, ns_steps=self.muon_ns_steps, adjust_lr_fn=self.muon_adjust_lr)


@OPTIMIZERS.register("lion")
@dataclass
class LionConfig(OptimConfig):
    """Lion (harness/optim/lion.py): betas are (interpolation beta1, momentum beta2)."""

    name: str = "lion"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])

    def validate(self) -> None:
        super().validate()
        _check_betas(self.betas)

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        from harness.optim.lion import Lion

        return Lion(with_lr(groups), lr=self.lr, betas=(self.betas[0], self.betas[1]), weight_decay=self.weight_decay)


@OPTIMIZERS.register("sgd")
@dataclass
class SGDConfig(_Momentum):
    name: str = "sgd"
    fused: Optional[bool] = None

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        import torch

        # SGD's weight decay is an L2 term added to the gradient (coupled), as in torch.optim.SGD.
        kwargs: dict[str, Any] = {"fused": True} if self.fused else {}
        return torch.optim.SGD(with_lr(groups), lr=self.lr, momentum=self.momentum, nesterov=self.nesterov, **kwargs)
