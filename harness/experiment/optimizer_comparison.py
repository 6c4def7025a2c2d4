"""Kind `optimizer_comparison`: optimizers tuned per (variant, size, data multiple) by coordinate
descent, then compared at matched data / FLOPs / wall-clock time (Wen, Hall, Ma, Liang 2025,
"Fantastic Pretraining Optimizers and Where to Find Them"; marin's experiments/optimizer_sweep).

    kind: optimizer_comparison
    optimizer_comparison:
      baseline: adamw                 # the variant speedups are measured against
      variants:                       # name -> optimizer + fixed overrides + search space + start
        adamw: {optimizer: adamw, search: {optim.lr: [1e-3, 2e-3, 4e-3]}, start: {optim.lr: 2e-3}}
        adamw_seed: {optimizer: adamw, overrides: [train.seed=1], ...}   # a null comparison
      sizes: [d32, d64]               # ladder size specs: model, batch, steps, warmup from `recipe`
      tokens_per_param: [10, 20]      # data multiples (D = multiple x N, N as the recipe counts it)
      seeds: 3                        # the best config of each cell, trained with this many seeds
      epsilon: 3e-3                   # descent stops when no axis improves by more than
                                      # max(epsilon, the measured seed noise of the size)
      max_rounds: 6                   # descent moves per cell at most (a warning when hit)
      batch_size: null                # sequences per step (null: the recipe's batch rule)
      recipe: default                 # harness/ladder recipe (batch, warmup, schedule; NOT the LR)
      arch: llama
      seq_len: 256
      vocab_size: 512
      b: null                         # fix the baseline law's D exponent (null: fit it with 3+
      b_prior: [0.2, 0.4]             # multiples; with 2, drawn from b_prior in the bootstrap)
      n_boot: 1000
      level: 0.95

Every run is the ladder's run of its (size, multiple) (model, batch, steps, warmup, schedule) with
the variant's optimizer (`optim=<optimizer>`: its own config's defaults, never the ladder's
AdamW-derived LR or weight decay), the variant's overrides, the hyperparameters of its point of the
search, and `train.seed`. The search runs with the base seed; seed k of a cell's best config
is base seed + 1000 k (a variant that sets train.seed itself shifts all of its seeds).

Rounds (ExperimentKind.rounds, harness/experiment/coordinate_descent.py): round 0 is each cell's
start point, plus a seed-noise probe (the baseline's start at the smallest multiple of every size,
with all seeds): the size's threshold is max(epsilon, the probe's seed std). Each later round
perturbs every axis of a cell one grid step each way from its centre (extending an axis at its
end), and moves to the best, until no axis improves by more than the threshold; then the centre is
trained with the other seeds. Losses are final val losses at the end of the full schedule; a run
that diverged counts as +inf. Runs are found by config hash: a point shared by two walks, a probe
that is the best config, a relaunch: each is trained once.

The report (optimizer_comparison_report.py, on speedup.py) fits the baseline's L(D) per size and
turns every cell's best loss into a speedup with a bootstrap interval.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from harness.experiment.coordinate_descent import CONVERGED, MAX_ROUNDS, Walk, descend
from harness.experiment.kinds import KINDS, ExperimentKind, Report, RunRequest
from harness.experiment.spec import CONF_DIR, ExperimentError, check_sizes

SECTION = "optimizer_comparison"
SEED_STRIDE = 1000
_SET_BY_EXPERIMENT = ("run_dir=", "name=", "optim.")  # the optimizer's own config sets optim.*


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": [..]}} or {"optim.lr": [..]} -> {"optim.lr": [..]}."""
    out: dict[str, Any] = {}
    for key, value in (tree or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat(value, f"{name}."))
        else:
            out[name] = value
    return out


@dataclass
class Variant:
    optimizer: str = "adamw"          # conf/optim/<optimizer>.yaml
    overrides: list[str] = field(default_factory=list)   # fixed run overrides (e.g. train.seed=1)
    search: dict[str, Any] = field(default_factory=dict)  # override key -> grid of values
    start: dict[str, Any] = field(default_factory=dict)   # override key -> the value descent starts at

    @property
    def grid(self) -> dict[str, list[Any]]:
        return {k: list(v) for k, v in flat(self.search).items()}

    @property
    def start_point(self) -> dict[str, Any]:
        return flat(self.start)

    @property
    def base_seed(self) -> Optional[int]:
        for item in self.overrides:
            if item.startswith("train.seed="):
                return int(item.split("=", 1)[1])
        return None


@dataclass(frozen=True)
class CellKey:
    variant: str
    size: str
    tokens_per_param: float


@KINDS.register(SECTION)
class OptimizerComparisonKind(ExperimentKind):
    rounds = True

    @dataclass
    class Config:
        baseline: str = "adamw"
        variants: dict[str, Variant] = field(default_factory=dict)
        sizes: list[str] = field(default_factory=list)
        tokens_per_param: list[float] = field(default_factory=list)
        seeds: int = 3
        epsilon: float = 3e-3
        max_rounds: int = 6
        batch_size: Optional[int] = None
        recipe: str = "default"
        arch: str = "llama"
        seq_len: int = 256
        vocab_size: int = 512
        b: Optional[float] = None
        b_prior: list[float] = field(default_factory=lambda: [0.2, 0.4])
        n_boot: int = 1000
        level: float = 0.95

        def validate(self) -> None:
            s = SECTION
            if not self.variants:
                raise ExperimentError(f"{s}.variants: give at least the baseline, e.g. "
                                      "{adamw: {optimizer: adamw, search: {optim.lr: [1e-3, 2e-3]}, start: {optim.lr: 1e-3}}}")
            if self.baseline not in self.variants:
                raise ExperimentError(f"{s}.baseline: got {self.baseline!r}; name one of the variants "
                                      f"({', '.join(self.variants)})")
            known = sorted(p.stem for p in (CONF_DIR.parent / "optim").glob("*.yaml"))
            for name, v in self.variants.items():
                where = f"{s}.variants.{name}"
                if v.optimizer not in known:
                    raise ExperimentError(f"{where}.optimizer: got {v.optimizer!r}; choose one of {', '.join(known)}")
                for i, item in enumerate(v.overrides):
                    if "=" not in item:
                        raise ExperimentError(f"{where}.overrides[{i}]: got {item!r}; each override is key=value")
                grid, start = v.grid, v.start_point
                for axis, values in grid.items():
                    if not isinstance(values, list) or not values:
                        raise ExperimentError(f"{where}.search.{axis}: give a non-empty list of values")
                    if any(isinstance(x, (dict, list)) for x in values):
                        raise ExperimentError(f"{where}.search.{axis}: values must be scalars")
                    if len(set(values)) != len(values):
                        raise ExperimentError(f"{where}.search.{axis}: a value is given twice")
                    if axis not in start:
                        raise ExperimentError(f"{where}.start.{axis}: missing; give the value descent starts at "
                                              f"(one of {values})")
                    if start[axis] not in values:
                        raise ExperimentError(f"{where}.start.{axis}: got {start[axis]!r}; must be one of "
                                              f"its search values {values}")
                for axis in start:
                    if axis not in grid:
                        raise ExperimentError(f"{where}.start.{axis}: not a search axis (the axes are "
                                              f"{', '.join(grid) or 'none'})")
                    if any(o.split("=", 1)[0].lstrip("+") == axis for o in v.overrides):
                        raise ExperimentError(f"{where}.overrides: sets {axis}, which is also searched; drop one")
            check_sizes(s, self.sizes)
            if not self.tokens_per_param:
                raise ExperimentError(f"{s}.tokens_per_param: give the data multiples, e.g. [10, 20]")
            for i, value in enumerate(self.tokens_per_param):
                if not value > 0:
                    raise ExperimentError(f"{s}.tokens_per_param[{i}]: got {value!r}; must be positive")
            if self.seeds < 1:
                raise ExperimentError(f"{s}.seeds: got {self.seeds}; at least 1 (3: the best config + 2 more seeds)")
            if not self.epsilon >= 0:
                raise ExperimentError(f"{s}.epsilon: got {self.epsilon}; a loss difference >= 0 (3e-3)")
            if self.max_rounds < 0:
                raise ExperimentError(f"{s}.max_rounds: got {self.max_rounds}; must be >= 0")
            if self.batch_size is not None and not self.batch_size > 0:
                raise ExperimentError(f"{s}.batch_size: got {self.batch_size}; positive, or null (the recipe's rule)")
            if self.b is not None and not self.b > 0:
                raise ExperimentError(f"{s}.b: got {self.b}; a positive D exponent, or null (fit it)")
            if len(self.b_prior) != 2 or not 0 < self.b_prior[0] <= self.b_prior[1]:
                raise ExperimentError(f"{s}.b_prior: got {self.b_prior}; give [lo, hi] with 0 < lo <= hi")
            if self.n_boot < 0:
                raise ExperimentError(f"{s}.n_boot: got {self.n_boot}; 0 (no intervals) or more resamples")
            if not 0 < self.level < 1:
                raise ExperimentError(f"{s}.level: got {self.level}; an interval level in (0, 1), e.g. 0.95")
            for name in ("seq_len", "vocab_size"):
                if not getattr(self, name) > 0:
                    raise ExperimentError(f"{s}.{name}: must be a positive integer")
            self.ladder_config(self.tokens_per_param[0])

        def ladder_config(self, tokens_per_param: float):
            from harness.ladder import LadderConfig, LadderError, get_recipe

            try:
                recipe = dataclasses.replace(get_recipe(self.recipe), tokens_per_param=tokens_per_param)
                return LadderConfig(recipe=recipe, arch=self.arch, vocab_size=self.vocab_size, seq_len=self.seq_len)
            except LadderError as err:
                raise ExperimentError(f"{SECTION}.{err}") from None

        def cells(self) -> list[CellKey]:
            return [CellKey(v, str(size), float(t)) for t in self.tokens_per_param for size in self.sizes
                    for v in self.variants]

    # ------------------------------------------------------------------ runs of a cell

    def ladder_run(self, params: "OptimizerComparisonKind.Config", size: str, tpp: float):
        """The ladder's run of (size, multiple): model, batch, steps, warmup and schedule."""
        from harness.ladder import plan_ladder

        run = plan_ladder([size], params.ladder_config(tpp))[0]
        if params.batch_size:
            recipe = params.ladder_config(tpp).recipe
            tokens = run.D
            steps = max(1, round(tokens / (params.batch_size * run.seq_len)))
            run = dataclasses.replace(run, batch_size=params.batch_size, steps=steps, warmup_steps=recipe.warmup.warmup_steps(
                recipe.param_basis(run.model), params.batch_size * run.seq_len, steps))
        return run

    def request(self, spec, cell: CellKey, hparams: dict[str, Any], seed: int, role: str, round_: int,
                cache: dict) -> RunRequest:
        from harness.ladder.overrides import format_value

        params: OptimizerComparisonKind.Config = spec.params
        key = (cell.size, cell.tokens_per_param)
        if key not in cache:
            run = self.ladder_run(params, cell.size, cell.tokens_per_param)
            cache[key] = (run, [line for line in run.overrides([]) if not line.startswith(_SET_BY_EXPERIMENT)])
        run, lines = cache[key]
        variant = params.variants[cell.variant]
        fixed = [o for o in variant.overrides if not o.startswith("train.seed=")]
        set_keys = {o.split("=", 1)[0].lstrip("+") for o in fixed} | set(hparams) | {"train.seed"}
        if "schedule.warmup_fraction" in set_keys:
            # The ladder states warmup_steps, which would override a searched warmup_fraction.
            set_keys.add("schedule.warmup_steps")
            fixed = [*fixed, "schedule.warmup_steps=null"]
        lines = [line for line in lines if line.split("=", 1)[0] not in set_keys]
        overrides = (*lines, f"optim={variant.optimizer}", *fixed,
                     *(f"{k}={format_value(v)}" for k, v in hparams.items()), f"train.seed={seed}")
        settings = {"variant": cell.variant, "optimizer": variant.optimizer, "size": cell.size,
                    "tokens_per_param": cell.tokens_per_param, "N": run.N, "N_non_embedding": run.N_non_embedding,
                    "D": run.D, "role": role, "round": round_, "seed": seed, **hparams}
        return RunRequest(overrides=overrides, settings=settings, source=f"{SECTION}.variants.{cell.variant}")

    def seeds_of(self, spec, variant: str) -> list[int]:
        params: OptimizerComparisonKind.Config = spec.params
        base = params.variants[variant].base_seed
        if base is None:
            base = self._base_seed(spec)
        return [base + SEED_STRIDE * k for k in range(params.seeds)]

    @staticmethod
    def _base_seed(spec) -> int:
        for item in reversed(spec.base):
            if item.startswith("train.seed="):
                return int(item.split("=", 1)[1])
        return 0

    # ------------------------------------------------------------------ the walks

    def state(self, spec, loss_of: Callable[[RunRequest], Optional[float]]) -> "ComparisonState":
        """Every cell's walk and seed runs as far as the known losses allow (plan and report alike)."""
        import numpy as np

        params: OptimizerComparisonKind.Config = spec.params
        cache: dict = {}
        state = ComparisonState()
        base = params.variants[params.baseline]
        probe_tpp = min(params.tokens_per_param)
        for size in params.sizes:
            cell = CellKey(params.baseline, str(size), float(probe_tpp))
            reqs = [self.request(spec, cell, base.start_point, s, "noise_probe", 0, cache)
                    for s in self.seeds_of(spec, params.baseline)]
            state.requests += [(0, r) for r in reqs]
            losses = [loss_of(r) for r in reqs]
            finite = [x for x in losses if x is not None and np.isfinite(x)]
            # Known once every probe run is done; a diverged probe leaves fewer seeds to measure.
            noise = None if any(x is None for x in losses) else \
                (float(np.std(finite, ddof=1)) if len(finite) >= 2 else 0.0)
            state.noise[str(size)] = noise
        for cell in params.cells():
            variant = params.variants[cell.variant]
            seeds = self.seeds_of(spec, cell.variant)
            noise = state.noise[cell.size]
            if params.seeds >= 2 and noise is None:
                # The size's threshold is not known yet: the walk waits for its noise probe.
                threshold_known = False
                threshold = params.epsilon
            else:
                threshold_known, threshold = True, max(params.epsilon, noise or 0.0)

            def point_loss(p, cell=cell, seed=seeds[0]):
                return loss_of(self.request(spec, cell, dict(p), seed, "descent", 0, cache))

            walk = descend(variant.grid, variant.start_point, point_loss, threshold,
                           params.max_rounds if threshold_known else 0)
            if not threshold_known and walk.state == MAX_ROUNDS:
                walk.state = "waiting"
            state.walks[cell] = walk
            state.thresholds[cell] = threshold
            for r, points in enumerate(walk.rounds):
                state.requests += [(r, self.request(spec, cell, dict(p), seeds[0], "descent", r, cache)) for p in points]
            if walk.state in (CONVERGED, MAX_ROUNDS):
                best = dict(walk.best)
                seed_reqs = [self.request(spec, cell, best, s, "seed", len(walk.rounds), cache) for s in seeds]
                state.requests += [(len(walk.rounds), r) for r in seed_reqs[1:]]
                state.seed_runs[cell] = seed_reqs
        return state

    def plan(self, spec) -> list[RunRequest]:
        return self._ordered(self.state(spec, lambda request: None))

    def replan(self, spec, results) -> list[RunRequest]:
        return self._ordered(self.state(spec, lambda request: results.of(request).loss))

    @staticmethod
    def _ordered(state: "ComparisonState") -> list[RunRequest]:
        """Round-major (every cell's round 0, then round 1, ...), so a plan grows at its end."""
        return [r for _, r in sorted(state.requests, key=lambda item: item[0])]

    def plan_notes(self, spec) -> list[str]:
        params: OptimizerComparisonKind.Config = spec.params
        return [f"{SECTION}: coordinate descent plans in rounds: this plan is round 0 plus what the finished "
                f"runs imply; `run` re-plans after each round (at most {params.max_rounds} moves per cell, "
                f"then {params.seeds} seed(s) of each best config)"]

    def report(self, out_dir: Path, table, plan: dict[str, Any]) -> Report:
        from harness.experiment.optimizer_comparison_report import comparison_report

        return comparison_report(self, out_dir, table, plan)


@dataclass
class ComparisonState:
    requests: list[tuple[int, RunRequest]] = field(default_factory=list)  # (round, request)
    walks: dict[CellKey, Walk] = field(default_factory=dict)
    thresholds: dict[CellKey, float] = field(default_factory=dict)
    noise: dict[str, Optional[float]] = field(default_factory=dict)       # size -> seed std of the probe
    seed_runs: dict[CellKey, list[RunRequest]] = field(default_factory=dict)  # the best config's seeds
