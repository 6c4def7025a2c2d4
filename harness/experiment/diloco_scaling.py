"""Kind `diloco_scaling`: DiLoCo vs data-parallel training at matched tokens across model sizes
(Charles et al. 2025, "Communication-Efficient Language Model Training Scales Reliably and Robustly:
Scaling Laws for DiLoCo").

    kind: diloco_scaling
    diloco_scaling:
      sizes: [d32, d64, d96]          # ladder size specs (harness/ladder/sizes.py)
      tokens_per_param: 4             # D = multiple x N (N as the recipe counts it), the same for every run of a size
      replicas: [1, 2, 4]             # M: every value must divide batch_size
      inner_steps: [8, 32]            # H: inner steps between outer steps
      outer_lrs: [0.4, 0.7, 1.0]      # the outer LR grid, searched per (M, H, size)
      outer_optimizer: nesterov       # train.diloco.outer_optimizer
      outer_momentum: 0.9
      dp_seeds: 2                     # data-parallel runs per size (seeds): the baseline and its seed noise
      batch_size: 16                  # the GLOBAL batch of every run (DiLoCo: M x batch_size / M)
      recipe: default                 # harness/ladder recipe: model, LR, warmup, schedule, steps
      arch: llama
      seq_len: 128
      vocab_size: 512
      n_boot: 200                     # bootstrap resamples of the power-law fits

Every run of a size is the ladder's run of (size, multiple) with `batch_size` (steps = D / tokens
per step): the same model, inner optimizer and LR schedule, batch and steps, so tokens and FLOPs
match. The data-parallel baseline (train.parallel=none: what M synchronous data-parallel workers
compute) is trained with `dp_seeds` seeds (base seed + 1000 k); each DiLoCo (M, H) cell is trained
at every outer LR of the grid with the base seed, and its best LR is the one the report uses
(a static grid: the best LR is only known within the grid, and an edge winner is flagged).

The report (diloco_scaling_report.py): final val loss vs N per (M, H) and data-parallel with
fitted power laws L = c N^k (harness/fit/powerlaw.py), the best outer LR vs N, and DiLoCo's gap
to data-parallel vs N, with a loud caveat when the gap's change across sizes is within the seed noise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiment.kinds import KINDS, ExperimentKind, Report, RunRequest
from harness.experiment.spec import ExperimentError, check_sizes

SECTION = "diloco_scaling"
SEED_STRIDE = 1000
_SET_BY_EXPERIMENT = ("run_dir=", "name=")


@KINDS.register(SECTION)
class DilocoScalingKind(ExperimentKind):
    @dataclass
    class Config:
        sizes: list[str] = field(default_factory=list)
        tokens_per_param: float = 4.0
        replicas: list[int] = field(default_factory=lambda: [1, 2, 4])
        inner_steps: list[int] = field(default_factory=lambda: [8, 32])
        outer_lrs: list[float] = field(default_factory=lambda: [0.4, 0.7, 1.0])
        outer_optimizer: str = "nesterov"
        outer_momentum: float = 0.9
        dp_seeds: int = 2
        batch_size: int = 16
        recipe: str = "default"
        arch: str = "llama"
        seq_len: int = 128
        vocab_size: int = 512
        n_boot: int = 200

        def validate(self) -> None:
            from harness.config import DilocoConfig
            from harness.checks import ConfigError

            s = SECTION
            check_sizes(s, self.sizes, "[d32, d64, d96] (2+ for a power law)")
            if not self.tokens_per_param > 0:
                raise ExperimentError(f"{s}.tokens_per_param: got {self.tokens_per_param}; must be positive")
            for name in ("replicas", "inner_steps", "outer_lrs"):
                values = getattr(self, name)
                if not values:
                    raise ExperimentError(f"{s}.{name}: give at least one value")
                if len(set(values)) != len(values):
                    raise ExperimentError(f"{s}.{name}: a value is given twice")
            if self.dp_seeds < 1:
                raise ExperimentError(f"{s}.dp_seeds: got {self.dp_seeds}; at least 1 (2+ to measure seed noise)")
            if self.n_boot < 0:
                raise ExperimentError(f"{s}.n_boot: got {self.n_boot}; 0 (no intervals) or more resamples")
            for name in ("batch_size", "seq_len", "vocab_size"):
                if not getattr(self, name) > 0:
                    raise ExperimentError(f"{s}.{name}: must be a positive integer")
            # Each DiLoCo setting must be a valid train.diloco section, the field named as the spec's.
            for m in self.replicas:
                for h in self.inner_steps:
                    for lr in self.outer_lrs:
                        try:
                            DilocoConfig(replicas=m, inner_steps=h, outer_optimizer=self.outer_optimizer,
                                         outer_lr=lr, outer_momentum=self.outer_momentum).validate(self.batch_size, None)
                        except ConfigError as err:
                            field_, _, message = str(err).partition(": ")
                            spec_field = {"train.diloco.replicas": "replicas", "train.diloco.inner_steps": "inner_steps",
                                          "train.diloco.outer_lr": "outer_lrs", "train.batch_size": "batch_size",
                                          "train.diloco.outer_optimizer": "outer_optimizer",
                                          "train.diloco.outer_momentum": "outer_momentum"}.get(field_, field_)
                            raise ExperimentError(f"{s}.{spec_field}: {message}") from None
            self.ladder_config()

        def ladder_config(self):
            from harness.ladder import LadderConfig, LadderError, get_recipe

            try:
                recipe = dataclasses.replace(get_recipe(self.recipe), tokens_per_param=self.tokens_per_param)
                return LadderConfig(recipe=recipe, arch=self.arch, vocab_size=self.vocab_size, seq_len=self.seq_len)
            except LadderError as err:
                raise ExperimentError(f"{SECTION}.{err}") from None

    def ladder_run(self, params: "DilocoScalingKind.Config", size: str):
        """The ladder's run of `size` at the spec's multiple, with the spec's global batch."""
        from harness.ladder import plan_ladder

        cfg = params.ladder_config()
        run = plan_ladder([size], cfg)[0]
        steps = max(1, round(run.D / (params.batch_size * run.seq_len)))
        warmup = cfg.recipe.warmup.warmup_steps(cfg.recipe.param_basis(run.model), params.batch_size * run.seq_len, steps)
        return dataclasses.replace(run, batch_size=params.batch_size, steps=steps, warmup_steps=warmup)

    def plan(self, spec) -> list[RunRequest]:
        from harness.ladder.overrides import format_value

        params: DilocoScalingKind.Config = spec.params
        base_seed = _base_seed(spec.base)
        requests = []
        for i, size in enumerate(map(str, params.sizes)):
            run = self.ladder_run(params, size)
            lines = tuple(line for line in run.overrides([]) if not line.startswith(_SET_BY_EXPERIMENT))
            common = {"size": size, "N": run.N, "N_non_embedding": run.N_non_embedding, "D": run.D,
                      "steps": run.steps, "batch_size": run.batch_size}
            for k in range(params.dp_seeds):
                seed = base_seed + SEED_STRIDE * k
                requests.append(RunRequest(overrides=(*lines, "train.parallel=none", f"train.seed={seed}"),
                                           settings={**common, "mode": "dp", "replicas": 1, "seed": seed},
                                           source=f"{SECTION}.sizes[{i}]"))
            for m in params.replicas:
                for h in params.inner_steps:
                    for lr in params.outer_lrs:
                        diloco = ("train.parallel=diloco", f"train.diloco.replicas={m}", f"train.diloco.inner_steps={h}",
                                  f"train.diloco.outer_optimizer={params.outer_optimizer}",
                                  f"train.diloco.outer_lr={format_value(lr)}",
                                  f"train.diloco.outer_momentum={format_value(params.outer_momentum)}")
                        requests.append(RunRequest(
                            overrides=(*lines, *diloco, f"train.seed={base_seed}"),
                            settings={**common, "mode": "diloco", "replicas": m, "inner_steps": h, "outer_lr": lr,
                                      "seed": base_seed},
                            source=f"{SECTION}.sizes[{i}] x replicas={m} x inner_steps={h} x outer_lrs={lr}"))
        return requests

    def plan_notes(self, spec) -> list[str]:
        params: DilocoScalingKind.Config = spec.params
        notes = []
        for size in map(str, params.sizes):
            run = self.ladder_run(params, size)
            few = [h for h in params.inner_steps if run.steps // h < 2]
            if few:
                notes.append(f"{size}: {run.steps} steps give fewer than 2 outer steps at inner_steps={few} "
                             "(the last step is always an outer step)")
        return notes

    def report(self, out_dir: Path, table, plan: dict[str, Any]) -> Report:
        from harness.experiment.diloco_scaling_report import diloco_scaling_report

        return diloco_scaling_report(out_dir, table, plan, self.Config(**plan["spec"][SECTION]))


def _base_seed(base: list[str]) -> int:
    for item in reversed(base):
        if item.startswith("train.seed="):
            return int(item.split("=", 1)[1])
    return 0
