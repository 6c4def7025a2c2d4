"""Loads a task's jsonl file from this directory (lm-eval's `custom_dataset` hook): no download,
no datasets cache. A task YAML says `custom_dataset: !function local_data.load` and names its file
in `dataset_kwargs: {file: NAME.jsonl}`; a relative name is read beside this module."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def load(file: str, **_: Any) -> dict[str, Any]:
    import datasets

    path = Path(file) if Path(file).is_absolute() else Path(__file__).resolve().parent / file
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {"test": datasets.Dataset.from_list(rows)}
