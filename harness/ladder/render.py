"""The dry run: a planned ladder as a printed table, plan.csv, overrides.txt and lr_schedules.png.

Nothing here trains or creates a run directory. overrides.txt has one line per run: the arguments
of `python -m harness.train` (`PlannedRun.overrides`, then the `extra` overrides).
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.files import atomic_write_text, save_figure
from harness.data.repetition import UniqueTokens
from harness.formatting import duration, short_number
from harness.ladder.plan import PlannedRun


def estimate_seconds(run: PlannedRun, device_tflops: Optional[float], mfu: float,
                     cpu_tokens_per_s: Optional[float]) -> Optional[float]:
    """Training time from a measured CPU throughput, or from device peak FLOP/s x MFU; None if neither."""
    if cpu_tokens_per_s:
        return run.D / cpu_tokens_per_s
    if device_tflops:
        return run.flops / (device_tflops * 1e12 * mfu)
    return None


def plan_table(runs: Sequence[PlannedRun], seconds: Sequence[Optional[float]],
               unique: Sequence[Optional[int]] = ()) -> list[dict[str, Any]]:
    unique = list(unique) or [None] * len(runs)
    return [{"name": r.name, "d_model": r.model.d_model, "n_layers": r.model.n_layers, "n_heads": r.model.n_heads,
             "N": r.N, "N_non_embedding": r.N_non_embedding, "D": r.D, "tokens_per_param": r.D / r.N_non_embedding,
             "flops": r.flops, "budget": r.budget, "batch_size": r.batch_size, "batch_tokens": r.tokens_per_step,
             "lr": r.lr, "weight_decay": r.weight_decay, "warmup_steps": r.warmup_steps, "steps": r.steps,
             "schedule": r.schedule, "est_seconds": s, "unique_tokens": u,
             "epochs": r.D / u if u else None}
            for r, s, u in zip(runs, seconds, unique)]


def print_plan(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ["name", "N", "N_non_embedding", "D", "epochs", "flops", "batch_size", "lr", "warmup_steps", "steps", "est_time"]
    for c in cols:
        table.add_column(c, justify="left" if c == "name" else "right")
    for row in rows:
        est = "-" if row["est_seconds"] is None else duration(row["est_seconds"])
        epochs = "?" if row["epochs"] is None else f"{row['epochs']:.2f}{'!' if row['epochs'] > 1 else ''}"
        table.add_row(row["name"], short_number(row["N"]), short_number(row["N_non_embedding"]), short_number(row["D"]),
                      epochs, short_number(row["flops"]),
                      str(row["batch_size"]), f"{row['lr']:.3g}", str(row["warmup_steps"]), str(row["steps"]), est)
    Console(width=160).print(table)


def plot_schedules(runs: Sequence[PlannedRun], path: Path) -> None:
    """LR against tokens for every run (log-log), from the same schedule code that trains them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.schedules import build_schedule

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        sched = build_schedule(run.schedule_config(), total_steps=run.steps, peak_lr=run.lr,
                               batch_size=run.batch_size, tokens_per_step=run.tokens_per_step)
        stride = max(1, run.steps // 400)
        steps = list(range(1, run.steps + 1, stride)) + ([run.steps] if (run.steps - 1) % stride else [])
        ax.plot([s * run.tokens_per_step for s in steps], [sched.lr(s) for s in steps], label=run.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("learning rate")
    ax.set_title("planned LR schedules")
    if len(runs) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100, tight=False)


def dry_run(runs: Sequence[PlannedRun], out: Path, *, title: str, device_tflops: Optional[float] = None,
            mfu: float = 0.4, cpu_tokens_per_s: Optional[float] = None, extra: Sequence[str] = (),
            emit_overrides: bool = False, check_data: bool = True) -> list[dict[str, Any]]:
    """Print the plan, write plan.csv / overrides.txt / lr_schedules.png under `out`; trains nothing."""
    import pandas as pd

    # Override lines first: they compose and validate each run's config, so a bad --extra fails
    # before anything is written.
    lines = [shlex.join(r.overrides(extra)) for r in runs]
    seconds = [estimate_seconds(r, device_tflops, mfu, cpu_tokens_per_s) for r in runs]
    counter = UniqueTokens(enabled=check_data)
    rows = plan_table(runs, seconds, [counter.of(r.run_config(extra).data) for r in runs])
    print_plan(rows, title)
    for note in counter.notes:
        print(f"note: {note}")
    for row in rows:
        if row["epochs"] is not None and row["epochs"] > 1:
            print(f"warning: {row['name']} repeats data: D = {short_number(row['D'])} tokens > "
                  f"{short_number(row['unique_tokens'])} unique training tokens ({row['epochs']:.2f} epochs); "
                  "use a larger data source (e.g. --extra data=gcide) for fresh tokens")
    total = [s for s in seconds if s is not None]
    if total:
        print(f"estimated total: {duration(sum(total))} "
              + (f"at {cpu_tokens_per_s:g} tokens/s" if cpu_tokens_per_s else f"at {device_tflops:g} TFLOP/s x MFU {mfu:g}"))
    atomic_write_text(out / "plan.csv", pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "overrides.txt", "\n".join(lines) + "\n")
    plot_schedules(runs, out / "lr_schedules.png")
    if emit_overrides:
        print("# one run per line: python -m harness.train <line>")
        for line in lines:
            print(line)
    print(f"wrote {out / 'plan.csv'}, {out / 'overrides.txt'}, {out / 'lr_schedules.png'} (nothing trained)")
    return rows
