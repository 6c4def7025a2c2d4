"""Kind `curve_prediction`: one proxy trained under many LR schedules, at several horizons and peak
LRs; the report fits every registered curve law on three curves and predicts all the others
(issue 12), then a second round trains the schedule the default law says is best against cosine and
WSD over several seeds (the multi-power law paper's schedule optimization, verified).

    kind: curve_prediction
    curve_prediction:
      horizons: [400, 800]            # train.steps; the FIRST is the fit horizon
      peak_lrs: [1.5e-3, 3e-3, 6e-3]  # optim.lr
      fit_lr: null                    # the fit curves' peak LR (null: the middle of peak_lrs)
      warmup_steps: 20                # the same warmup, in steps, for every run (so a constant run
                                      # of one horizon is the first steps of a longer one)
      eval_every: 10                  # dense val evals: the prediction target is val_loss
      schedules:                      # name -> overrides selecting the schedule (conf/schedule/*)
        constant: [schedule=constant]
        cosine: [schedule=cosine, schedule.min_lr_ratio=0.0]
        wsd_lin20: [schedule=wsd, schedule.cooldown=linear, schedule.decay_fraction=0.2]
        two_step: [schedule=step, schedule.step_fractions=[0.5,0.75], schedule.step_multipliers=[0.3,0.1]]
      fit_schedules: [constant, cosine, wsd_lin20]   # fitted at the fit horizon and fit LR
      branch: true                    # runs that equal `constant` up to a step start from its checkpoint
      curve_seeds: 1                  # every curve trained with this many seeds (seed k: base + 1000 k);
                                      # the report fits and scores their mean curves
      optimize:                       # round 2 (null or enabled: false: none)
        enabled: true
        seeds: 3                      # the optimized schedule and each `compare` schedule, seeds 0..k
        compare: [cosine, wsd_sqrt20]
        horizon: null                 # train.steps of round 2 (null: the fit horizon)
        law: null                     # the law whose final loss is minimized (null: DEFAULT_CURVE_LAW)
        n_knots: 4                    # harness/fit/schedule_opt.py DecayFamily
        end_ratio: 0.0
        level: 0.95                   # the intervals of the final-loss differences

Runs (round 0), per peak LR:
* with `branch` (and a `constant` schedule): ONE constant run at the longest horizon, its
  checkpoints kept at every branch step (`train.checkpoint_at`); the constant curve of a shorter
  horizon is its first steps (the warmup is in steps and batches are a function of (seed, step), so
  it IS that run). Every other (schedule, horizon) whose LR equals the constant's up to some step s
  after warmup (WSD, step decays: found by evaluating both schedules with the trainer's own code)
  starts from the parent's checkpoint at s (`train.init_from`, resume mode); the rest (cosine)
  train from scratch. Without `branch`, every (schedule, horizon) is an independent run.
With `curve_seeds` = n > 1 all of round 0 is planned n times (seed k: the base seed + 1000 k, its branches off
the same seed's constant run), and the report fits and scores each curve's mean over its seeds: on small
proxies one run's curve carries a seed offset of ~1-2 % that no law can predict (README, "Which curve law by
default"), and the mean shrinks it by ~sqrt(n). The report gives the seeds' spread next to the errors.
Round 2 (`rounds = True`, `replan`): once the fit curves are done, the default law is fitted on them
and harness/fit/schedule_opt.py minimizes its final loss at the round-2 horizon and the fit LR; the
optimized `piecewise` schedule and every `compare` schedule are trained with `seeds` seeds (seed k:
the base seed + 1000 k; independent runs). The optimization is computed once and kept in
DIR/optimized_schedule.json (keyed by the fit runs' ids and the settings), so later re-plans see
the same schedule (and so the same run ids) even if a refit would differ in the last digit. With
`curve_seeds` > 1 the optimization fits the seed-mean fit curves, as the report does.

The report: curve_prediction_report.py.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.experiment.curve_prediction_curves import (OPT_FILE, OPTIMIZED, SECTION, CurveKey, load_curve,
                                                         run_lrs, seed_mean, truncated)
from harness.experiment.kinds import KINDS, PARENT_RUN_DIR, ExperimentKind, Report, RunRequest
from harness.experiment.spec import ExperimentError

SEED_STRIDE = 1000


@dataclass
class OptimizeConfig:
    enabled: bool = True
    seeds: int = 3
    compare: list[str] = field(default_factory=lambda: ["cosine", "wsd_sqrt20"])
    horizon: Optional[int] = None
    law: Optional[str] = None
    n_knots: int = 4
    end_ratio: float = 0.0
    level: float = 0.95


@KINDS.register(SECTION)
class CurvePredictionKind(ExperimentKind):
    rounds = True

    @dataclass
    class Config:
        horizons: list[int] = field(default_factory=list)
        peak_lrs: list[float] = field(default_factory=list)
        fit_lr: Optional[float] = None
        warmup_steps: int = 20
        eval_every: int = 10
        # No default: a mapping field would merge the spec's entries into it (the presets list them).
        schedules: dict[str, list[str]] = field(default_factory=dict)
        fit_schedules: list[str] = field(default_factory=lambda: ["constant", "cosine", "wsd_lin20"])
        branch: bool = True
        curve_seeds: int = 1
        optimize: OptimizeConfig = field(default_factory=OptimizeConfig)

        @property
        def fit_horizon(self) -> int:
            return int(self.horizons[0])

        @property
        def fit_peak_lr(self) -> float:
            if self.fit_lr is not None:
                return float(self.fit_lr)
            ordered = sorted(self.peak_lrs)
            return float(ordered[(len(ordered) - 1) // 2])

        @property
        def opt_horizon(self) -> int:
            return int(self.optimize.horizon or self.fit_horizon)

        def validate(self) -> None:
            s = SECTION
            if not self.horizons or any(int(h) != h or h <= self.warmup_steps for h in self.horizons):
                raise ExperimentError(f"{s}.horizons: got {self.horizons}; give train.steps of each horizon "
                                      f"(integers > warmup_steps={self.warmup_steps}), the fit horizon first, e.g. [400, 800]")
            if len(set(self.horizons)) != len(self.horizons):
                raise ExperimentError(f"{s}.horizons: a horizon is given twice ({self.horizons})")
            if not self.peak_lrs or any(not lr > 0 for lr in self.peak_lrs) or len(set(self.peak_lrs)) != len(self.peak_lrs):
                raise ExperimentError(f"{s}.peak_lrs: got {self.peak_lrs}; give distinct positive peak LRs (optim.lr)")
            if self.fit_lr is not None and self.fit_lr not in self.peak_lrs:
                raise ExperimentError(f"{s}.fit_lr: got {self.fit_lr}; must be one of peak_lrs {self.peak_lrs} (or null: the middle)")
            if self.warmup_steps < 0:
                raise ExperimentError(f"{s}.warmup_steps: got {self.warmup_steps}; must be >= 0")
            if self.eval_every < 1:
                raise ExperimentError(f"{s}.eval_every: got {self.eval_every}; a positive number of steps")
            if not self.schedules:
                raise ExperimentError(f"{s}.schedules: give the schedules as name -> overrides, e.g. "
                                      "{constant: [schedule=constant], cosine: [schedule=cosine]}")
            for name, overrides in self.schedules.items():
                if name == OPTIMIZED or not name.replace("_", "").isalnum():
                    raise ExperimentError(f"{s}.schedules.{name}: name schedules with letters, digits and '_' "
                                          f"(not {OPTIMIZED!r}, the round-2 schedule)")
                if not overrides or any("=" not in o or not o.startswith("schedule") for o in overrides):
                    raise ExperimentError(f"{s}.schedules.{name}: got {overrides}; give schedule overrides "
                                          "(schedule=NAME, schedule.FIELD=VALUE)")
            for i, name in enumerate(self.fit_schedules):
                if name not in self.schedules:
                    raise ExperimentError(f"{s}.fit_schedules[{i}]: {name!r} is not in schedules "
                                          f"({', '.join(self.schedules)})")
            if not self.fit_schedules:
                raise ExperimentError(f"{s}.fit_schedules: give the curves the laws are fitted on (2-3)")
            if not (isinstance(self.curve_seeds, int) and self.curve_seeds >= 1):
                raise ExperimentError(f"{s}.curve_seeds: got {self.curve_seeds!r}; a whole number >= 1 (seeds per curve, "
                                      "averaged by the report)")
            if self.branch and "constant" not in self.schedules:
                raise ExperimentError(f"{s}.branch: branching needs a schedule named 'constant' (the parent); "
                                      "add it to schedules or set branch: false")
            o = self.optimize
            if o.enabled:
                if o.seeds < 1:
                    raise ExperimentError(f"{s}.optimize.seeds: got {o.seeds}; at least 1 (3 for an interval)")
                for i, name in enumerate(o.compare):
                    if name not in self.schedules:
                        raise ExperimentError(f"{s}.optimize.compare[{i}]: {name!r} is not in schedules")
                if o.horizon is not None and not o.horizon > self.warmup_steps:
                    raise ExperimentError(f"{s}.optimize.horizon: got {o.horizon}; train.steps > warmup_steps, or null")
                if o.law is not None:
                    from harness.fit.registry import CURVE_LAWS

                    if o.law not in CURVE_LAWS:
                        raise ExperimentError(f"{s}.optimize.law: got {o.law!r}; choose one of {', '.join(CURVE_LAWS)} "
                                              "or null (the default law)")
                if not 1 <= o.n_knots <= 12:
                    raise ExperimentError(f"{s}.optimize.n_knots: got {o.n_knots}; use 1..12")
                if not 0 <= o.end_ratio < 1:
                    raise ExperimentError(f"{s}.optimize.end_ratio: got {o.end_ratio}; the final LR / peak, in [0, 1)")
                if not 0 < o.level < 1:
                    raise ExperimentError(f"{s}.optimize.level: got {o.level}; in (0, 1), e.g. 0.95")

    # ------------------------------------------------------------------ round 0

    def plan(self, spec) -> list[RunRequest]:
        return self.round0(spec)[0]

    def round0(self, spec) -> tuple[list[RunRequest], dict[CurveKey, int]]:
        """Round-0 requests and, for every curve, the index of the run it is read from (a shorter
        constant curve: the longest constant run's)."""
        p: CurvePredictionKind.Config = spec.params
        requests: list[RunRequest] = []
        where: dict[CurveKey, int] = {}
        longest = max(int(h) for h in p.horizons)
        for seed_index, lr in ((k, float(lr)) for k in range(p.curve_seeds) for lr in p.peak_lrs):
            parent_at = None
            branches: list[tuple[CurveKey, int]] = []
            if p.branch:
                steps = sorted({s for name in p.schedules if name != "constant" for h in p.horizons
                                if (s := self.branch_step(spec, name, int(h), lr)) is not None})
                parent = CurveKey("constant", longest, lr, seed_index)
                extra = [f"train.checkpoint_at=[{','.join(map(str, steps))}]"] if steps else []
                parent_at = len(requests)
                requests.append(self.request(spec, parent, "parent", extra=extra))
                for h in p.horizons:
                    where[CurveKey("constant", int(h), lr, seed_index)] = parent_at
            for name in p.schedules:
                for h in p.horizons:
                    key = CurveKey(name, int(h), lr, seed_index)
                    if key in where:
                        continue
                    step = self.branch_step(spec, name, int(h), lr) if p.branch else None
                    if step is not None:
                        branches.append((key, step))
                        continue
                    where[key] = len(requests)
                    requests.append(self.request(spec, key, "run"))
            for key, step in branches:
                where[key] = len(requests)
                init = f"train.init_from={PARENT_RUN_DIR}/checkpoints/step_{step:08d}.pt"
                requests.append(self.request(spec, key, "branch", extra=[init], parent=parent_at,
                                             more={"branch_step": step}))
        return requests, where

    def request(self, spec, key: CurveKey, role: str, *, extra: tuple[str, ...] | list[str] = (),
                parent: Optional[int] = None, more: Optional[dict[str, Any]] = None,
                schedule_overrides: Optional[list[str]] = None) -> RunRequest:
        p: CurvePredictionKind.Config = spec.params
        sched = list(schedule_overrides if schedule_overrides is not None else p.schedules[key.schedule])
        seed = _base_seed(spec) + SEED_STRIDE * key.seed_index
        overrides = (*sched, f"schedule.warmup_steps={p.warmup_steps}", f"train.steps={key.horizon}",
                     f"optim.lr={key.peak_lr!r}", f"train.eval_every={p.eval_every}", f"train.seed={seed}", *extra)
        settings = {"schedule": key.schedule, "horizon": key.horizon, "peak_lr": key.peak_lr, "role": role,
                    "seed": seed, "seed_index": key.seed_index, **(more or {})}
        source = f"{SECTION}.schedules.{key.schedule}" if key.schedule in p.schedules else f"{SECTION}.optimize"
        return RunRequest(overrides=overrides, settings=settings, source=source, parent=parent)

    def branch_step(self, spec, name: str, horizon: int, peak_lr: float) -> Optional[int]:
        """The last step s (warmup < s < horizon) up to which schedule `name` has exactly the constant
        parent's LR, or None (it differs right after warmup, or never: a constant)."""
        p: CurvePredictionKind.Config = spec.params
        if name == "constant":
            return None
        mine = run_lrs(tuple(spec.base), tuple(p.schedules[name]), p.warmup_steps, horizon, peak_lr)
        flat = run_lrs(tuple(spec.base), tuple(p.schedules["constant"]), p.warmup_steps, horizon, peak_lr)
        same = 0
        while same < horizon and mine[same] == flat[same]:
            same += 1
        return same if p.warmup_steps < same < horizon else None

    # ------------------------------------------------------------------ round 2

    def replan(self, spec, results) -> list[RunRequest]:
        requests, where = self.round0(spec)
        opt = self.optimized(spec, results, requests, where)
        return requests + (self.round2(spec, opt) if opt else [])

    def round2(self, spec, opt: dict[str, Any]) -> list[RunRequest]:
        p: CurvePredictionKind.Config = spec.params
        out = []
        for k in range(p.optimize.seeds):
            key = CurveKey(OPTIMIZED, p.opt_horizon, p.fit_peak_lr, k)
            out.append(self.request(spec, key, "optimized", schedule_overrides=_schedule_overrides(opt),
                                    more={"round": 2, "knot_fractions": opt["schedule"]["knot_fractions"],
                                          "knot_multipliers": opt["schedule"]["knot_multipliers"]}))
            for name in p.optimize.compare:
                out.append(self.request(spec, CurveKey(name, p.opt_horizon, p.fit_peak_lr, k), "compare",
                                        more={"round": 2}))
        return out

    def optimized(self, spec, results, requests: list[RunRequest], where: dict[CurveKey, int]) -> Optional[dict[str, Any]]:
        """The optimized schedule (schedule_opt's to_json + its key), once the fit curves are done;
        computed once and kept in DIR/optimized_schedule.json."""
        p: CurvePredictionKind.Config = spec.params
        if not p.optimize.enabled:
            return None
        fit_keys = [CurveKey(name, p.fit_horizon, p.fit_peak_lr, k) for k in range(p.curve_seeds)
                    for name in p.fit_schedules]
        fit_runs = []
        for key in fit_keys:
            request = requests[where[key]]
            if request.parent is not None:  # a branch: look it up under its parent's real directory
                parent_dir = str(results.of(requests[request.parent]).run_dir)
                request = RunRequest(overrides=tuple(o.replace(PARENT_RUN_DIR, parent_dir) for o in request.overrides),
                                     source=request.source)
            result = results.of(request)
            if result.state != "completed":
                return None
            fit_runs.append((key, result))
        from harness.fit.registry import DEFAULT_CURVE_LAW

        law_name = p.optimize.law or DEFAULT_CURVE_LAW
        ident = {"fit_runs": [r.run_id for _, r in fit_runs], "law": law_name, "horizon": p.opt_horizon,
                 "peak_lr": p.fit_peak_lr, "warmup_steps": p.warmup_steps, "n_knots": p.optimize.n_knots,
                 "end_ratio": p.optimize.end_ratio, "compare": list(p.optimize.compare)}
        path = results.runs_root.parent / OPT_FILE
        if path.is_file():
            try:
                kept = json.loads(path.read_text())
                if kept.get("key") == ident:
                    return kept
            except (OSError, ValueError):
                pass
        by_schedule: dict[str, list] = {}
        for key, result in fit_runs:
            curve = load_curve(result.run_dir / "curve.jsonl", key, p.warmup_steps)
            by_schedule.setdefault(key.schedule, []).append(truncated(curve, key.horizon))
        try:
            curves = [seed_mean(seeds, name)[0] for name, seeds in by_schedule.items()]
            opt = optimize_on(spec, curves, law_name)
        except (ValueError, RuntimeError) as err:
            # A fit or search that fails must not stop the experiment: round 2 is left out, said so.
            print(f"warning: {SECTION}: schedule optimization failed ({err}); no round 2", file=sys.stderr)
            return None
        record = {"key": ident, **opt}
        from harness.files import atomic_write_json

        atomic_write_json(path, record)
        return record

    def plan_notes(self, spec) -> list[str]:
        p: CurvePredictionKind.Config = spec.params
        if not p.optimize.enabled:
            return []
        return [f"{SECTION}: round 2 (the optimized schedule vs {', '.join(p.optimize.compare)}, "
                f"{p.optimize.seeds} seed(s) each) is planned once the fit curves "
                f"({', '.join(p.fit_schedules)} at {p.fit_horizon} steps, peak LR {p.fit_peak_lr:g}) are done"]

    def report(self, out_dir: Path, table, plan: dict[str, Any]) -> Report:
        from harness.experiment.curve_prediction_report import curve_prediction_report

        return curve_prediction_report(out_dir, table, plan)


def optimize_on(spec, curves: list, law_name: str) -> dict[str, Any]:
    """Fit `law_name` on `curves` and minimize its final loss at the round-2 horizon and fit LR;
    schedule_opt's JSON plus the fit's parameters."""
    import numpy as np

    from harness.experiment.compose import compose_run
    from harness.fit.fitter import fit_law
    from harness.fit.registry import CURVE_LAWS
    from harness.fit.schedule_opt import DecayFamily, optimize_schedule

    p: CurvePredictionKind.Config = spec.params
    law = CURVE_LAWS[law_name]()
    y = np.concatenate([c.loss[c.eval_index()] for c in curves])
    fit = fit_law(law, law.prepare(curves), y)
    refs = {name: compose_run([*spec.base, *p.schedules[name], f"schedule.warmup_steps={p.warmup_steps}",
                               f"train.steps={p.opt_horizon}"], f"{SECTION}.optimize.compare").schedule
            for name in p.optimize.compare}
    best = optimize_schedule(law, fit.theta, total_steps=p.opt_horizon, peak_lr=p.fit_peak_lr,
                             warmup_steps=p.warmup_steps, references=refs,
                             family=DecayFamily(n_knots=p.optimize.n_knots, end_ratio=p.optimize.end_ratio))
    return {**best.to_json(), "law": law_name, "fit": fit.to_json()}


def _schedule_overrides(opt: dict[str, Any]) -> list[str]:
    """The schedule overrides of the optimized schedule, without its warmup (request() adds it)."""
    return [o for o in opt["overrides"] if not o.startswith("schedule.warmup_steps=")]


def _base_seed(spec) -> int:
    for item in reversed(spec.base):
        if item.startswith("train.seed="):
            return int(item.split("=", 1)[1])
    return 0
