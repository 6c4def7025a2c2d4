"""Ladder recipes: the named rules that turn a model size into a run (tokens, batch, LR, weight
decay, warmup, schedule).

A recipe (`LadderRecipe`) is a frozen, named object; each of its rules is a small frozen object
(harness/ladder/rules.py) chosen by name from a registry (`LR_RULES`, `BATCH_RULES`,
`WEIGHT_DECAY_RULES`, `WARMUP_RULES`), so a new rule is one registered class, never a new branch in
the planner. `RECIPES` holds the built-in recipes (`python -m harness.ladder dry-run --recipe NAME`).

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
* warmup, `ParamTokensWarmup` ("param-tokens"): tokens_per_param x N tokens, 1 x N by default
  (OLMo-core's rule; 5% of a 20 tokens/param run), at most max_fraction (25%) of the steps.
* schedule: `schedule` (cosine by default) with `min_lr_ratio` 0.1; other schedule fields keep
  their library defaults (`ladder_schedule`) unless `schedule_fields` sets them.
  `LadderRecipe.with_power_scheduler` (or `--power-scheduler-json`): `schedule=power` with the
  (a, b) of a fitted Power Scheduler (`python -m harness.fit powersched`, `PowerSchedulerFit`):
  lr = min(lr_max, a * batch_size * tokens_seen^b) and a final 10% cooldown; the LR rule's peak
  becomes the cap lr_max (or `lr_max` given: a constant cap).

Built-in recipes: "default" (the rules above) and "step-law" (Step Law's published LR rule).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Any

from harness.config import ConfigError, ModelConfig, schedule_config
from harness.ladder.errors import LadderError
from harness.ladder.rules import (RULE_REGISTRIES, BatchRule, ConstantWeightDecay, LRRule, ParamTokensWarmup,
                                  PowerLawLR, PowerLinesWeightDecay, PowerSchedulerFit, StepLawBatch, StepLawLR,
                                  WarmupRule, WeightDecayRule, require_positive, describe_rule)
from harness.models import flops
from harness.schedules import SCHEDULES, ScheduleConfig

PARAM_COUNTS = ("non_embedding", "total")


def ladder_schedule(name: str, warmup_steps: int, min_lr_ratio: float,
                    extra: tuple[tuple[str, Any], ...] = ()) -> ScheduleConfig:
    """The one place the ladder builds a schedule config (planned runs and recipe checks alike).

    `min_lr_ratio` goes only to schedules that have one (constant has none); `extra` sets more fields
    (the fitted power_a / power_b of the Power scheduler)."""
    fields: dict[str, Any] = {"warmup_steps": warmup_steps}
    if "min_lr_ratio" in {f.name for f in dataclasses.fields(SCHEDULES.get(name))}:
        fields["min_lr_ratio"] = min_lr_ratio
    fields.update(dict(extra))
    return schedule_config(name, **fields)


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
    # More schedule fields, as (name, value) pairs (hashable: the recipe is frozen), e.g. the fitted
    # power_a / power_b of `with_power_scheduler`.
    schedule_fields: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not self.name:
            raise LadderError("recipe.name: give the recipe a name")
        require_positive(self.tokens_per_param, "tokens_per_param")
        if self.param_count not in PARAM_COUNTS:
            raise LadderError(f"param_count: got {self.param_count!r}; choose one of {', '.join(PARAM_COUNTS)}")
        for kind, registry in RULE_REGISTRIES.items():
            rule = getattr(self, kind)
            if type(rule) not in registry.values():
                raise LadderError(f"{kind}: got {type(rule).__name__}; use a registered {kind} rule "
                                  f"({', '.join(registry)}) or register yours in the registry")
        try:
            ladder_schedule(self.schedule, 0, self.min_lr_ratio, self.schedule_fields).validate()
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

    def with_power_scheduler(self, fit: Any, lr_max: float | None = None,
                             decay_fraction: float = 0.1) -> "LadderRecipe":
        """schedule=power with the (a, b) of a fitted Power Scheduler (its JSON or result). The LR
        rule's peak is the cap lr_max of lr = min(lr_max, a * beta * n^b); `lr_max` replaces it by
        a constant cap (the paper caps at a fixed eta_max)."""
        rule = PowerSchedulerFit.from_fit(fit, decay_fraction=decay_fraction)
        lr = self.lr if lr_max is None else PowerLawLR(lr_ref=lr_max, exponent=0.0)
        return replace(self, schedule="power", schedule_fields=rule.schedule_fields(), lr=lr)

    def describe(self) -> str:
        extra = "".join(f", {k} {v:g}" if isinstance(v, float) else f", {k} {v}" for k, v in self.schedule_fields)
        return (f"recipe {self.name}: D = {self.tokens_per_param:g} x N ({self.param_count}); "
                f"lr {describe_rule(self.lr)}; batch {describe_rule(self.batch)}; "
                f"weight decay {describe_rule(self.weight_decay)}; warmup {describe_rule(self.warmup)}; "
                f"schedule {self.schedule} (min_lr_ratio {self.min_lr_ratio:g}{extra})")


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
