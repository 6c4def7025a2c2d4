"""Ladder recipes: the named rules that turn a model size into a run (tokens, batch, LR, weight
decay, warmup, schedule).

A recipe (`LadderRecipe`) is a frozen, named object; each of its rules is a small frozen object
chosen by name from a registry (`LR_RULES`, `BATCH_RULES`, `WEIGHT_DECAY_RULES`, `WARMUP_RULES`),
so a new rule is one class with `@_register(...)`, never a new branch in the planner. `RECIPES`
holds the built-in recipes (`python -m harness.ladder dry-run --recipe NAME`).

N below is the recipe's `param_count`: non-embedding parameters by default (as in Kaplan and Step
Law), or "total"; every count comes from harness/models/flops.py. D is training tokens.

* tokens: D = tokens_per_param x N (default 20, Chinchilla); an isoFLOP plan instead sets
  D = C / flops_per_token for each budget C (harness/ladder/plan.py).
* batch, `StepLawBatch` ("step-law"): B = 0.58 D^0.571 tokens (Step Law's published B_opt), rounded
  to a power-of-two number of sequences within [min_batch, max_batch]; steps = round(D / B) (at
  least 1), and D becomes steps x B.
* peak LR, `PowerLawLR` ("power"): lr = lr_ref (N / n_ref)^-exponent with lr_ref 3e-3 at n_ref 1e6
  (our default 1M run) and exponent 1/3 (the exponent of OLMo-core's ladder). `StepLawLR`
  ("step-law"): lr = c N^a D^b with Step Law's published (1.79, -0.713, 0.307), or the constants of
  a fitted `StepLawResult` (`LadderRecipe.with_step_law`, or `--step-law-json` with its
  `summary()`); a fitted Step Law also gives the batch rule.
* weight decay, `ConstantWeightDecay` ("constant"): the optimizer default 0.1.
  `PowerLinesWeightDecay` ("power-lines"): from a fitted Power Lines result,
  lambda = B / (lr D tau_opt(D/N)), B and D in tokens (`LadderRecipe.with_power_lines`).
* warmup, `ParamTokensWarmup` ("param-tokens"): N tokens (OLMo-core's rule; 5% of a 20
  tokens/param run), at most max_fraction (25%) of the steps.
* schedule: `schedule` (cosine by default) with `min_lr_ratio` 0.1; other schedule fields keep
  their library defaults (`ladder_schedule`).

Built-in recipes: "default" (the rules above) and "step-law" (Step Law's published LR rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, ClassVar, Mapping, Protocol, TypeVar

from harness.config import ConfigError, ModelConfig, ScheduleConfig
from harness.ladder.errors import LadderError
from harness.models import flops

# Step Law (Li et al. 2025) published fits: lr = 1.79 N^-0.713 D^0.307, B = 0.58 D^0.571 (tokens).
STEP_LAW_LR = (1.79, -0.713, 0.307)
STEP_LAW_BATCH = (0.58, 0.571)

PARAM_COUNTS = ("non_embedding", "total")


def ladder_schedule(name: str, warmup_steps: int, min_lr_ratio: float) -> ScheduleConfig:
    """The one place the ladder builds a schedule config (planned runs and recipe checks alike)."""
    return ScheduleConfig(name=name, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)


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


# ----------------------------------------------------------------------------------------------
# Rules: what each kind of rule computes, and the registries that name them.


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
_REGISTRIES = {"lr": LR_RULES, "batch": BATCH_RULES, "weight_decay": WEIGHT_DECAY_RULES, "warmup": WARMUP_RULES}

T = TypeVar("T", bound=type)


def _register(registry: dict[str, type]) -> Callable[[T], T]:
    def add(cls: T) -> T:
        if cls.name in registry:
            raise ValueError(f"rule name {cls.name!r} is already registered by {registry[cls.name].__name__}")
        registry[cls.name] = cls
        return cls
    return add


def make_rule(kind: str, name: str, **params: Any) -> Any:
    """The rule registered as `name` for `kind` (lr, batch, weight_decay, warmup), built with `params`."""
    registry = _REGISTRIES.get(kind)
    if registry is None:
        raise LadderError(f"rule kind {kind!r}: choose one of {', '.join(_REGISTRIES)}")
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


def _require_positive(value: float, name: str) -> None:
    if not value > 0:
        raise LadderError(f"{name}: must be positive, got {value!r}")


@_register(LR_RULES)
@dataclass(frozen=True)
class PowerLawLR:
    """lr = lr_ref (N / n_ref)^-exponent (the exponent of OLMo-core's ladder by default)."""

    name: ClassVar[str] = "power"
    lr_ref: float = 3e-3
    n_ref: float = 1e6
    exponent: float = 1.0 / 3.0

    def __post_init__(self) -> None:
        _require_positive(self.lr_ref, "lr.lr_ref")
        _require_positive(self.n_ref, "lr.n_ref")

    def peak_lr(self, n: float, tokens: float) -> float:
        return self.lr_ref * (n / self.n_ref) ** (-self.exponent)


def _fitted_power(fit: Any, key: str) -> Power:
    """`fit[key]` (from `StepLawResult.summary()`) or `fit.<key>.as_dict()` (a `StepLawResult`) as
    a Power. Duck-typed, so the ladder does not import the fitting code."""
    try:
        law = fit[key] if isinstance(fit, Mapping) else getattr(fit, key).as_dict()
        return Power(float(law["coefficient"]), float(law.get("exponent_N", 0.0)), float(law.get("exponent_D", 0.0)))
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise LadderError(f"step law fit: needs {key!r} with a coefficient and exponent_N / exponent_D "
                          f"(StepLawResult or its summary() JSON); got {type(e).__name__}: {e}") from e


@_register(LR_RULES)
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


@_register(BATCH_RULES)
@dataclass(frozen=True)
class StepLawBatch:
    """B = law(N, D) tokens, rounded to a power-of-two number of sequences in [min_batch, max_batch]."""

    name: ClassVar[str] = "step-law"
    law: Power = field(default_factory=lambda: Power(STEP_LAW_BATCH[0], 0.0, STEP_LAW_BATCH[1]))
    min_batch: int = 1  # sequences
    max_batch: int = 1024

    def __post_init__(self) -> None:
        _require_positive(self.min_batch, "batch.min_batch")
        _require_positive(self.max_batch, "batch.max_batch")
        if self.min_batch > self.max_batch:
            raise LadderError(f"batch.min_batch: {self.min_batch} exceeds batch.max_batch={self.max_batch}")

    def with_fit(self, fit: Any) -> "StepLawBatch":
        """This rule with the batch law of a fitted Step Law (same bounds)."""
        return replace(self, law=_fitted_power(fit, "batch"))

    def batch_size(self, n: float, tokens: float, seq_len: int) -> int:
        seqs = max(self.law(n, tokens) / seq_len, 1.0)
        return int(min(max(2 ** round(math.log2(seqs)), self.min_batch), self.max_batch))


@_register(WEIGHT_DECAY_RULES)
@dataclass(frozen=True)
class ConstantWeightDecay:
    name: ClassVar[str] = "constant"
    value: float = 0.1

    def __post_init__(self) -> None:
        if not self.value >= 0:
            raise LadderError(f"weight_decay.value: must be >= 0, got {self.value!r}")

    def weight_decay(self, n: float, tokens: float, batch_tokens: int, lr: float) -> float:
        return self.value


@_register(WEIGHT_DECAY_RULES)
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


@_register(WARMUP_RULES)
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


# ----------------------------------------------------------------------------------------------
# Recipes


@dataclass(frozen=True)
class LadderRecipe:
    """A named set of ladder rules (see the module docstring). Change one rule with `replace`,
    e.g. `replace(RECIPES["default"], name="mine", lr=PowerLawLR(exponent=0.5))`."""

    name: str
    tokens_per_param: float = 20.0
    param_count: str = "non_embedding"  # non_embedding | total: the N of the rules
    lr: LRRule = field(default_factory=PowerLawLR)
    batch: BatchRule = field(default_factory=StepLawBatch)
    weight_decay: WeightDecayRule = field(default_factory=ConstantWeightDecay)
    warmup: WarmupRule = field(default_factory=ParamTokensWarmup)
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1

    def __post_init__(self) -> None:
        if not self.name:
            raise LadderError("recipe.name: give the recipe a name")
        _require_positive(self.tokens_per_param, "tokens_per_param")
        if self.param_count not in PARAM_COUNTS:
            raise LadderError(f"param_count: got {self.param_count!r}; choose one of {', '.join(PARAM_COUNTS)}")
        for kind, registry in _REGISTRIES.items():
            rule = getattr(self, kind)
            if type(rule) not in registry.values():
                raise LadderError(f"{kind}: got {type(rule).__name__}; use a registered {kind} rule "
                                  f"({', '.join(registry)}) or register yours in the registry")
        try:
            ladder_schedule(self.schedule, 0, self.min_lr_ratio).validate()
        except ConfigError as e:
            raise LadderError(f"recipe {self.name!r}: {e}") from e

    def param_basis(self, model: ModelConfig) -> int:
        """N of the rules for `model` (non-embedding or total parameters)."""
        return flops.num_params(model, include_embedding=self.param_count == "total")

    def with_step_law(self, fit: Any) -> "LadderRecipe":
        """LR and batch rules from a fitted `StepLawResult` (or its `summary()` dict)."""
        batch = self.batch if isinstance(self.batch, StepLawBatch) else StepLawBatch()
        return replace(self, lr=StepLawLR.from_fit(fit), batch=batch.with_fit(fit))

    def with_power_lines(self, result: Any) -> "LadderRecipe":
        """Weight decay from a fitted Power Lines result."""
        return replace(self, weight_decay=PowerLinesWeightDecay(result))

    def describe(self) -> str:
        return (f"recipe {self.name}: D = {self.tokens_per_param:g} x N ({self.param_count}); "
                f"lr {describe_rule(self.lr)}; batch {describe_rule(self.batch)}; "
                f"weight decay {describe_rule(self.weight_decay)}; warmup {describe_rule(self.warmup)}; "
                f"schedule {self.schedule} (min_lr_ratio {self.min_lr_ratio:g})")


RECIPES: dict[str, LadderRecipe] = {
    r.name: r for r in (
        LadderRecipe(name="default"),
        LadderRecipe(name="step-law", lr=StepLawLR()),
    )
}


def get_recipe(name: str) -> LadderRecipe:
    if name not in RECIPES:
        raise LadderError(f"recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return RECIPES[name]
