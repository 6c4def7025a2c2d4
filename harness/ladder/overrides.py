"""A RunConfig as Hydra overrides: the base config the overrides apply to, and the diff against it.

`python -m harness.train` composes conf/config.yaml with the command-line overrides. A planned run
is a RunConfig built on that same base (`compose_base`), so its override line is derived from it:
every field that differs from the base, plus the fields the plan always states (`always`), plus
config-group selections such as `schedule=cosine`. Values are written in Hydra's override grammar
so that they parse back to exactly the same Python values (floats by their shortest round-trip
text, strings quoted when needed).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

from harness.config import RunConfig, register_configs, typed_run_config
from harness.identity import flatten

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"

# Unquoted Hydra strings that parse back as themselves (no spaces, commas, quotes, brackets, ...).
_PLAIN_STRING = re.compile(r"[A-Za-z_/][\w./-]*")
# Words Hydra reads as null, booleans or floats, whatever their case.
_KEYWORDS = {"null", "true", "false", "inf", "nan"}


def compose_base(overrides: Sequence[str] = ()) -> RunConfig:
    """conf/config.yaml composed with `overrides` as `python -m harness.train` composes it, as a
    RunConfig (not validated: the plan sets the fields that make it valid). Inside an initialized
    Hydra (a Hydra app, or a test's `initialize_config_dir`) its config search path is used."""
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return _compose(tuple(overrides))
    return copy.deepcopy(_compose_from_conf_dir(tuple(overrides)))


@functools.lru_cache(maxsize=None)
def _compose_from_conf_dir(overrides: tuple[str, ...]) -> RunConfig:
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return _compose(overrides)


def _compose(overrides: tuple[str, ...]) -> RunConfig:
    from hydra import compose

    register_configs()
    return typed_run_config(compose(config_name="config", overrides=list(overrides)))


def flat_fields(cfg: Any) -> dict[str, Any]:
    """`{"model.d_model": 128, ...}`: every leaf of a config dataclass by its dotted key."""
    return flatten(dataclasses.asdict(cfg))


def format_value(value: Any) -> str:
    """`value` in Hydra's override grammar, parsing back to an equal Python value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # the shortest text that reads back as the same float
    if isinstance(value, str):
        if _PLAIN_STRING.fullmatch(value) and value.lower() not in _KEYWORDS:
            return value
        return _quote(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    raise TypeError(f"no Hydra override syntax for a {type(value).__name__}: {value!r}")


def _quote(text: str) -> str:
    # In a quoted Hydra string a backslash escapes only a quote or the backslashes before one.
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)
    return f"'{text}'"


def diff_overrides(cfg: Any, base: Any, *, always: Collection[str] = (),
                   selections: Mapping[str, str] | None = None) -> list[str]:
    """Overrides that turn `base` into `cfg`: `group=option` for each selection (placed before
    that group's fields), then `key=value` for every leaf that differs from `base` or is in
    `always`, in the config's field order. `base` must already carry the selections."""
    target, start = flat_fields(cfg), flat_fields(base)
    missing = sorted(start.keys() - target.keys())
    if missing:  # composing would keep them, so the result could not equal `cfg`
        raise ValueError(f"the base config has fields the planned config lacks: {', '.join(missing)}")
    out: list[str] = []
    pending = dict(selections or {})
    for key, value in target.items():
        group = key.split(".", 1)[0]
        if group in pending:
            out.append(f"{group}={pending.pop(group)}")
        if key in always or key not in start or start[key] != value:
            out.append(f"{key}={format_value(value)}")
    out.extend(f"{group}={option}" for group, option in pending.items())
    return out
