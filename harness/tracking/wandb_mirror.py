"""Mirror curve rows to Weights & Biases: a training-loop hook (rank 0).

The curve file is the record; wandb is an optional mirror of the same rows, and at the end of the
final status. The wandb run id is kept in the run directory so a resumed run continues the same
wandb run.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from harness.config import LoggingConfig
from harness.files import read_json
from harness.loop import Hook, Trainer
from harness.outcome import outcome_of


class WandbMirror(Hook):
    def __init__(self, cfg: LoggingConfig, run_dir: Path, run_name: str, config: dict[str, Any]):
        import wandb

        self.run_dir = run_dir
        id_file = run_dir / "wandb_id.txt"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            run_id = uuid.uuid4().hex[:8]
            id_file.write_text(run_id + "\n")
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(
            project=cfg.wandb_project,
            entity=cfg.wandb_entity,
            name=run_name,
            id=run_id,
            resume="allow",
            mode=cfg.wandb_mode,
            dir=str(run_dir),
            config=config,
        )
        self.run_id = run_id
        # wandb requires a monotonically increasing step; rows replayed after a resume would be
        # dropped by wandb, so remember where the mirror already is.
        self._last_step = int(self.run.summary.get("step", 0) or 0) if self.run.resumed else 0

    def log(self, row: dict[str, Any]) -> None:
        step = int(row["step"])
        if step <= self._last_step:
            return
        self.run.log(row, step=step)
        self._last_step = step

    def on_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.log(row)

    def on_end(self, trainer: Trainer) -> None:
        # Runs after the status hook: mirror what status.json records about the finished run.
        status = read_json(self.run_dir / "status.json")
        self.run.summary.update({f"final/{k}": v for k, v in status.items()
                                 if v is not None and k not in ("state", "updated")})
        self.run.finish()

    def on_error(self, trainer: Trainer, err: BaseException) -> None:
        self.run.finish(exit_code=outcome_of(err).exit_code)
