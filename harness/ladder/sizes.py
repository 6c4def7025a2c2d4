"""Model sizes of a ladder, from short specs.

`d<W>` is the rule d_model = W (a multiple of 64, or of 32 below 256), n_layers = max(2, W / 64),
head_dim 64 (32 below d_model 256), n_heads = W / head_dim; `<W>x<L>` picks the depth too; the
names in `NAMED_SIZES` (tiny, xs, s, m, l, xl) are aliases of `d<W>`. MLP widths are the
architecture defaults (`d_ff` null) and embeddings are untied (see `plan.model_config`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.ladder.errors import LadderError

NAMED_SIZES = {"tiny": "d64", "xs": "d128", "s": "d256", "m": "d512", "l": "d768", "xl": "d1024"}


@dataclass(frozen=True)
class Size:
    name: str  # the spec as given (it names the run)
    d_model: int
    n_layers: int
    n_heads: int


def size_spec(spec: str) -> Size:
    """`d<W>`, `<W>x<L>` or a name in NAMED_SIZES -> width, depth, heads (see the module docstring)."""
    name = spec
    spec = NAMED_SIZES.get(spec, spec)
    m = re.fullmatch(r"d(\d+)|(\d+)x(\d+)", spec)
    if not m:
        raise LadderError(f"size {name!r}: use d<width> (e.g. d256), <width>x<layers> (e.g. 256x4) "
                          f"or one of {', '.join(NAMED_SIZES)}")
    width = int(m.group(1) or m.group(2))
    head_dim = 64 if width >= 256 else 32
    if width <= 0 or width % head_dim:
        raise LadderError(f"size {name!r}: d_model {width} must be a positive multiple of {head_dim} "
                          "(64 from 256 up, 32 below)")
    layers = int(m.group(3)) if m.group(3) else max(2, width // 64)
    if layers <= 0:
        raise LadderError(f"size {name!r}: needs at least one layer")
    return Size(name=name, d_model=width, n_layers=layers, n_heads=width // head_dim)
