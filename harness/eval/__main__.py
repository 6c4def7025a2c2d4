"""`python -m harness.eval RUN_DIR [--steps all|last|N ...] --tasks T ...` (see harness/eval/__init__.py).

Exit codes: 0 evaluated (or nothing left to do), 2 a usage error (the message names the input and the fix).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

from harness.eval import EvalError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.eval",
                                     description="Evaluate a run's checkpoints on offline lm-eval tasks; rows go to "
                                                 "RUN_DIR/evals.jsonl (resumable).")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", nargs="+", default=["last"], help="all, last (default) or checkpoint steps")
    parser.add_argument("--tasks", nargs="+", required=True, help="task names (harness/eval/tasks/*.yaml)")
    parser.add_argument("--limit", type=int, default=None, help="items per task (default all)")
    parser.add_argument("--max-samples", type=int, default=256, help="PassUntil cap of samples per item")
    parser.add_argument("--sample-batch", type=int, default=32, help="PassUntil draws per item per round")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--task-dir", action="append", default=[], help="another directory of task YAMLs")
    args = parser.parse_args(argv)
    os.environ.setdefault("TQDM_DISABLE", "1")  # lm-eval's per-request progress bars
    from harness.eval.runner import EvalSettings, evaluate_run

    settings = EvalSettings(limit=args.limit, max_samples=args.max_samples, sample_batch=args.sample_batch,
                            seed=args.seed, task_dirs=tuple(args.task_dir))
    try:
        written = evaluate_run(args.run_dir, args.steps, args.tasks, settings)
    except EvalError as err:
        print(f"eval error: {err}", file=sys.stderr)
        return 2
    print(f"[harness.eval] wrote {written} (step, task) block(s) to {args.run_dir / 'evals.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
