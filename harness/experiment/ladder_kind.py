"""Kind `ladder`: model sizes x data multiples (tokens per parameter) and/or x FLOP budgets, planned
by the ladder recipes (harness/ladder), reported as a Chinchilla Approach-3 fit.

    kind: ladder
    ladder:
      sizes: [d64, d96, d128, d192]     # ladder size specs (harness/ladder/sizes.py)
      tokens_per_param: [5, 10, 20]     # D = tokens_per_param x N for every size (the data multiples)
      budgets: [1e14, 3e14]             # and/or isoFLOP budgets: D = C / FLOPs per token
      recipe: default                   # a name in harness.ladder.RECIPES (batch, LR, warmup rules)
      arch: llama                       # LadderConfig: arch, seq_len, vocab_size, min_steps
      seq_len: 256
      vocab_size: 512
      min_steps: 50                     # isoFLOP runs shorter than this are skipped (a plan note)
      param_count: null                 # N of D = tpp x N and of the fit: the recipe's (non_embedding) or total
      n_boot: 200                       # bootstrap refits of the fit
      level: 0.95                       # interval level

Each run is the ladder's own plan (`PlannedRun.overrides` with the spec's base as its `extra`), on
top of the spec's base; its settings carry size, tokens_per_param or budget, N, N_non_embedding, D.
Sizes an isoFLOP budget would train for fewer than min_steps steps are skipped and said so
(`plan_notes`). The report (harness/experiment/ladder_report.py) fits Approach 3 on the completed
runs (final val loss; N as `param_count` says; harness/experiment/scaling_fit.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.experiment.kinds import KINDS, ExperimentKind, Report, RunRequest
from harness.experiment.spec import ExperimentError, check_sizes

# Lines of PlannedRun.overrides the experiment layer sets itself (DIR/runs/<hash>, <name>-<hash>).
_SET_BY_EXPERIMENT = ("run_dir=", "name=")


@KINDS.register("ladder")
class LadderKind(ExperimentKind):
    @dataclass
    class Config:
        sizes: list[str] = field(default_factory=list)
        tokens_per_param: list[float] = field(default_factory=list)
        budgets: list[float] = field(default_factory=list)
        recipe: str = "default"
        arch: str = "llama"
        seq_len: int = 256
        vocab_size: int = 512
        min_steps: int = 50
        param_count: Optional[str] = None
        n_boot: int = 200
        level: float = 0.95

        def validate(self) -> None:
            check_sizes("ladder", self.sizes, "[d64, d96, d128, d192]")
            if not self.tokens_per_param and not self.budgets:
                raise ExperimentError("ladder.tokens_per_param / ladder.budgets: both empty; give data multiples "
                                      "(tokens_per_param: [5, 10, 20]) and/or FLOP budgets (budgets: [1e14, 3e14])")
            for name in ("tokens_per_param", "budgets"):
                for i, value in enumerate(getattr(self, name)):
                    if not value > 0:
                        raise ExperimentError(f"ladder.{name}[{i}]: got {value!r}; must be positive")
            if self.n_boot < 0:
                raise ExperimentError(f"ladder.n_boot: got {self.n_boot}; give 0 (no intervals) or more refits (200)")
            if not 0 < self.level < 1:
                raise ExperimentError(f"ladder.level: got {self.level}; an interval level in (0, 1), e.g. 0.95")
            self.ladder_config()

        def ladder_config(self, tokens_per_param: Optional[float] = None):
            """The LadderConfig these fields describe (errors name the spec field)."""
            from harness.ladder import LadderConfig, LadderError, get_recipe

            try:
                recipe = get_recipe(self.recipe)
            except LadderError as err:
                raise ExperimentError(f"ladder.recipe: {err}") from None
            # One field at a time, so that an error names the spec field that caused it.
            for name, value in (("param_count", self.param_count), ("tokens_per_param", tokens_per_param)):
                if value is None:
                    continue
                try:
                    recipe = dataclasses.replace(recipe, **{name: value})
                except LadderError as err:
                    message = str(err).removeprefix(f"{name}: ")
                    raise ExperimentError(f"ladder.{name}: {message}") from None
            try:
                return LadderConfig(recipe=recipe, arch=self.arch, vocab_size=self.vocab_size, seq_len=self.seq_len,
                                    min_steps=self.min_steps)
            except LadderError as err:
                raise ExperimentError(f"ladder.{err}") from None

        @property
        def fit_param_count(self) -> str:
            """The N of the fit: the recipe's param_count unless `param_count` overrides it."""
            return self.ladder_config().recipe.param_count

    def planned(self, params: "LadderKind.Config") -> tuple[list[tuple[Any, dict[str, Any], str]], list[str]]:
        """(ladder PlannedRun, settings, spec source) per run, and notes (isoFLOP sizes skipped)."""
        from harness.ladder import plan_isoflop, plan_ladder

        out = []
        for j, tpp in enumerate(params.tokens_per_param):
            for run in plan_ladder(params.sizes, params.ladder_config(tpp)):
                out.append((run, {"size": run.size.name, "tokens_per_param": tpp},
                            f"ladder.sizes[{params.sizes.index(run.size.name)}] x ladder.tokens_per_param[{j}]"))
        notes: list[str] = []
        if params.budgets:
            runs, skipped = plan_isoflop(params.budgets, params.sizes, params.ladder_config())
            notes = [f"isoFLOP: skipped {line} (ladder.min_steps)" for line in skipped]
            for run in runs:
                out.append((run, {"size": run.size.name, "budget": run.budget},
                            f"ladder.sizes[{params.sizes.index(run.size.name)}] x "
                            f"ladder.budgets[{params.budgets.index(run.budget)}]"))
        for run, settings, _ in out:
            settings.update({"N": run.N, "N_non_embedding": run.N_non_embedding, "D": run.D})
        return out, notes

    def plan(self, spec) -> list[RunRequest]:
        from harness.checks import ConfigError
        from harness.experiment.compose import compose_run

        compose_run(spec.base, "base")  # a bad base is named as such, not as a ladder run
        requests = []
        for run, settings, source in self.planned(spec.params)[0]:
            try:
                lines = run.overrides(spec.base)
            except ConfigError as err:
                raise ExperimentError(f"{source}: {err}") from None
            # overrides() ends with `extra` (the base, which the experiment puts first anyway).
            lines = lines[:len(lines) - len(spec.base)]
            lines = [line for line in lines if not line.startswith(_SET_BY_EXPERIMENT)]
            requests.append(RunRequest(overrides=tuple(lines), settings=settings, source=source))
        return requests

    def plan_notes(self, spec) -> list[str]:
        return self.planned(spec.params)[1]

    def report(self, out_dir: Path, table, plan: dict[str, Any]) -> Report:
        from harness.experiment.ladder_report import ladder_report

        return ladder_report(out_dir, table, plan, self.Config(**plan["spec"]["ladder"]))
