"""Planning: a spec -> its kind's run requests -> one composed, validated RunConfig per run.

Each run's config is conf/config.yaml composed with `base + request overrides` exactly as
`python -m harness.train` composes its command line (harness/ladder/overrides.py compose_base); its
id is the config hash (harness/identity.py) and its directory `DIR/runs/<id>`. The model's vocab
size is only known from the tokenizer at train time, so N and FLOPs are planned with
`data.vocab_size` (as the ladder does). The time is an estimate: D / tokens_per_s, one throughput
for every run.

Data honesty: each distinct data config is prepared once (tokenized and cached, as training would)
to count the unique tokens of its training split; a run whose D exceeds them repeats data, and the
plan says so (`epochs` column, a note per run). Hub datasets (`hf:` sources) are not downloaded to
plan: their unique tokens show as unknown. `check_data=False` (`--no-data-check`) skips this.

Runs that start from another run of the plan (RunRequest.parent, e.g. cooldown branches) get the
parent's run directory in place of PARENT_RUN_DIR, `stage` = parent's stage + 1 and `parent` = the
parent's run id: `run` launches stage by stage (harness/experiment/launch.py).

Rounds: a kind with `rounds = True` (kinds.py) is planned by `replan(spec, results)` with the
results of the runs already in DIR/runs (results.py), so `plan` shows round 0 plus what finished
runs imply; a re-plan of the same spec keeps every earlier run at its index (`keep_order`) and
appends the new ones, and the files are rewritten atomically each round.

Written: `DIR/plan.csv` (a table for people) and `DIR/plan.json` (what `run`, `status` and `report`
read: the spec, and per run its id, settings and the full `python -m harness.train` overrides).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.data.repetition import UniqueTokens
from harness.experiment.compose import compose_run
from harness.experiment.kinds import KINDS, PARENT_RUN_DIR, RunRequest
from harness.experiment.spec import ExperimentError, ExperimentSpec
from harness.files import atomic_write_json, atomic_write_text
from harness.formatting import duration, short_number

PLAN_COLUMNS = ("index", "run_id", "stage", "start_step", "overrides", "N", "N_non_embedding", "D", "unique_tokens", "epochs",
                "flops", "est_seconds")


@dataclass(frozen=True)
class PlannedRun:
    index: int
    run_id: str           # the config hash: the run's identity and directory name
    overrides: str        # the kind's overrides for this run (on top of the spec's base), one string
    settings: dict[str, Any]
    N: int
    N_non_embedding: int
    steps: int
    D: int                # tokens: steps x batch x seq_len
    flops: float          # D x FLOPs per token (harness/models/flops.py)
    est_seconds: Optional[float]
    run_dir: str
    train_overrides: list[str]  # `python -m harness.train` arguments that train exactly this run
    stage: int = 0                        # launched after every run of a lower stage
    start_step: int = 0                   # a branch continues its parent from this step
    parent: Optional[str] = None          # the run id this run starts from (stage = parent's + 1)
    unique_tokens: Optional[int] = None   # of the training split; None: not counted (hub data)
    epochs: Optional[float] = None        # D / unique_tokens: > 1 repeats data

    def row(self) -> dict[str, Any]:
        return {c: getattr(self, c) for c in PLAN_COLUMNS}


def _blame_one_override(base: Sequence[str], request: RunRequest) -> None:
    """Raise the error of the first override that fails alone on `base`, naming its spec field."""
    for i, item in enumerate(request.overrides):
        compose_run([*base, item], request.field_of(i))


def plan_experiment(spec: ExperimentSpec, out_dir: Path, tokens_per_s: Optional[float] = None,
                    check_data: bool = True) -> tuple[list[PlannedRun], list[str]]:
    """The spec's runs, deduplicated by config hash; returns (runs, notes)."""
    from harness.identity import config_hash
    from harness.ladder.overrides import format_value
    from harness.models import flops

    from harness.experiment.results import RunResults

    kind = KINDS.get(spec.kind)()
    if kind.rounds:
        compose_run(spec.base, "base")  # before the kind composes its requests to look results up
        requests: list[RunRequest] = kind.replan(spec, RunResults(spec.base, out_dir))
    else:
        requests = kind.plan(spec)
    if not requests:
        raise ExperimentError(f"{spec.kind}: the spec plans no run; give it at least one")
    compose_run(spec.base, "base")
    throughput = tokens_per_s or spec.tokens_per_s
    root = Path(out_dir).resolve()
    runs: list[PlannedRun] = []
    notes: list[str] = kind.plan_notes(spec)
    seen: dict[str, int] = {}
    planned_of: dict[int, int] = {}  # request position -> index in `runs`
    unique = UniqueTokens(enabled=check_data)  # raises ConfigError on data that cannot be prepared
    for position, request in enumerate(requests):
        parent = _parent_of(request, position, runs, planned_of)
        overrides = tuple(o.replace(PARENT_RUN_DIR, parent.run_dir) for o in request.overrides) if parent \
            else request.overrides
        try:
            cfg = compose_run([*spec.base, *overrides], request.source)
        except ExperimentError:
            _blame_one_override(spec.base, request)
            raise
        run_id = config_hash(cfg)
        if run_id in seen:
            notes.append(f"{' '.join(overrides)} is the same run as #{seen[run_id]} ({run_id}); planned once")
            planned_of[position] = seen[run_id]
            continue
        seen[run_id] = planned_of[position] = len(runs)
        model = copy.deepcopy(cfg.model)
        model.vocab_size = model.vocab_size or cfg.data.vocab_size
        D = cfg.train.steps * cfg.train.batch_size * cfg.train.seq_len
        run_dir = str(root / "runs" / run_id)
        train_overrides = [*spec.base, *overrides, f"name={format_value(f'{spec.name}-{run_id}')}",
                           f"run_dir={format_value(run_dir)}"]
        fpt = flops.flops_per_token(model, cfg.train.seq_len)
        n_unique = unique.of(cfg.data)
        start = branch_step(cfg.train)
        own_tokens = (cfg.train.steps - start) * cfg.train.batch_size * cfg.train.seq_len
        runs.append(PlannedRun(index=len(runs), run_id=run_id, overrides=" ".join(overrides),
                               settings=dict(request.settings), N=flops.num_params(model),
                               N_non_embedding=flops.num_params(model, include_embedding=False),
                               steps=cfg.train.steps, D=D,
                               flops=D * fpt, est_seconds=own_tokens / throughput if throughput else None,
                               run_dir=run_dir, train_overrides=train_overrides,
                               stage=parent.stage + 1 if parent else 0, start_step=start,
                               parent=parent.run_id if parent else None,
                               unique_tokens=n_unique, epochs=D / n_unique if n_unique else None))
    if kind.rounds:
        runs = keep_order(runs, previous_order(spec, out_dir))
    notes += repetition_notes(runs) + unique.notes
    return runs, notes


def previous_order(spec: ExperimentSpec, out_dir: Path) -> list[str]:
    """The run ids of DIR/plan.json in plan order, if it was written for this same spec (else [])."""
    path = Path(out_dir) / "plan.json"
    if not path.is_file():
        return []
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [r["run_id"] for r in old.get("runs", [])] if old.get("spec") == spec_record(spec) else []


def keep_order(runs: Sequence[PlannedRun], order: Sequence[str]) -> list[PlannedRun]:
    """A plan that grew by rounds keeps every earlier run at its index: the runs of `order` first, in
    that order, then the new ones in the kind's order; indices are renumbered to match."""
    rank = {run_id: i for i, run_id in enumerate(order)}
    ordered = sorted(runs, key=lambda r: (0, rank[r.run_id]) if r.run_id in rank else (1, r.index))
    return [replace(r, index=i) for i, r in enumerate(ordered)]


def branch_step(train_cfg: Any) -> int:
    """The step a run continues from: its `train.init_from` checkpoint's step in resume mode, else 0."""
    init_from = getattr(train_cfg, "init_from", None)
    if not init_from or getattr(train_cfg, "init_mode", "resume") != "resume":
        return 0
    match = re.search(r"step_(\d+)\.pt$", str(init_from))
    return int(match.group(1)) if match else 0


def _parent_of(request: RunRequest, position: int, runs: list[PlannedRun],
               planned_of: dict[int, int]) -> Optional[PlannedRun]:
    if request.parent is None:
        return None
    if not 0 <= request.parent < position:
        raise ExperimentError(f"{request.source}: parent {request.parent} must be an earlier run of the plan "
                              f"(this is run {position}); a kind lists parents before their branches")
    return runs[planned_of[request.parent]]


def repetition_notes(runs: Sequence[PlannedRun]) -> list[str]:
    """One note per run whose D exceeds the unique tokens of its training split."""
    return [f"run #{r.index} ({r.run_id}) repeats data: D = {short_number(r.D)} tokens > {short_number(r.unique_tokens)} "
            f"unique training tokens ({r.epochs:.2f} epochs); its point measures repeated data"
            for r in runs if r.epochs is not None and r.epochs > 1]


def plan_csv(runs: Sequence[PlannedRun]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(PLAN_COLUMNS))
    writer.writeheader()
    for run in runs:
        row = run.row()
        row["flops"] = f"{run.flops:.6g}"
        row["unique_tokens"] = "" if run.unique_tokens is None else run.unique_tokens
        row["epochs"] = "" if run.epochs is None else f"{run.epochs:.4g}"
        row["est_seconds"] = "" if run.est_seconds is None else f"{run.est_seconds:.6g}"
        writer.writerow(row)
    return buffer.getvalue()


def write_plan(spec: ExperimentSpec, runs: Sequence[PlannedRun], out_dir: Path) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "plan.csv", plan_csv(runs))
    atomic_write_json(out_dir / "plan.json", {"spec": spec_record(spec), "runs": [asdict(r) for r in runs]})


def spec_record(spec: ExperimentSpec) -> dict[str, Any]:
    """The spec as plan.json stores it (JSON round-tripped, so that it compares equal to a read one)."""
    spec_dict = {k: v for k, v in asdict(spec).items() if k != "params"}
    spec_dict[spec.kind] = asdict(spec.params)
    return json.loads(json.dumps(spec_dict))


def read_plan(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / "plan.json"
    if not path.is_file():
        raise ExperimentError(f"DIR: {out_dir} has no plan.json; run `python -m harness.experiment plan SPEC --dir {out_dir}` first")
    return json.loads(path.read_text())


def format_plan(spec: ExperimentSpec, runs: Sequence[PlannedRun]) -> str:
    """The plan as a fixed-width text table, with totals."""
    header = ["#", "run_id", "stage", "N", "N_non_emb", "D", "epochs", "FLOPs", "est_time", "overrides"]
    rows = [[str(r.index), r.run_id, str(r.stage), short_number(r.N), short_number(r.N_non_embedding), short_number(r.D),
             _epochs_cell(r.epochs), short_number(r.flops),
             "-" if r.est_seconds is None else duration(r.est_seconds), r.overrides] for r in runs]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = [f"experiment {spec.name} (kind {spec.kind}): {len(runs)} run(s)",
             "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    # What the plan costs: a branch spends only its own steps (its FLOPs column counts from step 0).
    total_flops = sum(r.flops * (1 - r.start_step / r.steps) for r in runs)
    known = [r.est_seconds for r in runs if r.est_seconds is not None]
    est = (f"{duration(sum(known))} run one after another (an estimate: D / tokens_per_s, the same "
           "throughput for every run)") if known and len(known) == len(runs) else \
        "no time estimate (give --tokens-per-s or the spec's tokens_per_s)"
    lines.append(f"total: {short_number(total_flops)} FLOPs; {est}")
    if any(r.stage for r in runs):
        lines.append(f"stages: {max(r.stage for r in runs) + 1} (a run starts after the run it branches from)")
    return "\n".join(lines)


def _epochs_cell(epochs: Optional[float]) -> str:
    """Epochs over the training split; `!` marks a run that repeats data."""
    if epochs is None:
        return "?"
    return f"{epochs:.2f}{'!' if epochs > 1 else ''}"
