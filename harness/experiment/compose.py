"""One run's config from override lines, exactly as `python -m harness.train` composes it; errors
name the spec field the overrides came from. Used by plan.py and results.py (which plan.py uses)."""

from __future__ import annotations

from typing import Any, Sequence

from harness.experiment.spec import ExperimentError


def compose_run(overrides: Sequence[str], source: str) -> Any:
    """The validated RunConfig of `overrides` on conf/config.yaml; errors name `source`."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from harness.checks import ConfigError
    from harness.ladder.overrides import compose_base

    try:
        cfg = compose_base(tuple(overrides))
        cfg.validate()
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ExperimentError(f"{source}: {message} (overrides: {' '.join(overrides)})") from None
    return cfg
