"""Small text and number helpers shared by the plan tables and reports (ladder, experiments, collect)."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> float | None:
    """`value` as a finite float, or None (for empty table cells, NaN, inf, or text)."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def short_number(x: float) -> str:
    """Three significant digits, in exponent form from 10^4 up (parameter, token and FLOP counts)."""
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def duration(seconds: float) -> str:
    """Seconds as `45s`, `12.5m` or `3.2h`."""
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"
