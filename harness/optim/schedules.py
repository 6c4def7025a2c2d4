"""The LR schedules' import path for the training code: the schedules themselves (one registered
class each) live in harness/schedules.py, which harness.config can import without torch."""

from harness.schedules import Schedule, build_schedule, cooldown_multiplier

__all__ = ["Schedule", "build_schedule", "cooldown_multiplier"]
