"""Where the public data from other projects lives (never committed here; origins in docs/DATA.md).

The reproductions (scripts/reproduce_*.py), the fit benchmark and some tests read published loss
curves and scaling points from a data directory, looked up in this order:

1. a directory given explicitly (the scripts' `--data DIR`);
2. the environment variable `HARNESS_DATA`;
3. `<repository root>/../shared/data` (what development and CI checkouts have).

`dataset(name)` returns the dataset's directory below it, or raises `DataMissing` with a message
that names the missing directory and where the public files come from. Tests turn that into a
skip (tests/conftest.py, `needs_data`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable, TypeVar

ENV_VAR = "HARNESS_DATA"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT = REPO_ROOT.parent / "shared" / "data"

# name (the directory below the data dir) -> where its files come from (full details: docs/DATA.md).
SOURCES: dict[str, str] = {
    "luo2025_multipowerlaw": "github.com/thu-yao-01-luo/MultiPowerLaw, commit 8da9f1902602f3391b971a811e3cc51604541769, "
                             "loss_curve_repo/csv_{25,100,400}/*.csv (MIT)",
    "besiroglu2024_analyzing_chinchilla": "github.com/epoch-research/analyzing-chinchilla, commit "
                                          "92258837425e1b5f2851d624287f0120583a3d0e, data/svg_extracted_data.csv",
    "gadre2024_mlfoundations_scaling": "github.com/mlfoundations/scaling, commit a003c4913793ac2ae7ef87b28ecb562955d026d5, "
                                       "exp_data/models/*.json (104 models) and exp_data/evals/*.json (their "
                                       "downstream evaluations; MIT)",
    "li2025_steplaw": "github.com/step-law/steplaw, commit 32a8f4cc50247695fb56cc6c9117abdf67c97763, "
                      "data/dense_lr_bs_loss.csv (no license stated)",
    "tissue2024_appendix_example": "the example points in the fitting script of Tissue et al. 2024 "
                                   "(arXiv:2408.11029, function Howe_Scaling_Law), as a 40-row table",
}

T = TypeVar("T")


class DataMissing(FileNotFoundError):
    """A public dataset is not in the data directory."""


def exit_if_missing(call: Callable[[], T]) -> T:
    """`call()`, or, when it needs a public dataset that is absent, the reason on stderr and exit 2
    (bad input, as the CLIs do): the reproduction scripts' entry points."""
    try:
        return call()
    except DataMissing as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def data_root(explicit: Path | str | None = None) -> Path:
    """The data directory: `explicit`, else $HARNESS_DATA, else <repo root>/../shared/data."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else DEFAULT


def dataset(name: str, explicit: Path | str | None = None) -> Path:
    """The directory of public dataset `name` (a key of SOURCES); DataMissing when it is absent."""
    if name not in SOURCES:
        raise KeyError(f"unknown public dataset {name!r}; known: {sorted(SOURCES)}")
    path = data_root(explicit) / name
    if not path.is_dir():
        raise DataMissing(f"public data not found: {path} is missing. It holds {SOURCES[name]}; "
                          f"see docs/DATA.md. Fix: pass --data DIR or set {ENV_VAR}=DIR, DIR holding {name}/")
    return path
