"""Experiments: one question answered end to end: plan -> launch -> status -> report.

    python -m harness.experiment plan   SPEC [overrides] [--dir DIR] [--tokens-per-s X]
    python -m harness.experiment run    SPEC [overrides] [--dir DIR] [--launcher local|submitit_local|slurm|slurm_cpu]
                                        [--launcher-arg hydra.launcher.KEY=VALUE ...] [--no-wait]
    python -m harness.experiment launch DIR [--launcher ...]    (the existing plan; waits)
    python -m harness.experiment status DIR
    python -m harness.experiment report DIR

SPEC is conf/experiment/<SPEC>.yaml (or a path); overrides change it (dotlist: `name=x`,
`grid.axes.optim.lr=[1e-3,3e-3]`). DIR defaults to experiments/<name>. `plan` writes DIR/plan.csv
(run id = config hash, overrides, N, N_non_embedding, D, FLOPs, estimated time) and DIR/plan.json
and trains nothing. `run` plans, then launches the runs not yet completed as ONE Hydra multirun
(one Slurm job array with slurm) into DIR/runs/<run id>; partial runs resume. `status` counts the
runs by state. `report` collects DIR/runs.csv (+ parquet) and writes DIR/report.md, report.json and
the kind's plots. Exit codes: 2 bad spec or overrides (nothing written or launched), 1 a run did
not complete or another failure.

Modules, one job each:
  spec.py     the typed spec (ExperimentSpec) and load_spec
  kinds.py    the kind registry (KINDS), ExperimentKind, RunRequest, Report
  grid.py     kind `grid` (axes product and/or explicit runs); grid_report.py its report
  ladder_kind.py  kind `ladder` (sizes x tokens per parameter / FLOP budgets); ladder_report.py its
              report, on scaling_fit.py (Chinchilla Approach 3 with bootstrap intervals, shared)
  cooldown.py kind `cooldown_branches` (one constant-LR parent per size + cooldown branches, vs
              independent runs); cooldown_report.py its report
  optimizer_comparison.py  kind `optimizer_comparison` (optimizers tuned per cell by coordinate descent,
              planned in rounds; coordinate_descent.py the walk), optimizer_comparison_report.py its
              report, on speedup.py (the baseline law L(D), D_eff / D with bootstrap intervals)
  curve_prediction.py  kind `curve_prediction` (one proxy under many schedules x horizons x peak LRs,
              WSD / step runs branched off the constant run; round 2 trains the schedule the default
              curve law optimizes, harness/fit/schedule_opt.py); curve_prediction_report.py its report
              (every curve law fitted on 3 curves, predicting the rest; paired seed differences);
              curve_prediction_curves.py the curve keys and readers both share
  diloco_scaling.py  kind `diloco_scaling` (DiLoCo M x H x outer LR grid vs data-parallel at matched tokens
              across sizes); diloco_scaling_report.py its report (power laws in N, best outer LR, gap vs N)
  mixture_sweep.py  kind `mixture_sweep` (a base proxy continued on several general:domain ratios,
              per-domain losses vs ratio and tokens, the CMR law); mixture_sweep_report.py its report
  power_scheduler.py  kind `power_scheduler` (WSD LR sweeps over batch sizes x token counts);
              power_scheduler_report.py its report (eta_opt = a beta n^b, the fitted schedule=power)
  results.py  the results of the runs done so far by config hash (for kinds that plan in rounds)
  downstream_scaling.py  kind `downstream_scaling` (a ladder whose runs evaluate downstream tasks,
              harness/eval); downstream_scaling_report.py its report (Gadre error law with a held-out
              size, PassUntil law vs compute, probability mass on the correct choice)
  plan.py     requests -> composed, validated RunConfigs -> PlannedRun rows, plan.csv / plan.json
  launch.py   the one Hydra multirun over the plan's indices; job.py the job it runs
  status.py   each run's state from its status.json
  report.py   collect + the kind's report, written atomically
  cli.py      the command line
"""

from harness.experiment import grid  # noqa: E402,F401  (registers kind `grid`; a new kind's module goes here)
from harness.experiment import ladder_kind  # noqa: E402,F401  (registers kind `ladder`)
from harness.experiment import cooldown  # noqa: E402,F401  (kind `cooldown_branches`)
from harness.experiment import optimizer_comparison  # noqa: E402,F401  (kind `optimizer_comparison`)
from harness.experiment import curve_prediction  # noqa: E402,F401  (kind `curve_prediction`)
from harness.experiment import diloco_scaling  # noqa: E402,F401  (kind `diloco_scaling`)
from harness.experiment import downstream_scaling  # noqa: E402,F401  (kind `downstream_scaling`)
from harness.experiment import mixture_sweep  # noqa: E402,F401  (kind `mixture_sweep`)
from harness.experiment import power_scheduler  # noqa: E402,F401  (kind `power_scheduler`)
