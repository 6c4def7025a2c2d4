"""The experiment spec: `conf/experiment/<name>.yaml`, typed and validated like a run config.

    name: grid_tiny            # DIR defaults to experiments/<name>
    kind: grid                 # a registered kind (harness/experiment/kinds.py)
    base: [model=llama_tiny]   # run overrides (Hydra syntax) on conf/config.yaml, for every run
    tokens_per_s: 20000        # optional: throughput for the time estimate of `plan`
    batch_runs: 8              # optional: train up to 8 runs of one shape as one stacked job (harness/batched/)
    grid: {...}                # the kind's own section, named after the kind (its fields: kind's Config)

Command-line overrides change the spec before it is checked, in OmegaConf dotlist syntax
(`name=x`, `grid.axes.optim.lr=[1e-3,3e-3]`, `base=[model=llama_tiny]`). An unknown key, a wrong
type or an unknown kind is an `ExperimentError` naming the field (the CLI exits 2, writing nothing).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.checks import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "experiment"


class ExperimentError(ConfigError):
    """A bad spec or override; the message names the field and the fix (exit code 2)."""


def check_sizes(section: str, sizes: Sequence[Any], example: str = "[d32, d64]") -> None:
    """`<section>.sizes` of a kind built on the ladder: at least one, each a ladder size (d64,
    4x256, ...), none given twice (it would plan the same runs twice)."""
    from harness.ladder import LadderError, size_spec

    if not sizes:
        raise ExperimentError(f"{section}.sizes: give at least one size, e.g. {example}")
    for i, spec in enumerate(sizes):
        try:
            size_spec(str(spec))
        except LadderError as err:
            raise ExperimentError(f"{section}.sizes[{i}]: {err}") from None
    if len(set(map(str, sizes))) != len(sizes):
        raise ExperimentError(f"{section}.sizes: a size is given twice")


@dataclass
class ExperimentSpec:
    name: str
    kind: str
    base: list[str] = field(default_factory=list)
    # Training tokens per second for `plan`'s time estimate (one figure for every run: an estimate).
    tokens_per_s: Optional[float] = None
    description: str = ""
    # Runs of one shape (harness/batched/compat.py) are trained up to this many per job as one stacked
    # model (harness/batched/); 1: every run is its own job.
    batch_runs: int = 1
    # The kind's own section (an instance of the kind's Config dataclass), set by load_spec.
    params: Any = None

    def validate(self) -> None:
        if not self.name or "/" in self.name:
            raise ExperimentError(f"name: got {self.name!r}; give a non-empty name without '/'")
        if self.tokens_per_s is not None and not self.tokens_per_s > 0:
            raise ExperimentError(f"tokens_per_s: got {self.tokens_per_s!r}; must be positive (or null)")
        if self.batch_runs < 1:
            raise ExperimentError(f"batch_runs: got {self.batch_runs}; give 1 (no batching) or the most runs per batched job")
        for i, item in enumerate(self.base):
            if "=" not in item:
                raise ExperimentError(f"base[{i}]: got {item!r}; each item is a run override key=value")


TOP_FIELDS = tuple(f.name for f in dataclasses.fields(ExperimentSpec) if f.name != "params")


def spec_path(name_or_path: str) -> Path:
    """`grid_tiny` -> conf/experiment/grid_tiny.yaml; a path to a .yaml file is used as is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ExperimentError(f"spec: {path} does not exist")
        return path
    path = CONF_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONF_DIR.glob("*.yaml")))
        raise ExperimentError(f"spec: no conf/experiment/{name_or_path}.yaml; choose one of {known} or pass a .yaml path")
    return path


def load_spec(name_or_path: str, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """The spec file with `overrides` applied, typed and validated."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = spec_path(name_or_path)
    for item in overrides:
        if "=" not in item or item.startswith(("+", "~")):
            raise ExperimentError(f"override {item!r}: write key=value (dotlist syntax, no +/~ prefix)")
    try:
        raw = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as err:
        where = getattr(err, "full_key", None) or path.name
        raise ExperimentError(f"{where}: {str(err).splitlines()[0]} (check the overrides against {path.name})") from None
    return typed_spec(OmegaConf.to_container(raw, resolve=False), source=path.name)


def typed_spec(raw: dict[str, Any], source: str = "spec") -> ExperimentSpec:
    """A plain dict -> ExperimentSpec with its kind's section typed by the kind's Config class."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

    from harness.experiment.kinds import KINDS

    if not isinstance(raw, dict):
        raise ExperimentError(f"{source}: must be a mapping of {', '.join(TOP_FIELDS)}")
    for required in ("name", "kind"):
        if raw.get(required) in (None, ""):
            raise ExperimentError(f"{required}: required; set it in the spec or as {required}=...")
    kind_cls = KINDS.get(raw["kind"])
    section = raw["kind"]
    for key in raw:
        if key not in TOP_FIELDS and key != section:
            owner = f"; it is the section of kind={key}" if key in KINDS.names() else ""
            raise ExperimentError(f"{key}: unknown key{owner}; the keys of kind={section} are "
                                  f"{', '.join([*TOP_FIELDS, section])}")
    top = {k: v for k, v in raw.items() if k != section}
    if not isinstance(raw.get(section) or {}, dict):
        raise ExperimentError(f"{section}: got {raw[section]!r}; it is a mapping of "
                              f"{', '.join(f.name for f in dataclasses.fields(kind_cls.Config))}")
    schema = OmegaConf.structured(ExperimentSpec)
    kind_schema = OmegaConf.structured(kind_cls.Config)
    try:
        merged = OmegaConf.merge(schema, top)
        params = OmegaConf.to_object(OmegaConf.merge(kind_schema, raw.get(section) or {}))
    except (ConfigKeyError, ConfigAttributeError) as err:
        key = getattr(err, "full_key", None) or "?"
        prefix = f"{section}." if key.split(".")[0] not in TOP_FIELDS else ""
        fields = ", ".join(f.name for f in dataclasses.fields(kind_cls.Config)) if prefix else ", ".join(TOP_FIELDS)
        raise ExperimentError(f"{prefix}{key}: unknown key; the fields are {fields}") from None
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", None) or "?"
        where = key if key.split(".")[0] in TOP_FIELDS else f"{section}.{key}"
        raise ExperimentError(f"{where}: {str(getattr(err, 'msg', err)).splitlines()[0]}") from None
    spec = ExperimentSpec(**{k: merged[k] for k in TOP_FIELDS})
    spec.base = list(spec.base)
    spec.params = params
    spec.validate()
    if hasattr(params, "validate"):
        params.validate()
    return spec
