"""Ladder rules: small frozen objects, each computing one hyperparameter of a run from N
(parameters, as the recipe counts them) and D (tokens), registered by name per kind.

A new rule is one class with a `name` and the method of its kind (`LRRule.peak_lr`,
`BatchRule.batch_size`, `WeightDecayRule.weight_decay`, `WarmupRule.warmup_steps`), decorated with
`@register_rule(<KIND>_RULES)`; recipes (harness/ladder/recipe.py) then accept it. The formulas and
their sources are in recipe.py's docstring. `PowerSchedulerFit` is not a per-run rule but the
fitted constants of the Power scheduler, which the recipe turns into `schedule=power` fields.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Mapping, Protocol, TypeVar

from harness.ladder.errors import LadderError

# Step Law (Li et al. 2025) published fits: lr = 1.79 N^-0.713 D^0.307, B = 0.58 D^0.571 (tokens).
STEP_LAW_LR = (1.79, -0.713, 0.307)
STEP_LAW_BATCH = (0.58, 0.571)


@dataclass(frozen=True)
class Power:
    """value = coefficient * N^exp_N * D^exp_D."""

    coefficient: float
    exp_N: float = 0.0
    exp_D: float = 0.0

    def __call__(self, N: float, D: float) -> float:
        return self.coefficient * N**self.exp_N * D**self.exp_D

    def __str__(self) -> str:
        return f"{self.coefficient:g} N^{self.exp_N:g} D^{self.exp_D:g}"


class LRRule(Protocol):
    name: ClassVar[str]

    def peak_lr(self, n: float, tokens: float) -> float:
        """Peak LR of a run of N = n parameters on `tokens` tokens."""


class BatchRule(Protocol):
    name: ClassVar[str]

    def batch_size(self, n: float, tokens: float, seq_len: int) -> int:
        """Sequences per step for a run of N = n parameters on about `tokens` tokens."""


class WeightDecayRule(Protocol):
    name: ClassVar[str]

    def weight_decay(self, n: float, tokens: float, batch_tokens: int, lr: float) -> float:
        """Weight decay of a run (tokens and batch_tokens in tokens, lr its peak LR)."""


class WarmupRule(Protocol):
    name: ClassVar[str]

    def warmup_steps(self, n: float, tokens_per_step: int, steps: int) -> int:
        """Warmup steps of a run of `steps` steps."""


LR_RULES: dict[str, type] = {}
BATCH_RULES: dict[str, type] = {}
WEIGHT_DECAY_RULES: dict[str, type] = {}
WARMUP_RULES: dict[str, type] = {}
# recipe field -> the registry its rule must come from
RULE_REGISTRIES = {"lr": LR_RULES, "batch": BATCH_RULES, "weight_decay": WEIGHT_DECAY_RULES, "warmup": WARMUP_RULES}

T = TypeVar("T", bound=type)


def register_rule(registry: dict[str, type]) -> Callable[[T], T]:
    def add(cls: T) -> T:
        if cls.name in registry:
            raise ValueError(f"rule name {cls.name!r} is already registered by {registry[cls.name].__name__}")
        registry[cls.name] = cls
        return cls
    return add


def make_rule(kind: str, name: str, **params: Any) -> Any:
    """The rule registered as `name` for `kind` (lr, batch, weight_decay, warmup), built with `params`."""
    registry = RULE_REGISTRIES.get(kind)
    if registry is None:
        raise LadderError(f"rule kind {kind!r}: choose one of {', '.join(RULE_REGISTRIES)}")
    if name not in registry:
        raise LadderError(f"{kind} rule {name!r}: choose one of {', '.join(registry)}")
    return registry[name](**params)


def describe_rule(rule: Any) -> str:
    """`name(field=value, ...)` with compact numbers, for plan titles and error messages."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        return str(v) if isinstance(v, (int, str, Power)) else type(v).__name__
    return f"{rule.name}({', '.join(f'{f.name}={fmt(getattr(rule, f.name))}' for f in fields(rule))})"


def require_positive(value: float, name: str) -> None:
    if not value > 0:
        raise LadderError(f"{name}: must be positive, got {value!r}")


@register_rule(LR_RULES)
@dataclass(frozen=True)
class PowerLawLR:
    """lr = lr_ref (N / n_ref)^-exponent (the exponent of OLMo-core's ladder by default)."""

    name: ClassVar[str] = "power"
    lr_ref: float = 3e-3
    n_ref: float = 1e6
    exponent: float = 1.0 / 3.0

    def __post_init__(self) -> None:
        require_positive(self.lr_ref, "lr.lr_ref")
        require_positive(self.n_ref, "lr.n_ref")

    def peak_lr(self, n: float, tokens: float) -> float:
        return self.lr_ref * (n / self.n_ref) ** (-self.exponent)


def _fitted_power(fit: Any, key: str) -> Power:
    """`fit[key]` (from `StepLawResult.summary()`) or `fit.<key>.as_dict()` (a `StepLawResult`) as
    a Power. Duck-typed, so the ladder does not import the fitting code. The batch law must say
    its unit: the ladder reads B_opt in tokens per step (`batch_unit: "tokens"`, what
    `python -m harness.fit steplaw` writes); a law in sequences per step would be read as tokens
    and give a batch seq_len times too small, so it is refused."""
    if key == "batch":
        unit = fit.get("batch_unit") if isinstance(fit, Mapping) else "tokens"  # a StepLawResult is in tokens
        if unit != "tokens":
            raise LadderError(f"step law fit: 'batch_unit' is {unit!r}; the ladder needs B_opt in tokens per step. "
                              "Fix: refit with `python -m harness.fit steplaw` on a table with B in tokens (as "
                              "harness.collect writes it; or --batch-unit sequences --seq-len L converts), or add "
                              "\"batch_unit\": \"tokens\" if the law already is in tokens")
    try:
        law = fit[key] if isinstance(fit, Mapping) else getattr(fit, key).as_dict()
        return Power(float(law["coefficient"]), float(law.get("exponent_N", 0.0)), float(law.get("exponent_D", 0.0)))
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise LadderError(f"step law fit: needs {key!r} with a coefficient and exponent_N / exponent_D "
                          f"(StepLawResult or its summary() JSON); got {type(e).__name__}: {e}") from e


@register_rule(LR_RULES)
@dataclass(frozen=True)
class StepLawLR:
    """lr = c N^a D^b: Step Law's published fit, or a fitted one (`from_fit`)."""

    name: ClassVar[str] = "step-law"
    law: Power = field(default_factory=lambda: Power(*STEP_LAW_LR))

    @classmethod
    def from_fit(cls, fit: Any) -> "StepLawLR":
        return cls(law=_fitted_power(fit, "lr"))

    def peak_lr(self, n: float, tokens: float) -> float:
        return self.law(n, tokens)


@register_rule(BATCH_RULES)
@dataclass(frozen=True)
class StepLawBatch:
    """B = law(N, D) tokens, rounded to a power-of-two number of sequences in [min_batch, max_batch]."""

    name: ClassVar[str] = "step-law"
    law: Power = field(default_factory=lambda: Power(STEP_LAW_BATCH[0], 0.0, STEP_LAW_BATCH[1]))
    min_batch: int = 1  # sequences
    max_batch: int = 1024

    def __post_init__(self) -> None:
        require_positive(self.min_batch, "batch.min_batch")
        require_positive(self.max_batch, "batch.max_batch")
        if self.min_batch > self.max_batch:
            raise LadderError(f"batch.min_batch: {self.min_batch} exceeds batch.max_batch={self.max_batch}")

    def with_fit(self, fit: Any) -> "StepLawBatch":
        """This rule with the batch law of a fitted Step Law (same bounds)."""
        return replace(self, law=_fitted_power(fit, "batch"))

    def batch_size(self, n: float, tokens: float, seq_len: int) -> int:
        seqs = max(self.law(n, tokens) / seq_len, 1.0)
        return int(min(max(2 ** round(math.log2(seqs)), self.min_batch), self.max_batch))


@register_rule(WEIGHT_DECAY_RULES)
@dataclass(frozen=True)
class ConstantWeightDecay:
    name: ClassVar[str] = "constant"
    value: float = 0.1

    def __post_init__(self) -> None:
        if not self.value >= 0:
            raise LadderError(f"weight_decay.value: must be >= 0, got {self.value!r}")

    def weight_decay(self, n: float, tokens: float, batch_tokens: int, lr: float) -> float:
        return self.value


@register_rule(WEIGHT_DECAY_RULES)
@dataclass(frozen=True)
class PowerLinesWeightDecay:
    """lambda = B / (lr D tau_opt(D/N)) from a fitted Power Lines result (harness.fit's
    `PowerLinesResult`, or anything with its `optimal_weight_decay(N, D, B, lr)`)."""

    name: ClassVar[str] = "power-lines"
    result: Any

    def __post_init__(self) -> None:
        if not callable(getattr(self.result, "optimal_weight_decay", None)):
            raise LadderError("weight_decay.result: needs a fitted Power Lines result (fit_power_lines), "
                              f"got {type(self.result).__name__}")

    def weight_decay(self, n: float, tokens: float, batch_tokens: int, lr: float) -> float:
        return float(self.result.optimal_weight_decay(n, tokens, batch_tokens, lr))


@register_rule(WARMUP_RULES)
@dataclass(frozen=True)
class ParamTokensWarmup:
    """Warm up over tokens_per_param x N tokens, at most max_fraction of the steps."""

    name: ClassVar[str] = "param-tokens"
    tokens_per_param: float = 1.0
    max_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not self.tokens_per_param >= 0:
            raise LadderError(f"warmup.tokens_per_param: must be >= 0, got {self.tokens_per_param!r}")
        if not 0 <= self.max_fraction < 1:
            raise LadderError(f"warmup.max_fraction: must be in [0, 1), got {self.max_fraction!r}")

    def warmup_steps(self, n: float, tokens_per_step: int, steps: int) -> int:
        return max(min(round(self.tokens_per_param * n / tokens_per_step), int(self.max_fraction * steps)), 0)


@dataclass(frozen=True)
class PowerSchedulerFit:
    """The Power scheduler's lr = min(lr_max, a * beta * n^b) with a fitted (a, b): beta in sequences
    per step, n in tokens seen (harness/schedules.py PowerSchedule). `decay_fraction`: the final
    cooldown, as in the paper (its last 10% of steps decay the LR), as `power_decay_fraction`."""

    a: float
    b: float
    decay_fraction: float = 0.1

    def __post_init__(self) -> None:
        require_positive(self.a, "power_scheduler.a")
        if not self.b < 0:
            raise LadderError(f"power_scheduler.b: must be negative (the LR falls as tokens accumulate), "
                              f"got {self.b!r}")
        if not 0 <= self.decay_fraction <= 1:
            raise LadderError(f"power_scheduler.decay_fraction: must be in [0, 1], got {self.decay_fraction!r}")

    @classmethod
    def from_fit(cls, fit: Any, decay_fraction: float = 0.1) -> "PowerSchedulerFit":
        """From `python -m harness.fit powersched`'s JSON (or a `PowerSchedulerResult`). The JSON must
        say its units: a is for beta in sequences and n in tokens, what schedule.power_a expects; a fit
        with beta in tokens would give an LR seq_len times too large, so it is refused."""
        summary = fit if isinstance(fit, Mapping) else getattr(fit, "summary", lambda: None)()
        if not isinstance(summary, Mapping):
            raise LadderError(f"power scheduler fit: needs the JSON of `python -m harness.fit powersched` or a "
                              f"PowerSchedulerResult, got {type(fit).__name__}")
        units = (summary.get("batch_unit"), summary.get("tokens_unit"))
        if units != ("sequences", "tokens"):
            raise LadderError(f"power scheduler fit: units (batch_unit, tokens_unit) are {units}; the Power scheduler "
                              "needs a for beta in sequences per step and n in tokens. Fix: refit with "
                              "`python -m harness.fit powersched` (B in tokens per step + --seq-len converts)")
        try:
            return cls(a=float(summary["a"]), b=float(summary["b"]), decay_fraction=decay_fraction)
        except (KeyError, TypeError, ValueError) as e:
            raise LadderError(f"power scheduler fit: needs numbers 'a' and 'b'; got {type(e).__name__}: {e}") from e

    def schedule_fields(self) -> tuple[tuple[str, float], ...]:
        return (("power_a", self.a), ("power_b", self.b), ("power_decay_fraction", self.decay_fraction))
