"""A console progress bar with loss, val loss, tokens/s and ETA (rich): a training-loop hook."""

from __future__ import annotations

from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from harness.loop import Hook, Trainer


class ProgressBar(Hook):
    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._rate: float | None = None  # tokens/s, smoothed: single steps are noisy

    def on_start(self, trainer: Trainer) -> None:
        self._progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("{task.fields[tps]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        )
        self._task = self._progress.add_task("train", total=trainer.total_steps, completed=trainer.step,
                                             loss="-", val="-", tps="-")
        self._progress.start()

    def on_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        assert self._progress is not None
        rate = row["tokens_per_s"]
        self._rate = rate if self._rate is None else 0.9 * self._rate + 0.1 * rate
        fields = {"loss": f"{row['loss']:.4f}", "tps": f"{self._rate:,.0f}"}
        if "val_loss" in row:
            fields["val"] = f"{row['val_loss']:.4f}"
        self._progress.update(self._task, completed=trainer.step, **fields)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
