"""The stack's parameters, gradients and optimizer moments as one flat [K, N] buffer per dtype.

Every stacked parameter [K, ...] is a view into row-major storage [K, N] (run k's numbers in row k,
parameter after parameter), and so is its gradient. Per-run work over all parameters (AdamW, the
gradient norm, clipping) is then a few ops over whole buffers instead of a Python loop over
parameters: at the proxies' sizes a step is dominated by per-op overhead, not arithmetic.

The parameter views are leaves of their own (the buffer does not require grad), so autograd treats
them as ordinary parameters; their `.grad` is preset to a view of the gradient buffer, into which
autograd accumulates in place (a defined `.grad` is added to, not replaced), so zeroing the gradients
is one fill of the buffer.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import torch

# A [K, ...] view of a [K, N] row is not dense, so autograd warns that its (equally strided) grad
# breaks the "layout contract"; it still accumulates in place, which is what the layout is for.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


@dataclass(frozen=True)
class Span:
    """Where one parameter lives: columns [start, end) of the buffer of `dtype`, and its per-run shape."""

    dtype: torch.dtype
    start: int
    end: int
    shape: tuple[int, ...]


class FlatStack:
    """`data[dtype]`, `grad[dtype]`: [K, N] buffers; `params[name]`: [K, *shape] leaf views of `data`
    (requires_grad) with `.grad` a view of `grad`. Parameters are laid out in the given `order`
    (group those an optimizer treats alike next to each other: they then form one span)."""

    def __init__(self, stacked: dict[str, torch.Tensor], order: Sequence[str] | None = None):
        order = list(order) if order is not None else list(stacked)
        if sorted(order) != sorted(stacked):
            raise ValueError(f"order must name each stacked parameter once; got {order} for {sorted(stacked)}")
        first = next(iter(stacked.values()))
        self.runs, self.device = first.shape[0], first.device
        self.spans: dict[str, Span] = {}
        width: dict[torch.dtype, int] = {}
        for name in order:
            p = stacked[name]
            start = width.get(p.dtype, 0)
            width[p.dtype] = start + p[0].numel()
            self.spans[name] = Span(p.dtype, start, width[p.dtype], tuple(p.shape[1:]))
        self.data = {dt: torch.empty(self.runs, n, dtype=dt, device=self.device) for dt, n in width.items()}
        self.grad = {dt: torch.zeros(self.runs, n, dtype=dt, device=self.device) for dt, n in width.items()}
        with torch.no_grad():
            for name, span in self.spans.items():
                self.view(self.data, name).copy_(stacked[name])
        self.params: dict[str, torch.Tensor] = {}
        for name in order:
            p = self.view(self.data, name).requires_grad_(True)
            p.grad = self.view(self.grad, name)
            self.params[name] = p

    def view(self, buffers: dict[torch.dtype, torch.Tensor], name: str) -> torch.Tensor:
        """Parameter `name`'s [K, *shape] view of `buffers` (data, grad, or a moment laid out alike)."""
        span = self.spans[name]
        return buffers[span.dtype][:, span.start:span.end].view(self.runs, *span.shape)

    def zeros_like_data(self) -> dict[torch.dtype, torch.Tensor]:
        return {dt: torch.zeros_like(buf) for dt, buf in self.data.items()}

    @torch.no_grad()
    def zero_grad(self) -> None:
        for buf in self.grad.values():
            buf.zero_()

    @torch.no_grad()
    def keep(self, rows: Sequence[int]) -> "FlatStack":
        """A new FlatStack holding only the runs at `rows`, in that order (same layout)."""
        index = torch.tensor(list(rows), device=self.device)
        stacked = {name: self.view(self.data, name).index_select(0, index) for name in self.spans}
        return FlatStack(stacked, order=list(self.spans))
