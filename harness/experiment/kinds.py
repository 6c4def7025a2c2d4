"""Experiment kinds: one registered class per kind, owning its spec section, plan() and report().

A kind turns its spec section into run requests (override sets on top of the spec's `base`) and
turns the collected table into a report. Everything else (composing each run's config, hashes,
launching, status, collecting) is shared. A new study is a new module with

    @KINDS.register("name")
    class MyKind(ExperimentKind):
        @dataclass
        class Config: ...                 # the spec's `name:` section, typed
        def plan(self, spec) -> list[RunRequest]: ...
        def report(self, out_dir, table, plan) -> Report: ...

A kind that plans in rounds sets `rounds = True` and overrides `replan(spec, results)` (the runs
known to be needed given the results so far; harness/experiment/results.py); plan(spec) is then
its round 0. Imported by harness/experiment/__init__.py (which every import of harness.experiment.* runs first).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.registry import Registry

if TYPE_CHECKING:
    import pandas as pd

    from harness.experiment.results import RunResults
    from harness.experiment.spec import ExperimentSpec


@dataclass(frozen=True)
class RunRequest:
    """One run a kind asks for: overrides on top of the spec's base, and the settings they encode
    ({axis key: value}, what the report groups by)."""

    overrides: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    source: str = "spec"  # the spec field it comes from, for error messages (e.g. "grid.runs[2]")
    # The spec field behind each override (same order), to name the culprit when one fails.
    fields: tuple[str, ...] = ()
    # A run that starts from another run of the same plan (a cooldown branch from its parent's
    # checkpoint): the parent's position in the list plan() returns. The text PARENT_RUN_DIR in
    # `overrides` becomes the parent's run directory, and the run launches after the parent completed.
    parent: int | None = None

    def field_of(self, i: int) -> str:
        return self.fields[i] if i < len(self.fields) else self.source


@dataclass
class Report:
    """What a kind's report() returns: markdown, a JSON-able summary and the plots it wrote."""

    markdown: str
    summary: dict[str, Any]
    plots: list[Path] = field(default_factory=list)


class ExperimentKind(ABC):
    @dataclass
    class Config:
        pass

    @abstractmethod
    def plan(self, spec: "ExperimentSpec") -> list[RunRequest]:
        """The runs the spec asks for (overrides on top of the spec's base)."""

    # A kind that plans in rounds (its next runs depend on the results of the runs done so far, e.g.
    # coordinate descent) sets this and overrides replan(); `run` then loops plan -> launch -> replan
    # until the plan stops growing. A static kind leaves both alone.
    rounds: bool = False

    def replan(self, spec: "ExperimentSpec", results: "RunResults") -> list[RunRequest]:
        """Every run known to be needed now, given the results of the runs done so far (`results`
        looks a request up by its config hash). Runs planned before must stay in the list (their
        ids never change); a static kind returns plan(spec)."""
        return self.plan(spec)

    def plan_notes(self, spec: "ExperimentSpec") -> list[str]:
        """Notes `plan` prints about the spec's runs (e.g. runs left out, and why); none by default."""
        return []

    @abstractmethod
    def report(self, out_dir: Path, table: "pd.DataFrame", plan: list[dict[str, Any]]) -> Report:
        """The kind's analysis of the collected table: markdown, a JSON summary and plots."""


PARENT_RUN_DIR = "PARENT_RUN_DIR"


KINDS: Registry[ExperimentKind] = Registry("kind")
