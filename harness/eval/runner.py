"""Evaluate a run's checkpoints on tasks and record rows in RUN_DIR/evals.jsonl.

Multiple-choice tasks go through lm-eval's `simple_evaluate` with the HarnessLM adapter and
`log_samples`, and our metrics (harness/eval/metrics.py) are computed from the per-choice
log-likelihoods it logs (acc is checked against lm-eval's own). Generative tasks are scored by
PassUntil: lm-eval gives the task's prompts, targets and generation settings, the adapter samples,
and harness/eval/passuntil.py adaptively draws until each item's first pass. lm-eval has no
adaptive "sample until pass" mode (its `repeats` is a fixed count per item), hence this loop.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from harness.eval import EvalError, require_lm_eval
from harness.eval.evals_file import EVALS_FILE, append_block, done_pairs
from harness.eval.metrics import ChoiceItem, task_metrics

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


@dataclass
class EvalSettings:
    """Knobs of one eval; the defaults are what train.eval_tasks uses."""

    limit: int | None = None        # items per task (None: all)
    batch_size: int = 32
    seed: int = 0                    # of the sampling generator (PassUntil)
    max_samples: int = 256           # PassUntil cap per item
    sample_batch: int = 32           # PassUntil draws per item per round
    level: float = 0.95              # PassUntil interval level
    task_dirs: tuple[str, ...] = ()  # more task YAML directories besides harness/eval/tasks


def task_manager(settings: EvalSettings):
    require_lm_eval()
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=[str(TASKS_DIR), *settings.task_dirs], include_defaults=False)


def load_tasks(names: Sequence[str], settings: EvalSettings) -> dict[str, Any]:
    manager = task_manager(settings)
    unknown = [n for n in names if n not in manager.all_tasks]
    if unknown:
        raise EvalError(f"--tasks: unknown task(s) {unknown}; known: {sorted(manager.all_tasks)} "
                        f"(task YAMLs in {TASKS_DIR} or a --task-dir)")
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tasks = manager.load(list(names))["tasks"]
    return {n: tasks[n] for n in names}


def multiple_choice_rows(lm, task_name: str, task, settings: EvalSettings) -> list[dict[str, Any]]:
    from lm_eval import simple_evaluate

    out = simple_evaluate(model=lm, tasks=[task], log_samples=True, bootstrap_iters=0, limit=settings.limit,
                          verbosity="ERROR")
    samples = out["samples"][task_name]
    items = [ChoiceItem(tuple(float(ll) for ll, _ in s["filtered_resps"]), tuple(task.doc_to_choice(s["doc"])),
                        int(s["target"])) for s in samples]
    metrics = task_metrics(items)
    theirs = out["results"][task_name]["acc,none"]
    if abs(theirs - metrics["acc"]) > 1e-9:  # the same log-likelihoods must give lm-eval's accuracy
        raise RuntimeError(f"{task_name}: acc {metrics['acc']} disagrees with lm-eval's {theirs}")
    return [{"metric": k, "value": v, "n": len(items)} for k, v in metrics.items()]


def passes(completion: str, answer: str) -> bool:
    """A generative item passes when the completion's first word is the answer ("52" in " 52 53")."""
    words = completion.split()
    return bool(words) and words[0] == answer


def passuntil_rows(lm, task, settings: EvalSettings) -> list[dict[str, Any]]:
    from harness.eval.passuntil import pass_until

    docs = list(task.eval_docs)[:settings.limit]
    prompts = [task.doc_to_text(d) for d in docs]
    answers = [str(task.doc_to_target(d)).strip() for d in docs]
    gen_kwargs = dict(task.config.generation_kwargs or {})

    def sampler(items: Sequence[int], k: int) -> list[list[bool]]:
        texts = lm.sample([prompts[i] for i in items for _ in range(k)], gen_kwargs)
        return [[passes(t, answers[i]) for t in texts[j * k:(j + 1) * k]] for j, i in enumerate(items)]

    est = pass_until(sampler, len(docs), settings.max_samples, settings.sample_batch, settings.level)
    n = est.items
    return [{"metric": "pass_rate", "value": est.rate, "n": n}, {"metric": "pass_rate_lo", "value": est.lo, "n": n},
            {"metric": "pass_rate_hi", "value": est.hi, "n": n}, {"metric": "passes", "value": est.passes, "n": n},
            {"metric": "samples", "value": est.samples, "n": n}]


def task_rows(lm, task_name: str, task, settings: EvalSettings) -> list[dict[str, Any]]:
    kind = task.config.output_type
    if kind == "multiple_choice":
        return multiple_choice_rows(lm, task_name, task, settings)
    if kind == "generate_until":
        return passuntil_rows(lm, task, settings)
    raise EvalError(f"task {task_name}: output_type {kind!r} is not scored here (multiple_choice, generate_until)")


def evaluate_model(model, tokenizer, run_dir: Path, step: int, tokens: int | None, flops: float | None,
                   tasks: dict[str, Any], settings: EvalSettings) -> int:
    """Evaluate one model at one step on every task not yet in evals.jsonl; returns blocks written."""
    from harness.eval.adapter import HarnessLM

    path = Path(run_dir) / EVALS_FILE
    done = done_pairs(path)
    written = 0
    for name, task in tasks.items():
        if (step, name) in done:
            continue
        lm = HarnessLM(model, tokenizer, batch_size=settings.batch_size, seed=settings.seed + step)
        rows = task_rows(lm, name, task, settings)
        append_block(path, [{"step": step, "tokens": tokens, "flops": flops, "task": name, **r} for r in rows])
        written += 1
    return written


def step_compute(run_dir: Path, step: int) -> tuple[int | None, float | None]:
    """Tokens and training FLOPs at `step`, from the run's curve row of that step (None if absent)."""
    from harness.tracking.curve import read_curve

    for row in read_curve(Path(run_dir) / "curve.jsonl") if (Path(run_dir) / "curve.jsonl").is_file() else []:
        if row.get("step") == step:
            return row.get("tokens"), row.get("flops")
    return None, None


def pick_steps(available: Sequence[int], request: Sequence[str]) -> list[int]:
    """`all`, `last` or step numbers -> the checkpoint steps to evaluate."""
    if not available:
        raise EvalError("no checkpoints in RUN_DIR/checkpoints; train the run first")
    if list(request) in ([], ["last"]):
        return [available[-1]]
    if list(request) == ["all"]:
        return list(available)
    steps = []
    for s in request:
        if not s.isdigit() or int(s) not in available:
            raise EvalError(f"--steps: {s!r} is not a checkpoint step; available: {list(available)} (or all, last)")
        steps.append(int(s))
    return steps


def evaluate_run(run_dir: Path, steps: Sequence[str], task_names: Sequence[str], settings: EvalSettings,
                 log: Callable[[str], None] = print) -> int:
    """Evaluate the chosen checkpoints of `run_dir`; returns the number of (step, task) blocks written."""
    from harness.checkpoint import list_checkpoints
    from harness.eval.adapter import load_run

    run_dir = Path(run_dir)
    tasks = load_tasks(task_names, settings)
    checkpoints = dict(list_checkpoints(run_dir / "checkpoints"))
    done = done_pairs(run_dir / EVALS_FILE)
    written = 0
    for step in pick_steps(sorted(checkpoints), steps):
        todo = {n: t for n, t in tasks.items() if (step, n) not in done}
        if not todo:
            log(f"[harness.eval] step {step}: already evaluated ({', '.join(tasks)})")
            continue
        loaded = load_run(run_dir, checkpoints[step], step)
        tokens, flops = step_compute(run_dir, step)
        written += evaluate_model(loaded.model, loaded.tokenizer, run_dir, step, tokens, flops, todo, settings)
        log(f"[harness.eval] step {step}: evaluated {', '.join(todo)}")
    return written
