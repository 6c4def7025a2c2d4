"""Batched proxies: K runs of one shape trained as one stacked model in one process.

    compat.py   which runs can batch (the shape key) and grouping runs into batches
    stack.py    the stacked parameters and the vmapped forward / loss
    adamw.py    AdamW over stacked parameters, per-run LR, weight decay, betas, eps
    trainer.py  the batched loop; each run keeps a Trainer view the ordinary hooks write files from
    run.py      run directories, resume, skip: `run_batched(cfgs)`

Entry points: `python -m harness.train_batched` (a sweep on the command line, grouped into
batches) and `batch_runs: K` in an experiment spec (harness/experiment/launch.py).
"""

from harness.batched.compat import check_batchable, group_runs, shape_key, why_not_batchable

__all__ = ["check_batchable", "group_runs", "shape_key", "why_not_batchable"]
