"""Kind `power_scheduler`: WSD learning-rate sweeps over (batch size, token count) cells, the
Power Scheduler's eta_opt = a * beta * n^b fitted from them (Shen et al. 2024), and a runnable
`schedule=power` with the fitted (a, b).

    kind: power_scheduler
    power_scheduler:
      batch_sizes: [4, 8]              # beta: sequences per step
      tokens: [2560, 5120, 10240]      # n: tokens each run trains on (steps = n / (beta x seq_len))
      lrs: [1e-3, 3e-3, 1e-2]          # the peak LRs swept in every cell, or (lrs empty) ...
      lr_factors: [0.25, 0.5, 1, 2, 4] # ... multiples of a prior guess prior_a * beta * n^prior_b per cell
      prior_a: 4.6                     # the paper's constants (with muP) as the default guess
      prior_b: -0.51
      seq_len: 32
      decay_fraction: 0.1              # WSD: the last 10% of the steps decay (the paper's WSD setting)
      warmup_fraction: 0.1

Every run is `base` + `schedule=wsd` with the cell's batch, steps and peak LR. The model comes from
`base` (one model: the paper finds a, b about the same across sizes with muP). The report
(power_scheduler_report.py) takes each cell's best LR (vertex of loss vs log lr), fits a and b by
harness/fit/power_scheduler.py with bootstrap intervals over cells, and writes
power_scheduler_fit.json (the JSON `python -m harness.fit powersched` writes, which the ladder's
`--power-scheduler-json` reads) and the run overrides `schedule=power schedule.power_a=...
schedule.power_b=...`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiment.kinds import KINDS, ExperimentKind, Report, RunRequest
from harness.experiment.spec import ExperimentError

SECTION = "power_scheduler"


@dataclass(frozen=True)
class Cell:
    batch_size: int    # sequences per step (beta)
    tokens: float      # requested n
    steps: int

    def actual_tokens(self, seq_len: int) -> int:
        return self.steps * self.batch_size * seq_len


@KINDS.register(SECTION)
class PowerSchedulerKind(ExperimentKind):
    @dataclass
    class Config:
        batch_sizes: list[int] = field(default_factory=list)
        tokens: list[float] = field(default_factory=list)
        lrs: list[float] = field(default_factory=list)
        lr_factors: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])
        prior_a: float = 4.6
        prior_b: float = -0.51
        seq_len: int = 32
        decay_fraction: float = 0.1
        warmup_fraction: float = 0.1
        n_boot: int = 200
        level: float = 0.95
        # A cell whose best LR is the smallest or largest swept is an error in the report (the fit
        # is refused and no schedule is written); true: a warning, and the fit uses the edge value.
        allow_edge: bool = False

        def validate(self) -> None:
            where = SECTION
            if len(self.batch_sizes) < 1 or any(int(b) != b or b < 1 for b in self.batch_sizes):
                raise ExperimentError(f"{where}.batch_sizes: give one or more positive integers (sequences per step)")
            if len(set(self.batch_sizes)) != len(self.batch_sizes):
                raise ExperimentError(f"{where}.batch_sizes: a batch size is given twice")
            if len(set(self.tokens)) < 2 or any(not t > 0 for t in self.tokens):
                raise ExperimentError(f"{where}.tokens: give at least two distinct positive token counts "
                                      "(the exponent b needs them)")
            swept = self.lrs if self.lrs else self.lr_factors
            name = "lrs" if self.lrs else "lr_factors"
            if len(set(swept)) < 3 or any(not v > 0 for v in swept):
                raise ExperimentError(f"{where}.{name}: give at least 3 distinct positive values (a valley in "
                                      "the LR needs 3 points)")
            if not self.lrs and not self.prior_a > 0:
                raise ExperimentError(f"{where}.prior_a: must be positive (the guess the lr_factors multiply)")
            if not self.seq_len > 0:
                raise ExperimentError(f"{where}.seq_len: must be a positive integer")
            if not 0 < self.decay_fraction < 1:
                raise ExperimentError(f"{where}.decay_fraction: got {self.decay_fraction}; must be in (0, 1)")
            if not 0 <= self.warmup_fraction < 1 - self.decay_fraction:
                raise ExperimentError(f"{where}.warmup_fraction: got {self.warmup_fraction}; must be >= 0 and "
                                      "leave a stable phase before the decay")
            if self.n_boot < 0:
                raise ExperimentError(f"{where}.n_boot: must be >= 0 (0: no intervals)")
            if not 0 < self.level < 1:
                raise ExperimentError(f"{where}.level: got {self.level}; must be in (0, 1), e.g. 0.95")
            cells(self)  # every cell must have at least one step

    def plan(self, spec) -> list[RunRequest]:
        params: PowerSchedulerKind.Config = spec.params
        requests = []
        for cell in cells(params):
            for lr in cell_lrs(params, cell):
                settings = {"batch_size": cell.batch_size, "tokens": cell.actual_tokens(params.seq_len),
                            "steps": cell.steps, "lr": lr, "seq_len": params.seq_len}
                overrides = ("schedule=wsd", f"train.batch_size={cell.batch_size}", f"train.seq_len={params.seq_len}",
                             f"train.steps={cell.steps}", f"optim.lr={lr!r}",
                             f"schedule.decay_fraction={params.decay_fraction!r}", "schedule.warmup_steps=null",
                             f"schedule.warmup_fraction={params.warmup_fraction!r}")
                fields = ("kind", f"{SECTION}.batch_sizes", f"{SECTION}.seq_len", f"{SECTION}.tokens",
                          f"{SECTION}.lrs" if params.lrs else f"{SECTION}.lr_factors", f"{SECTION}.decay_fraction",
                          f"{SECTION}.warmup_fraction", f"{SECTION}.warmup_fraction")
                requests.append(RunRequest(overrides=overrides, settings=settings, source=SECTION, fields=fields))
        return requests

    def plan_notes(self, spec) -> list[str]:
        params: PowerSchedulerKind.Config = spec.params
        notes = []
        for c in cells(params):
            if c.actual_tokens(params.seq_len) != round(c.tokens):
                notes.append(f"cell beta={c.batch_size}: {c.tokens:g} tokens rounds to {c.steps} steps = "
                             f"{c.actual_tokens(params.seq_len)} tokens (the fit uses the actual count)")
        return notes

    def report(self, out_dir: Path, table, plan: dict[str, Any]) -> Report:
        from harness.experiment.power_scheduler_report import power_scheduler_report

        return power_scheduler_report(out_dir, table, plan)


def cells(params: "PowerSchedulerKind.Config") -> list[Cell]:
    """The (beta, n) cells, steps = round(n / (beta x seq_len)); a cell of < 1 step is an error."""
    out = []
    for b in params.batch_sizes:
        for n in sorted(params.tokens):
            steps = round(n / (int(b) * params.seq_len))
            if steps < 1:
                raise ExperimentError(f"{SECTION}.tokens: {n:g} tokens is less than one step of {int(b)} x "
                                      f"{params.seq_len} tokens; raise it or lower the batch size")
            out.append(Cell(batch_size=int(b), tokens=float(n), steps=steps))
    return out


def cell_lrs(params: "PowerSchedulerKind.Config", cell: Cell) -> list[float]:
    """The peak LRs swept in a cell: `lrs` as given, else `lr_factors` x the prior's eta_opt there."""
    if params.lrs:
        return [float(v) for v in sorted(params.lrs)]
    guess = params.prior_a * cell.batch_size * cell.actual_tokens(params.seq_len) ** params.prior_b
    return [float(f"{guess * f:.4g}") for f in sorted(params.lr_factors)]
