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
| nadamw     | NAdamWConfig   | every parameter (torch.optim.NAdam, decoupled decay)      |
| ademamix   | AdEMAMixConfig | every parameter (pytorch_optimizer.AdEMAMix)              |
| soap       | SOAPConfig     | every parameter (pytorch_optimizer.SOAP; 1-D: plain Adam) |

Adding an optimizer: a class here with `@OPTIMIZERS.register("name")` and a `build(groups, device)`,
plus conf/optim/name.yaml. `hidden_matrices_only = True` with a `fallback()` config routes only 2-D
HIDDEN matrices to it (how Muon is registered).

Optimizer FLOPs (matched compute): `step_flops(shapes)` is the cost of one step over parameters of
those shapes. Every optimizer pays `elementwise_flops` per parameter element (a rough count of the
arithmetic in its update formula, e.g. AdamW's two moment updates, the sqrt/eps/divide and the
decayed parameter update: ~14); next to the model's 6 FLOPs per parameter per *token* this is
negligible (batch_size * seq_len tokens per step). Two optimizers add matrix work that is not:

* Muon, per m x n matrix (r = min(m, n), c = max(m, n)), every step, `muon_ns_steps` Newton-Schulz
  iterations of X X^T (2 r^2 c), (b A + c A^2) (2 r^3, the A @ A) and that times X (2 r^2 c):
  ns_steps * (4 r^2 c + 2 r^3).
* SOAP, per preconditioned dimension d of a tensor with n elements (every dimension of size <=
  `max_precondition_dim`; 1-D tensors only with `precondition_1d`): every step three rotations
  (gradient and first moment into the eigenbasis, the update back: 2 n d each) and the statistics
  update (G G^T along d: 2 n d, its EMA: 3 d^2); every `precondition_frequency` steps one power
  iteration (Q' = GG @ Q: 2 d^3) and a QR of the d x d result (Householder 4/3 d^3 + forming Q
  4/3 d^3), amortized per step. The one-time eigendecomposition at the first step is left out
  (once per run, not per step).

harness.optim.routing.step_flops(model, cfg) splits a model's parameters as the routing does
(Muon's matrices vs its AdamW fallback) and adds up each part's `step_flops`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Sequence

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
    # FLOPs per parameter element of one step's elementwise arithmetic (see the module docstring).
    elementwise_flops: ClassVar[int] = 14

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

    def step_flops(self, shapes: Sequence[Sequence[int]]) -> float:
        """FLOPs of one step of this optimizer over parameters of these shapes (the ones routed to
        it): the elementwise count by default; matrix methods add their matrix work."""
        return float(self.elementwise_flops * sum(prod(shape) for shape in shapes))

    @abstractmethod
    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        """The torch optimizer over `groups` (each with `base_lr`; harness.optim.routing makes them)."""


def with_lr(groups: list[dict]) -> list[dict]:
    return [{**g, "lr": g["base_lr"]} for g in groups]


@dataclass
class _Moments(OptimConfig):
    """Adam-family fields: the moments' decay rates and the denominator's epsilon."""

    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8

    def validate(self) -> None:
        super().validate()
        _check_betas(self.betas)
        require(self.eps > 0, "optim.eps", "must be positive")


@dataclass
class _Adaptive(_Moments):
    """Adam-family fields of the torch optimizers that have fused kernels."""

    # None: fused kernels on CUDA, foreach elsewhere.
    fused: Optional[bool] = None

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
    # Momentum EMA and Nesterov mix (6), the normalization before Newton-Schulz (3), decay and update (3).
    elementwise_flops: ClassVar[int] = 12

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

    def step_flops(self, shapes: Sequence[Sequence[int]]) -> float:
        """Newton-Schulz per m x n matrix: ns_steps * (4 r^2 c + 2 r^3), r = min(m, n), c = max(m, n)
        (X X^T, A @ A, B @ X per iteration), plus the elementwise work."""
        total = super().step_flops(shapes)
        for shape in shapes:
            if len(shape) != 2:
                raise ValueError(f"muon updates 2-D matrices only; got a parameter of shape {tuple(shape)}")
            r, c = min(shape), max(shape)
            total += self.muon_ns_steps * (4 * r * r * c + 2 * r ** 3)
        return float(total)

    def fallback(self) -> OptimConfig:
        return AdamWConfig(lr=self.lr, weight_decay=self.weight_decay, no_decay_roles=list(self.no_decay_roles),
                           betas=list(self.betas), eps=self.eps, fused=self.fused)

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        import torch

        _reject_dtensors(groups, "muon")
        return torch.optim.Muon(with_lr(groups), lr=self.lr, weight_decay=self.weight_decay, momentum=self.momentum,
                                nesterov=self.nesterov, ns_steps=self.muon_ns_steps, adjust_lr_fn=self.muon_adjust_lr)


@OPTIMIZERS.register("lion")
@dataclass
class LionConfig(OptimConfig):
    """Lion (harness/optim/lion.py): betas are (interpolation beta1, momentum beta2)."""

    name: str = "lion"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])

    elementwise_flops: ClassVar[int] = 8  # interpolation (3), sign (1), decay and update (2), momentum (2)

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

    elementwise_flops: ClassVar[int] = 4  # momentum (2) and update (2)

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        import torch

        # SGD's weight decay is an L2 term added to the gradient (coupled), as in torch.optim.SGD.
        kwargs: dict[str, Any] = {"fused": True} if self.fused else {}
        return torch.optim.SGD(with_lr(groups), lr=self.lr, momentum=self.momentum, nesterov=self.nesterov, **kwargs)


def _reject_dtensors(groups: list[dict], name: str) -> None:
    """Matrix preconditioners (Newton-Schulz, SOAP's rotations) need each full matrix on one rank."""
    from torch.distributed.tensor import DTensor

    if any(isinstance(p, DTensor) for g in groups for p in g["params"]):
        raise ConfigError(f"optim.name: {name} is not supported with train.parallel=fsdp (it needs each full "
                          f"matrix); use train.parallel=ddp, or optim.name=adamw under FSDP")


@OPTIMIZERS.register("nadamw")
@dataclass
class NAdamWConfig(_Moments):
    """NAdamW: Adam with a Nesterov first moment and AdamW's decoupled weight decay
    (torch.optim.NAdam with decoupled_weight_decay=True). With g the gradient, m and v Adam's moments
    at step t, the update direction is

        b1 * m_t / (1 - b1^(t+1)) + (1 - b1) * g / (1 - b1^t),  divided by sqrt(v_t / (1 - b2^t)) + eps

    which is optax's nadamw (the form Wen et al. 2025 tune). torch additionally warms the momentum up,
    mu_t = b1 * (1 - 0.5 * 0.96^(t * momentum_decay)) (Dozat 2016); `momentum_decay: null` (default)
    turns that off (mu_t = b1 at every step), a number keeps torch's schedule (its default: 0.004).
    """

    name: str = "nadamw"
    momentum_decay: Optional[float] = None

    elementwise_flops: ClassVar[int] = 18  # AdamW's 14 plus the Nesterov mix of m and g

    # A decay rate this large makes 0.96^(t * rate) exactly 0.0 from t = 1 on: mu_t = b1.
    _NO_MOMENTUM_WARMUP: ClassVar[float] = 1e9

    def validate(self) -> None:
        super().validate()
        if self.momentum_decay is not None:
            require(self.momentum_decay > 0, "optim.momentum_decay",
                    "must be positive (torch's default 0.004), or null for a constant beta1")

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        import torch

        decay = self.momentum_decay if self.momentum_decay is not None else self._NO_MOMENTUM_WARMUP
        return torch.optim.NAdam(with_lr(groups), lr=self.lr, betas=tuple(self.betas), eps=self.eps,
                                 momentum_decay=decay, decoupled_weight_decay=True, foreach=True)


@OPTIMIZERS.register("ademamix")
@dataclass
class AdEMAMixConfig(_Moments):
    """AdEMAMix (Pagliardini, Ablin, Grangier 2024): AdamW plus a slow momentum (decay `beta3`)
    added with weight `alpha`: the update is (m1 / (1 - b1^t) + alpha * m3) / (sqrt(v / (1 - b2^t)) + eps),
    with AdamW's decoupled weight decay (pytorch_optimizer.AdEMAMix). `t_alpha_beta3` (steps) warms
    alpha up linearly and beta3 up from beta1 (the paper sets it to the run's length to keep early
    training stable); null: no warmup.
    """

    name: str = "ademamix"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    beta3: float = 0.9999
    alpha: float = 5.0
    t_alpha_beta3: Optional[int] = None

    elementwise_flops: ClassVar[int] = 20  # AdamW's 14, the slow EMA (3) and the mix (3)

    def validate(self) -> None:
        super().validate()
        require(0 <= self.beta3 < 1, "optim.beta3", "must be in [0, 1), e.g. 0.9999")
        require(self.alpha >= 0, "optim.alpha", "must be >= 0, e.g. 5.0")
        if self.t_alpha_beta3 is not None:
            require(self.t_alpha_beta3 > 0, "optim.t_alpha_beta3",
                    "must be a positive number of steps (e.g. train.steps), or null for no warmup")

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        from pytorch_optimizer import AdEMAMix

        return AdEMAMix(with_lr(groups), lr=self.lr, betas=(self.betas[0], self.betas[1], self.beta3),
                        weight_decay=self.weight_decay, weight_decouple=True, alpha=self.alpha,
                        t_alpha_beta3=self.t_alpha_beta3, eps=self.eps)


@OPTIMIZERS.register("soap")
@dataclass
class SOAPConfig(_Moments):
    """SOAP (Vyas et al. 2024, "SOAP: Improving and Stabilizing Shampoo using Adam"): Adam run in the
    eigenbasis of Shampoo's preconditioner (pytorch_optimizer.SOAP). Per tensor, each dimension of size
    <= `max_precondition_dim` keeps the statistics G G^T along it (EMA with `shampoo_beta`, null: betas[1])
    and its eigenbasis, refreshed every `precondition_frequency` steps by one power iteration + QR;
    larger dimensions, and 1-D tensors unless `precondition_1d`, stay in the identity basis (plain Adam
    there). Decoupled weight decay as AdamW. As in the reference implementation the first step only
    gathers statistics (no update).

    Routing: SOAP takes every parameter, embeddings, readout and vectors included, as the reference
    implementation does (its 1-D and oversized dimensions fall back to Adam inside the optimizer),
    unlike Muon, whose orthogonalized update is meant for hidden matrices only.
    """

    name: str = "soap"
    betas: list[float] = field(default_factory=lambda: [0.95, 0.95])
    shampoo_beta: Optional[float] = None
    precondition_frequency: int = 10
    max_precondition_dim: int = 10000
    precondition_1d: bool = False

    def validate(self) -> None:
        super().validate()
        if self.shampoo_beta is not None:
            require(0 <= self.shampoo_beta < 1, "optim.shampoo_beta", "must be in [0, 1), or null for betas[1]")
        require(self.precondition_frequency > 0, "optim.precondition_frequency",
                "must be a positive number of steps, e.g. 10")
        require(self.max_precondition_dim > 0, "optim.max_precondition_dim", "must be positive, e.g. 10000")

    def _preconditioned_dims(self, shape: Sequence[int]) -> list[int]:
        if len(shape) == 1 and not self.precondition_1d:
            return []
        return [d for d in shape if d <= self.max_precondition_dim]

    def step_flops(self, shapes: Sequence[Sequence[int]]) -> float:
        """Per preconditioned dimension d of a tensor with n elements: 8 n d + 3 d^2 every step
        (three rotations, the statistics and their EMA) and (2 + 8/3) d^3 every precondition_frequency
        steps (power iteration + QR), amortized; plus the elementwise work."""
        total = super().step_flops(shapes)
        for shape in shapes:
            n = prod(shape)
            for d in self._preconditioned_dims(shape):
                total += 8 * n * d + 3 * d * d + (2 + 8 / 3) * d ** 3 / self.precondition_frequency
        return float(total)

    def build(self, groups: list[dict], device: "torch.device") -> "torch.optim.Optimizer":
        from pytorch_optimizer import SOAP

        _reject_dtensors(groups, "soap")
        return SOAP(with_lr(groups), lr=self.lr, betas=(self.betas[0], self.betas[1]), shampoo_beta=self.shampoo_beta,
                    weight_decay=self.weight_decay, precondition_frequency=self.precondition_frequency,
                    max_precondition_dim=self.max_precondition_dim, precondition_1d=self.precondition_1d,
                    eps=self.eps)
