"""Kind `cooldown_branches`: an (N, D) grid from ONE constant-LR run per size plus short cooldowns,
next to the same grid trained as independent runs (Hägele et al. 2024, done by hand there).

    kind: cooldown_branches
    cooldown_branches:
      sizes: [d64, d96, d128, d160]   # ladder size specs (harness/ladder/sizes.py)
      tokens: [2e5, 4e5, 8e5, 1.6e6]  # D of each grid point: where each branch (and run) ends
      cooldown_fraction: 0.2          # a branch from step s cools down over fraction x s steps
      cooldown: sqrt                  # its shape: 1-sqrt (sqrt), linear, cosine
      independent: cosine             # the independent runs' schedule: cosine | wsd | none

Per size, for grid points D_1 < ... < D_k (tokens_per_step = batch_size x seq_len):

* branch step s_i = round(D_i / tokens_per_step / (1 + f)), cooldown c_i = max(1, round(f s_i)),
  end T_i = s_i + c_i (so D_i becomes T_i x tokens_per_step, the point's actual D);
* the parent: warmup W then the constant peak LR (a WSD run's stable phase) for s_k steps, its
  checkpoints at s_1..s_k kept (`train.checkpoint_at`);
* branch i: `train.init_from=<parent>/checkpoints/step_<s_i>.pt` (model, optimizer, RNG and step),
  then a WSD schedule whose decay runs from s_i to T_i down to `min_lr_ratio`. Its identity is the
  parent's hash + s_i + the cooldown (harness/identity.py); its curve continues the parent's rows;
  `collect` reads its end as the point (N, D_i);
* independent run i (unless `independent: none`): the same model, batch, peak LR and warmup, trained
  from scratch for T_i steps with its own full schedule.

The peak LR, warmup and weight decay come from the ladder recipe's rules (`recipe`), evaluated once
per size (at the largest D, the warmup capped by the rule at a fraction of s_1) so every run of a
size shares them. Branches launch after their parent (stage 1). The report (cooldown_report.py)
fits Chinchilla's Approach 3 to each set and compares them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiment.kinds import KINDS, PARENT_RUN_DIR, ExperimentKind, Report, RunRequest
from harness.experiment.spec import ExperimentError, check_sizes

INDEPENDENT_SCHEDULES = ("cosine", "wsd", "none")
BRANCH_COOLDOWNS = ("sqrt", "linear", "cosine")


@dataclass(frozen=True)
class GridPoint:
    branch_step: int   # s: where the branch leaves the parent
    cooldown_steps: int
    steps: int         # T = s + cooldown steps: the branch's (and independent run's) last step


def grid_points(tokens: list[float], tokens_per_step: int, fraction: float) -> list[GridPoint]:
    """The branch step, cooldown and end step of each requested D (see the module docstring)."""
    points = []
    for D in sorted(tokens):
        s = round(D / tokens_per_step / (1 + fraction))
        if s < 1:
            raise ExperimentError(f"cooldown_branches.tokens: {D:g} tokens is less than one step of "
                                  f"{tokens_per_step} tokens before its cooldown; raise it or lower batch_size")
        c = max(1, round(fraction * s))
        if points and s == points[-1].branch_step:
            raise ExperimentError(f"cooldown_branches.tokens: {D:g} falls on the same branch step ({s}) as a "
                                  "smaller value; space the values further apart")
        points.append(GridPoint(branch_step=s, cooldown_steps=c, steps=s + c))
    return points


@KINDS.register("cooldown_branches")
class CooldownBranchesKind(ExperimentKind):
    @dataclass
    class Config:
        sizes: list[str] = field(default_factory=list)
        tokens: list[float] = field(default_factory=list)
        cooldown_fraction: float = 0.2
        cooldown: str = "sqrt"
        # Where the branch cooldowns end, as a fraction of the peak LR (Hägele et al. cool to 0).
        min_lr_ratio: float = 0.0
        batch_size: int = 16       # sequences per step, every run (a branch keeps its parent's batch)
        independent: str = "cosine"
        recipe: str = "default"    # harness/ladder/recipe.py: the peak LR, warmup and weight decay rules
        arch: str = "llama"
        seq_len: int = 256
        vocab_size: int = 512
        n_boot: int = 200          # bootstrap refits of each Approach-3 fit
        level: float = 0.95        # the bootstrap intervals' coverage

        def validate(self) -> None:
            from harness.ladder import RECIPES

            check_sizes("cooldown_branches", self.sizes, "[d64, d128]")
            if len(self.tokens) < 2 or any(not t > 0 for t in self.tokens):
                raise ExperimentError("cooldown_branches.tokens: give at least two positive token counts "
                                      "(the D of each grid point)")
            if not 0 < self.cooldown_fraction <= 1:
                raise ExperimentError(f"cooldown_branches.cooldown_fraction: got {self.cooldown_fraction}; "
                                      "must be in (0, 1] (0.1-0.2 is usual)")
            if self.cooldown not in BRANCH_COOLDOWNS:
                raise ExperimentError(f"cooldown_branches.cooldown: got {self.cooldown!r}; choose one of "
                                      f"{', '.join(BRANCH_COOLDOWNS)}")
            if not 0 <= self.min_lr_ratio < 1:
                raise ExperimentError(f"cooldown_branches.min_lr_ratio: got {self.min_lr_ratio}; must be in [0, 1)")
            if self.independent not in INDEPENDENT_SCHEDULES:
                raise ExperimentError(f"cooldown_branches.independent: got {self.independent!r}; choose one of "
                                      f"{', '.join(INDEPENDENT_SCHEDULES)}")
            if self.recipe not in RECIPES:
                raise ExperimentError(f"cooldown_branches.recipe: got {self.recipe!r}; choose one of "
                                      f"{', '.join(RECIPES)}")
            for name in ("batch_size", "seq_len", "vocab_size"):
                if not getattr(self, name) > 0:
                    raise ExperimentError(f"cooldown_branches.{name}: must be a positive integer")
            if self.n_boot < 0:
                raise ExperimentError("cooldown_branches.n_boot: must be >= 0 (0: no intervals)")
            if not 0 < self.level < 1:
                raise ExperimentError(f"cooldown_branches.level: got {self.level}; must be in (0, 1), e.g. 0.95")

    def plan(self, spec) -> list[RunRequest]:
        params: CooldownBranchesKind.Config = spec.params
        requests: list[RunRequest] = []
        for size in params.sizes:
            requests += self._plan_size(str(size), params, offset=len(requests))
        return requests

    def _plan_size(self, size_name: str, params: "CooldownBranchesKind.Config", offset: int) -> list[RunRequest]:
        """The parent (at `offset` of the whole plan), its branches, then the independent runs of one size."""
        from harness.ladder import RECIPES
        from harness.ladder.plan import LadderConfig, plan_run
        from harness.ladder.sizes import size_spec

        recipe = RECIPES[params.recipe]
        ladder = LadderConfig(recipe=recipe, arch=params.arch, vocab_size=params.vocab_size, seq_len=params.seq_len)
        tokens_per_step = params.batch_size * params.seq_len
        points = grid_points(list(params.tokens), tokens_per_step, params.cooldown_fraction)
        size = size_spec(size_name)
        longest = plan_run(size, ladder, tokens=points[-1].steps * tokens_per_step, tag="cooldown")
        n = recipe.param_basis(longest.model)
        d_max = points[-1].steps * tokens_per_step
        # One peak LR, weight decay and warmup per size: every run of the size shares them.
        shared = dataclasses.replace(
            longest, batch_size=params.batch_size, steps=points[-1].steps, lr=recipe.lr.peak_lr(n, d_max),
            warmup_steps=recipe.warmup.warmup_steps(n, tokens_per_step, points[0].branch_step))
        shared = dataclasses.replace(shared, weight_decay=recipe.weight_decay.weight_decay(
            n, d_max, tokens_per_step, shared.lr))
        where = f"cooldown_branches.sizes[{params.sizes.index(size_name)}]"
        common = {"size": size_name, "N": shared.N, "N_non_embedding": shared.N_non_embedding}

        parent = dataclasses.replace(shared, steps=points[-1].branch_step, schedule="constant")
        pinned = ",".join(str(p.branch_step) for p in points)
        requests = [RunRequest(overrides=self._overrides(parent, [f"train.checkpoint_at=[{pinned}]"]),
                               settings={**common, "role": "parent", "steps": parent.steps}, source=where)]
        for p in points:
            cooldown = [f"schedule.decay_fraction={p.cooldown_steps / p.steps!r}", f"schedule.cooldown={params.cooldown}"]
            branch = dataclasses.replace(shared, steps=p.steps, schedule="wsd", min_lr_ratio=params.min_lr_ratio)
            init = f"train.init_from={PARENT_RUN_DIR}/checkpoints/step_{p.branch_step:08d}.pt"
            requests.append(RunRequest(
                overrides=self._overrides(branch, [*cooldown, init]), source=where, parent=offset,
                settings={**common, "role": "branch", "branch_step": p.branch_step, "steps": p.steps,
                          "D": p.steps * tokens_per_step}))
        if params.independent != "none":
            for p in points:
                if params.independent == "wsd":
                    run = dataclasses.replace(shared, steps=p.steps, schedule="wsd", min_lr_ratio=params.min_lr_ratio)
                    extra = [f"schedule.decay_fraction={p.cooldown_steps / p.steps!r}", f"schedule.cooldown={params.cooldown}"]
                else:
                    run, extra = dataclasses.replace(shared, steps=p.steps, schedule=params.independent), []
                requests.append(RunRequest(overrides=self._overrides(run, extra), source=where,
                                           settings={**common, "role": "independent", "steps": p.steps,
                                                     "D": p.steps * tokens_per_step}))
        return requests

    @staticmethod
    def _overrides(run: Any, extra: list[str]) -> tuple[str, ...]:
        """The ladder run's override line (its config vs conf/config.yaml) without name/run_dir,
        which the experiment layer sets; the parent's placeholder stays in `extra`."""
        lines = run.overrides(extra)[:-len(extra) or None]
        # `extra` sets fields (the cooldown's) that the ladder's schedule also states: extra's win.
        keys = {item.split("=", 1)[0] for item in extra} | {"name", "run_dir"}
        return (*(line for line in lines if line.split("=", 1)[0] not in keys), *extra)

    def report(self, out_dir: Path, table, plan: list[dict[str, Any]]) -> Report:
        from harness.experiment.cooldown_report import cooldown_report

        return cooldown_report(out_dir, table, plan)
