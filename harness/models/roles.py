"""Parameter roles and initialization: the one place that decides how each weight starts.

Every parameter is tagged at construction with a `ParamSpec`: its role in the network and its
initial distribution. `initialize()` then sets all parameters from their tags. Keeping the role on
the parameter (rather than inferring it later from module names) is what lets a parameterization
such as muP change init scales and learning rates per role without touching the model code:

| role      | examples                                   | standard init (this module)        |
| --------- | ------------------------------------------ | ---------------------------------- |
| EMBEDDING | token embedding, learned position embedding | normal(0, init_std)                |
| HIDDEN    | attention and MLP matrices                 | normal(0, init_std); residual      |
|           |                                            | output projections / sqrt(2*n_layers) |
| READOUT   | untied output projection (lm_head)         | normal(0, init_std)                |
| VECTOR    | norm gains, biases                         | ones (gains) / zeros (biases)      |

muP (harness.models.mup) rescales these by role through `initialize(model, rule)`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

_SPEC_ATTR = "_harness_spec"


class ParamRole(enum.Enum):
    EMBEDDING = "embedding"
    HIDDEN = "hidden"
    READOUT = "readout"
    VECTOR = "vector"


class InitKind(enum.Enum):
    NORMAL = "normal"
    ZEROS = "zeros"
    ONES = "ones"


@dataclass(frozen=True)
class ParamSpec:
    role: ParamRole
    init: InitKind
    # Standard deviation for InitKind.NORMAL; ignored otherwise.
    std: float = 0.0


def tag(param: nn.Parameter, spec: ParamSpec) -> nn.Parameter:
    """Attach `spec` to `param` (returned for chaining)."""
    setattr(param, _SPEC_ATTR, spec)
    return param


def spec_of(param: torch.Tensor) -> ParamSpec:
    spec = getattr(param, _SPEC_ATTR, None)
    if spec is None:
        raise ValueError(
            f"parameter of shape {tuple(param.shape)} has no ParamSpec; create it through the helpers "
            "in harness.models.layers (linear, embedding, norms) so it gets a role and an init"
        )
    return spec


def param_roles(model: nn.Module) -> dict[str, ParamRole]:
    """Role of every (unique) parameter, by name."""
    return {name: spec_of(p).role for name, p in model.named_parameters()}


@torch.no_grad()
def initialize(model: nn.Module, rule: Optional[Callable[[ParamSpec], ParamSpec]] = None) -> None:
    """Set every parameter from its tag; raises if one was created without a tag.

    `rule` (a parameterization, e.g. harness.models.mup.init_rule) maps each tag to the one used;
    the parameter is re-tagged with it, so `spec_of` always tells how a parameter was initialized.
    """
    for param in model.parameters():
        spec = spec_of(param)
        if rule is not None:
            spec = rule(spec)
            tag(param, spec)
        if spec.init is InitKind.NORMAL:
            param.normal_(mean=0.0, std=spec.std)
        elif spec.init is InitKind.ZEROS:
            param.zero_()
        else:
            param.fill_(1.0)
