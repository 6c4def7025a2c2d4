"""Named variants of a config section (schedules, optimizers, architectures).

A `Registry` maps the section's discriminating name (`schedule.name`, `optim.name`, `model.arch`)
to the one class that owns that variant: its fields, their validation and its behaviour. A class
joins with `@REGISTRY.register("name")`; every lookup of a name goes through `Registry.get`, so an
unknown name fails in one place with the list of known ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Generic, TypeVar

from harness.checks import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, field_name: str) -> None:
        self.field_name = field_name  # e.g. "schedule.name", used in error messages
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        def decorate(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.field_name}={name!r} is registered twice")
            self._classes[name] = cls
            return cls

        return decorate

    def names(self) -> tuple[str, ...]:
        return tuple(self._classes)

    def get(self, name: Any) -> type[T]:
        if name not in self._classes:
            raise ConfigError(f"{self.field_name}: got {name!r}; choose one of {', '.join(self._classes)}")
        return self._classes[name]

    def create(self, name: str, **fields: Any) -> T:
        """An instance of `name`'s class with `fields` (a field of another variant is an error)."""
        cls = self.get(name)
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        section = self.field_name.split(".")[0]
        for key in fields:
            if key not in known:
                raise ConfigError(f"{section}.{key}: not a field of {cls.__name__} (its fields: "
                                  f"{', '.join(sorted(known))}); {self.owners_hint(key)}")
        return cls(**{"name": name, **fields})  # type: ignore[call-arg]

    def owners_hint(self, key: str) -> str:
        """Where an unknown field belongs, for error messages."""
        owners = [n for n, c in self._classes.items() if key in {f.name for f in dataclasses.fields(c)}]  # type: ignore[arg-type]
        return f"it belongs to {self.field_name}={'/'.join(owners)}" if owners else "check the spelling"
