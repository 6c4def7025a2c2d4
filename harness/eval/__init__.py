"""Downstream evaluations of a run's checkpoints (issue 17), through EleutherAI's lm-eval.

    python -m harness.eval RUN_DIR [--steps all|last|N ...] --tasks pydoc_cloze sequence_next

Parts, one job each:
  * adapter.py    HarnessLM, an lm_eval.api.model.LM over our decoder (loglikelihood,
                  loglikelihood_rolling, generate_until), and loading a run's checkpoint into it.
  * tasks/        task YAMLs + jsonl data read locally (TaskManager include_path; no network).
  * metrics.py    multiple-choice metrics from per-choice log-likelihoods (acc, acc_norm, log-prob
                  and probability mass on the correct choice vs the others).
  * passuntil.py  PassUntil for generative tasks: sample until the first pass or a cap, pass rate
                  with a likelihood-ratio interval.
  * runner.py     evaluate steps x tasks, rows into RUN_DIR/evals.jsonl (resumable).
  * hook.py       train.eval_tasks: the same evals inside a training run.

lm-eval is an optional dependency (`pip install -e .[eval]`); `require_lm_eval` names the install
command when it is missing.
"""

from __future__ import annotations

LM_EVAL_PIN = "lm-eval==0.4.13"
INSTALL_HINT = f"pip install -c .venv/constraints.txt '{LM_EVAL_PIN}'  (or: pip install -e '.[eval]')"


class EvalError(ValueError):
    """A bad eval request (run dir, step, task); the message names the input and the fix."""


def require_lm_eval() -> None:
    """Raise EvalError naming the install command when lm-eval is not installed."""
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise EvalError(f"harness.eval needs lm-eval, which is not installed; install it with: {INSTALL_HINT}") from None
