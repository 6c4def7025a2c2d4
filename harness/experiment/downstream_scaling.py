"""Kind `downstream_scaling`: a ladder (kind `ladder`'s sizes x tokens per parameter) whose runs also
evaluate downstream tasks at their last step (train.eval_tasks, harness/eval), reported as
task error vs loss with the Gadre et al. error law, PassUntil pass rate vs compute, and the
probability mass on the correct choice (harness/experiment/downstream_scaling_report.py).

    kind: downstream_scaling
    downstream_scaling:
      sizes: [d32, d64, d96]            # every field of kind `ladder` (harness/experiment/ladder_kind.py)
      tokens_per_param: [5, 10]
      ...
      tasks: [pydoc_cloze, sequence_next]   # harness/eval/tasks: multiple-choice and generative
      held_out: largest                 # the size whose runs the error law does not see ("largest" or a size)
      eval_limit: null                  # items per task (null: all); train.eval_tasks_limit
      max_samples: 256                  # PassUntil cap per item; train.eval_tasks_max_samples

train.eval_tasks is not part of a run's identity, so a ladder trained earlier under the same spec maps
to the same run directories; those completed runs are skipped (not retrained), and the report names
the runs without evals: add them with `python -m harness.eval RUN_DIR --tasks ...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.experiment.kinds import KINDS, Report, RunRequest
from harness.experiment.ladder_kind import LadderKind
from harness.experiment.spec import ExperimentError


@KINDS.register("downstream_scaling")
class DownstreamScalingKind(LadderKind):
    @dataclass
    class Config(LadderKind.Config):
        tasks: list[str] = field(default_factory=lambda: ["pydoc_cloze", "sequence_next"])
        held_out: str = "largest"
        eval_limit: Optional[int] = None
        max_samples: int = 256

        def validate(self) -> None:
            try:
                super().validate()
            except ExperimentError as err:  # the ladder's checks name its own section
                raise ExperimentError(str(err).replace("ladder.", "downstream_scaling.")) from None
            if not self.tasks:
                raise ExperimentError("downstream_scaling.tasks: give at least one task, e.g. [pydoc_cloze, sequence_next]")
            from harness.eval.runner import TASKS_DIR

            known = sorted(p.stem for p in TASKS_DIR.glob("*.yaml"))
            for i, name in enumerate(self.tasks):
                if name not in known:
                    raise ExperimentError(f"downstream_scaling.tasks[{i}]: unknown task {name!r}; known: {known}")
            if self.held_out != "largest" and self.held_out not in self.sizes:
                raise ExperimentError(f"downstream_scaling.held_out: {self.held_out!r} is not one of the sizes "
                                      f"{self.sizes}; give 'largest' or one of them")

        def held_out_size(self) -> str:
            """The size whose runs the error law predicts without seeing them."""
            if self.held_out != "largest":
                return self.held_out
            from harness.ladder import size_spec

            return max(self.sizes, key=lambda s: size_spec(s).d_model ** 2 * size_spec(s).n_layers)  # ~ non-embedding N

    def plan(self, spec) -> list[RunRequest]:
        p = spec.params
        evals = (f"train.eval_tasks=[{','.join(p.tasks)}]", f"train.eval_tasks_max_samples={p.max_samples}",
                 f"train.eval_tasks_limit={'null' if p.eval_limit is None else p.eval_limit}")
        fields = ("downstream_scaling.tasks", "downstream_scaling.max_samples", "downstream_scaling.eval_limit")
        return [RunRequest(overrides=(*r.overrides, *evals), settings=r.settings, source=r.source,
                           fields=(*r.fields, *fields) if r.fields else ())
                for r in super().plan(spec)]

    def report(self, out_dir: Path, table, plan: dict[str, Any]) -> Report:
        from harness.experiment.downstream_scaling_report import downstream_report

        return downstream_report(out_dir, table, plan, self.Config(**plan["spec"]["downstream_scaling"]))
