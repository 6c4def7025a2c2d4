"""Planning: sizes -> runs under a recipe's rules, without training.

`plan_ladder` makes one run per size with D = tokens_per_param x N; `plan_isoflop` trains every
size at each FLOP budget C on D = C / flops_per_token tokens and skips sizes that would take fewer
than `min_steps` steps. A `PlannedRun` is the plan's numbers; `run_config()` turns it into the
RunConfig that `python -m harness.train` would train (conf/config.yaml plus the plan), and
`overrides()` is derived from it: the Hydra override line that composes to exactly that config.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional, Sequence

from harness.archs import ARCHS
from harness.config import ModelConfig, RunConfig, ScheduleConfig
from harness.ladder.errors import LadderError
from harness.ladder.overrides import compose_base, diff_overrides
from harness.ladder.recipe import RECIPES, LadderRecipe, ladder_schedule
from harness.ladder.sizes import Size, size_spec
from harness.models import flops

# The architectures the ladder plans: every registered dense arch (the size rules of
# harness/ladder/sizes.py have no notion of experts); checked only in LadderConfig.
LADDER_ARCHS = tuple(name for name in ARCHS.names() if not ARCHS.get(name).uses_moe)

# Fields every override line states even where they equal conf/config.yaml, so that a preset added
# after the line (`train=gpu`, `model=...`) cannot change the planned shape, tokens, LR or schedule.
ALWAYS_STATED = ("model.arch", "model.d_model", "model.n_layers", "model.n_heads", "model.n_kv_heads",
                 "model.d_ff", "model.max_seq_len", "model.vocab_size", "model.tie_embeddings", "data.vocab_size",
                 "optim.lr", "optim.weight_decay", "schedule.warmup_steps", "schedule.min_lr_ratio",
                 "train.steps", "train.seq_len", "train.batch_size", "run_dir", "name")


@dataclass(frozen=True)
class LadderConfig:
    """What to plan: a recipe's rules applied to one architecture, vocabulary and sequence length."""

    recipe: LadderRecipe = field(default_factory=lambda: RECIPES["default"])
    arch: str = "llama"
    vocab_size: int = 512
    seq_len: int = 256
    # isoFLOP plans skip sizes that would train for fewer steps than this.
    min_steps: int = 50
    run_root: str = "runs/ladder"  # each run's run_dir is <run_root>/<name>
    prefix: str = "ladder"  # run names are <prefix>_<size>_<tag>

    def __post_init__(self) -> None:
        if not isinstance(self.recipe, LadderRecipe):
            raise LadderError(f"recipe: got {type(self.recipe).__name__}; pass a LadderRecipe (e.g. RECIPES['default'])")
        if self.arch not in LADDER_ARCHS:
            raise LadderError(f"arch: got {self.arch!r}; the ladder plans {' or '.join(LADDER_ARCHS)}")
        for name in ("vocab_size", "seq_len", "min_steps"):
            if not getattr(self, name) > 0:
                raise LadderError(f"{name}: must be positive, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class PlannedRun:
    name: str
    size: Size
    model: ModelConfig
    N: int                # all parameters
    N_non_embedding: int
    flops_per_token: float
    batch_size: int       # sequences
    seq_len: int
    steps: int
    lr: float
    warmup_steps: int
    schedule: str
    min_lr_ratio: float
    weight_decay: float
    run_dir: str
    budget: Optional[float] = None  # the isoFLOP budget, if any
    schedule_fields: tuple = ()  # the recipe's extra schedule fields (e.g. the Power scheduler's power_a, power_b)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def D(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def flops(self) -> float:
        return self.D * self.flops_per_token

    def schedule_config(self) -> ScheduleConfig:
        return ladder_schedule(self.schedule, self.warmup_steps, self.min_lr_ratio, self.schedule_fields)

    def base_config(self, extra: Sequence[str] = ()) -> RunConfig:
        """What the override line applies to: conf/config.yaml with this run's schedule and `extra`."""
        return compose_base((f"schedule={self.schedule}", *extra))

    def run_config(self, extra: Sequence[str] = ()) -> RunConfig:
        """The validated RunConfig this run trains: the plan's fields (model, data.vocab_size, LR,
        weight decay, schedule, steps, batch, seq_len, name, run_dir) on `base_config(extra)`.
        `extra` may select presets (`data=tinystories`, `train=gpu`) and set fields the plan leaves."""
        cfg = self.base_config(extra)
        cfg.model = copy.deepcopy(self.model)
        cfg.schedule = self.schedule_config()
        cfg.data.vocab_size = self.model.vocab_size or cfg.data.vocab_size
        cfg.optim.lr, cfg.optim.weight_decay = self.lr, self.weight_decay
        cfg.train.steps, cfg.train.seq_len, cfg.train.batch_size = self.steps, self.seq_len, self.batch_size
        cfg.name, cfg.run_dir = self.name, self.run_dir
        cfg.validate()
        return cfg

    def overrides(self, extra: Sequence[str] = ()) -> list[str]:
        """`python -m harness.train` arguments that train exactly `run_config(extra)`: the schedule
        selection, the fields that differ from `base_config(extra)` and ALWAYS_STATED, then `extra`."""
        lines = diff_overrides(self.run_config(extra), self.base_config(extra), always=ALWAYS_STATED,
                               selections={"schedule": self.schedule})
        return [*lines, *extra]


def model_config(size: Size, cfg: LadderConfig) -> ModelConfig:
    model = ModelConfig(arch=cfg.arch, d_model=size.d_model, n_layers=size.n_layers, n_heads=size.n_heads,
                        max_seq_len=cfg.seq_len, vocab_size=cfg.vocab_size, tie_embeddings=False)
    model.validate()
    return model


def plan_run(size: Size, cfg: LadderConfig, tokens: float, tag: str, budget: Optional[float] = None) -> PlannedRun:
    """One run of `size` on about `tokens` tokens, with the recipe's batch / LR / weight-decay / warmup rules."""
    recipe = cfg.recipe
    model = model_config(size, cfg)
    n = recipe.param_basis(model)
    batch = recipe.batch.batch_size(n, tokens, cfg.seq_len)
    tokens_per_step = batch * cfg.seq_len
    steps = max(1, round(tokens / tokens_per_step))
    d_actual = steps * tokens_per_step
    lr = recipe.lr.peak_lr(n, d_actual)
    name = f"{cfg.prefix}_{size.name}_{tag}"
    return PlannedRun(name=name, size=size, model=model, N=flops.num_params(model),
                      N_non_embedding=flops.num_params(model, include_embedding=False),
                      flops_per_token=flops.flops_per_token(model, cfg.seq_len), batch_size=batch,
                      seq_len=cfg.seq_len, steps=steps, lr=lr,
                      warmup_steps=recipe.warmup.warmup_steps(n, tokens_per_step, steps),
                      schedule=recipe.schedule, min_lr_ratio=recipe.min_lr_ratio,
                      weight_decay=recipe.weight_decay.weight_decay(n, d_actual, tokens_per_step, lr),
                      run_dir=f"{cfg.run_root}/{name}", budget=budget, schedule_fields=recipe.schedule_fields)


def plan_ladder(sizes: Sequence[str], cfg: LadderConfig) -> list[PlannedRun]:
    """One run per size with D = tokens_per_param x N."""
    tpp = cfg.recipe.tokens_per_param
    runs = []
    for spec in sizes:
        size = size_spec(spec)
        n = cfg.recipe.param_basis(model_config(size, cfg))
        runs.append(plan_run(size, cfg, tpp * n, tag=f"tpp{tpp:g}"))
    return runs


def plan_isoflop(budgets: Sequence[float], sizes: Sequence[str], cfg: LadderConfig) -> tuple[list[PlannedRun], list[str]]:
    """For each budget C, every candidate size trained on D = C / flops_per_token tokens; sizes that
    would take fewer than `cfg.min_steps` steps are skipped (returned as notes)."""
    runs, skipped = [], []
    for budget in budgets:
        if not budget > 0:
            raise LadderError(f"budget {budget!r}: must be a positive number of FLOPs")
        for spec in sizes:
            size = size_spec(spec)
            fpt = flops.flops_per_token(model_config(size, cfg), cfg.seq_len)
            run = plan_run(size, cfg, budget / fpt, tag=f"C{budget:.0e}".replace("+", ""), budget=budget)
            if run.steps < cfg.min_steps:
                skipped.append(f"{run.name}: {run.steps} steps < min_steps {cfg.min_steps}")
                continue
            runs.append(run)
    return runs, skipped
