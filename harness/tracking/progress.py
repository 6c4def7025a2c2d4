"""A console progress bar with loss, tokens/s and ETA (rich)."""

from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class ProgressBar:
    def __init__(self, total_steps: int, start_step: int, enabled: bool):
        self.enabled = enabled
        if not enabled:
            return
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
        self._task = self._progress.add_task("train", total=total_steps, completed=start_step,
                                             loss="-", val="-", tps="-")
        self._progress.start()

    def update(self, step: int, loss: float, tokens_per_s: float, val_loss: float | None = None) -> None:
        if not self.enabled:
            return
        fields = {"loss": f"{loss:.4f}", "tps": f"{tokens_per_s:,.0f}"}
        if val_loss is not None:
            fields["val"] = f"{val_loss:.4f}"
        self._progress.update(self._task, completed=step, **fields)

    def close(self) -> None:
        if self.enabled:
            self._progress.stop()
