"""The config error type and the two checks every config class uses (no other imports, so the
torch-free registries in harness/schedules.py, harness/optimizers.py and harness/archs.py and
harness/config.py can all raise the same error)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is wrong; the message names the field and how to fix it."""


def require(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field_name}: {message}")


def one_of(value: str, field_name: str, choices: tuple[str, ...]) -> None:
    require(value in choices, field_name, f"got {value!r}; choose one of {', '.join(choices)}")
