"""Kind `grid`: a Cartesian product of axes and/or an explicit list of override sets.

    kind: grid
    grid:
      axes:                      # every leaf list is one axis, named by its dotted path
        optim: {lr: [1e-3, 3e-3]}
        schedule: [cosine, wsd]  # a config-group axis selects conf/schedule/<value>.yaml
      runs:                      # more runs, each an explicit override set
        - [optim.lr=1e-2, schedule=constant]

Each run is `base + its overrides`. The report: final train / val loss per run, the best run
overall and per value of each axis, final val loss against each numeric axis (log x where the
values span more than 10x) and the val-loss curves of all runs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.experiment.kinds import KINDS, ExperimentKind, Report, RunRequest
from harness.experiment.spec import ExperimentError


def axis_leaves(tree: Any, prefix: str = "grid.axes") -> dict[str, list[Any]]:
    """{"optim.lr": [...], "schedule": [...]}: each leaf list of the axes tree by its dotted key."""
    out: dict[str, list[Any]] = {}
    if not isinstance(tree, dict):
        raise ExperimentError(f"{prefix}: must map override keys to lists of values")
    for key, value in tree.items():
        path = f"{prefix}.{key}"
        if isinstance(value, dict):
            out.update(axis_leaves(value, path))
        elif isinstance(value, list):
            if not value:
                raise ExperimentError(f"{path}: an axis needs at least one value")
            if any(isinstance(v, (dict, list)) for v in value):
                raise ExperimentError(f"{path}: values must be scalars (numbers, strings, booleans)")
            name = path[len("grid.axes."):]
            if name in out:
                raise ExperimentError(f"{path}: given twice (as a nested and a dotted key)")
            out[name] = list(value)
        else:
            raise ExperimentError(f"{path}: got {value!r}; an axis is a list of values, e.g. [{value!r}]")
    return out


def parse_override(item: str, source: str) -> tuple[str, str]:
    if "=" not in item or item.startswith("="):
        raise ExperimentError(f"{source}: got {item!r}; each override is key=value")
    key, value = item.split("=", 1)
    return key.lstrip("+"), value


@KINDS.register("grid")
class GridKind(ExperimentKind):
    @dataclass
    class Config:
        axes: dict[str, Any] = field(default_factory=dict)
        runs: list[list[str]] = field(default_factory=list)

        def validate(self) -> None:
            axes = axis_leaves(self.axes)
            if not axes and not self.runs:
                raise ExperimentError("grid: give grid.axes (a Cartesian product) and/or grid.runs (override sets)")
            for i, run in enumerate(self.runs):
                for item in run:
                    parse_override(item, f"grid.runs[{i}]")

    def plan(self, spec) -> list[RunRequest]:
        from harness.ladder.overrides import format_value

        params: GridKind.Config = spec.params
        axes = axis_leaves(params.axes)
        requests = []
        if axes:
            keys = list(axes)
            for values in itertools.product(*(axes[k] for k in keys)):
                requests.append(RunRequest(overrides=tuple(f"{k}={format_value(v)}" for k, v in zip(keys, values)),
                                           settings=dict(zip(keys, values)), source="grid.axes",
                                           fields=tuple(f"grid.axes.{k}" for k in keys)))
        for i, run in enumerate(params.runs):
            settings = dict(parse_override(item, f"grid.runs[{i}]") for item in run)
            requests.append(RunRequest(overrides=tuple(run), settings=settings, source=f"grid.runs[{i}]"))
        return requests

    def report(self, out_dir: Path, table, plan: list[dict[str, Any]]) -> Report:
        from harness.experiment.grid_report import grid_report

        return grid_report(out_dir, table, plan)
