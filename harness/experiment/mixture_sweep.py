"""Kind `mixture_sweep`: pre-train a base proxy, continue it on several general:domain ratios, and fit
the critical mixture ratio (CMR, harness/fit/laws/cmr.py) from the per-domain losses.

    kind: mixture_sweep
    base: [model=llama_tiny, data=gcide_code, ...]   # the data config must be a mixture (data.sources)
    mixture_sweep:
      general: general          # the two source names of data.sources
      domain: code
      base_steps: 600           # the base proxy: constant LR after warmup, on `base_ratio` domain data
      base_ratio: 0.0
      ratios: [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]     # domain share r of each continued run
      tokens: [2.0e5, 4.0e5, 8.0e5]               # continued-training tokens T read from each run

Runs (tokens_per_step = batch_size x seq_len):

* the base (stage 0): `train.steps=base_steps`, schedule constant after `base_warmup_steps`, its
  sampling weights {general: 1 - base_ratio, domain: base_ratio} from step 1 (data.weight_schedule;
  the sources' own weights stay as the data config gives them, so every run trains the SAME tokenizer);
* one continued run per ratio r (stage 1): `train.init_from=<base>/checkpoints/step_<base_steps>.pt`,
  `init_mode=weights` (+ the base's optimizer state with `init_optimizer`, default true), the same
  constant LR with no warmup (a continuation, not a restart), weights {general: 1 - r, domain: r},
  for round(max(tokens) / tokens_per_step) steps, with an eval (and a kept checkpoint) at the step of
  each T. One run per ratio gives every T: the LR is constant, so the loss after T tokens does not
  depend on how long the run goes on.

The report (mixture_sweep_report.py): per-domain val losses against ratio and tokens, the fitted loss
surfaces and the CMR at the largest T with a bootstrap interval (refused, with the reason, when the
sweep does not determine it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiment.kinds import KINDS, PARENT_RUN_DIR, ExperimentKind, Report, RunRequest
from harness.experiment.spec import ExperimentError


def weights_override(general: str, domain: str, ratio: float) -> str:
    """The data.weight_schedule override that samples `ratio` domain data from step 1 on."""
    return f"++data.weight_schedule=[{{step: 1, weights: {{{general}: {1 - ratio!r}, {domain}: {ratio!r}}}}}]"


@KINDS.register("mixture_sweep")
class MixtureSweepKind(ExperimentKind):
    @dataclass
    class Config:
        general: str = "general"
        domain: str = "code"
        base_steps: int = 200
        base_warmup_steps: int = 20
        base_ratio: float = 0.0
        ratios: list[float] = field(default_factory=list)
        tokens: list[float] = field(default_factory=list)
        batch_size: int = 16
        seq_len: int = 128
        init_optimizer: bool = True
        tolerance: float = 0.0  # how far the general loss may rise above the base's and still be feasible
        n_boot: int = 200
        level: float = 0.95

        def validate(self) -> None:
            if not self.general or not self.domain or self.general == self.domain:
                raise ExperimentError("mixture_sweep.general / domain: name two different sources of data.sources")
            for name in ("base_steps", "batch_size", "seq_len"):
                if not getattr(self, name) > 0:
                    raise ExperimentError(f"mixture_sweep.{name}: must be a positive integer")
            if not 0 <= self.base_warmup_steps < self.base_steps:
                raise ExperimentError("mixture_sweep.base_warmup_steps: must be in [0, base_steps)")
            if not 0 <= self.base_ratio <= 1:
                raise ExperimentError(f"mixture_sweep.base_ratio: got {self.base_ratio}; must be in [0, 1]")
            if len(self.ratios) < 3 or any(not 0 <= r <= 1 for r in self.ratios) or len(set(self.ratios)) != len(self.ratios):
                raise ExperimentError("mixture_sweep.ratios: give at least 3 distinct domain shares in [0, 1] "
                                      "(the CMR law fits a ratio exponent)")
            if len(self.tokens) < 1 or any(not t > 0 for t in self.tokens):
                raise ExperimentError("mixture_sweep.tokens: give at least one positive token count")
            steps = self.token_steps()
            if len(set(steps)) != len(steps) or min(steps) < 1:
                raise ExperimentError(f"mixture_sweep.tokens: {self.tokens} give the steps {steps} at "
                                      f"{self.batch_size * self.seq_len} tokens per step; each must be a distinct "
                                      "step >= 1: space them further apart")
            if self.tolerance < 0:
                raise ExperimentError("mixture_sweep.tolerance: must be >= 0")
            if self.n_boot < 0 or not 0 < self.level < 1:
                raise ExperimentError("mixture_sweep.n_boot / level: n_boot >= 0 and level in (0, 1)")

        def token_steps(self) -> list[int]:
            """The continued run's step at each T (sorted)."""
            per_step = self.batch_size * self.seq_len
            return [round(t / per_step) for t in sorted(self.tokens)]

    def plan(self, spec) -> list[RunRequest]:
        p: MixtureSweepKind.Config = spec.params
        shape = [f"train.batch_size={p.batch_size}", f"train.seq_len={p.seq_len}", "schedule=constant"]
        base = RunRequest(
            overrides=(*shape, f"train.steps={p.base_steps}", f"schedule.warmup_steps={p.base_warmup_steps}",
                       f"train.checkpoint_at=[{p.base_steps}]", weights_override(p.general, p.domain, p.base_ratio)),
            settings={"role": "base", "ratio": p.base_ratio, "steps": p.base_steps}, source="mixture_sweep.base_steps")
        steps = p.token_steps()
        requests = [base]
        for i, ratio in enumerate(p.ratios):
            requests.append(RunRequest(
                overrides=(*shape, f"train.steps={steps[-1]}", "schedule.warmup_steps=0",
                           f"train.checkpoint_at=[{','.join(map(str, steps))}]",
                           f"train.init_from={PARENT_RUN_DIR}/checkpoints/step_{p.base_steps:08d}.pt",
                           "train.init_mode=weights", f"train.init_optimizer={str(p.init_optimizer).lower()}",
                           weights_override(p.general, p.domain, float(ratio))),
                settings={"role": "continued", "ratio": float(ratio), "steps": steps[-1], "token_steps": steps},
                source=f"mixture_sweep.ratios[{i}]", parent=0))
        return requests

    def report(self, out_dir: Path, table, plan: dict[str, Any]) -> Report:
        from harness.experiment.mixture_sweep_report import mixture_report

        return mixture_report(out_dir, table, plan)
