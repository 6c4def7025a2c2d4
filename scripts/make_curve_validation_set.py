"""Train the proxy curves that validate curve laws across schedules, horizons and PEAK LRs.

The MPL data (shared/data/luo2025_multipowerlaw) has no peak-LR variation, so we make our own:
one tiny LLaMA (d_model 64, 2 layers, ~70k parameters + embeddings) on the embedded offline text,
trained with the harness itself (`python -m harness.train`, one process per run) under

    schedules  constant | cosine (to 0) | cosine to 10% | WSD linear 20% | WSD 1-sqrt 20%
    horizons   600 and 1200 steps (warmup 50 steps in both)
    peak LRs   1e-3, 2e-3, 4e-3, 6e-3   (0.5x, 1x, 2x, 3x the base 2e-3)

with the validation loss every 20 steps. 40 runs, ~36k steps: about 15 CPU-minutes (2 jobs in
parallel by default). Same seed and data order in every run, so curves differ by the schedule only.

    python scripts/make_curve_validation_set.py --out /work/wt/curvedata [--jobs 2] [--dry-run]

A different proxy (a fresh validation set nobody has fitted on) by shape and seed, e.g. the third set:

    python scripts/make_curve_validation_set.py --out /work/wt/curvedata3 --d-model 96 --n-layers 3 --seed 1

(`train.seed` sets both the initialization and the data order.)

Each run writes OUT/<horizon>_<schedule>_<lr>/curve.jsonl; a run whose status.json has state
"completed" is skipped, so the script can be re-run after an interruption. scripts/validate_curve_laws.py
reads OUT back. Keep OUT outside the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

# (short name, Hydra overrides) for each schedule; warmup is set in steps for every run below.
SCHEDULES: dict[str, list[str]] = {
    "constant": ["schedule=constant"],
    "cosine": ["schedule=cosine", "schedule.min_lr_ratio=0.0"],
    "cosine10": ["schedule=cosine", "schedule.min_lr_ratio=0.1"],
    "wsdlin": ["schedule=wsd", "schedule.cooldown=linear", "schedule.decay_fraction=0.2", "schedule.min_lr_ratio=0.0"],
    "wsdsqrt": ["schedule=wsd", "schedule.cooldown=sqrt", "schedule.decay_fraction=0.2", "schedule.min_lr_ratio=0.0"],
}
HORIZONS = (600, 1200)
PEAK_LRS = (1e-3, 2e-3, 4e-3, 6e-3)
BASE_LR = 2e-3
WARMUP_STEPS = 50



@dataclass(frozen=True)
class ProxyShape:
    """The proxy model, seed and validation-set size; the defaults are the first validation set (/work/wt/curvedata)."""
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2
    seed: int = 0
    # 64 sequences x 64 tokens leave ~0.6% point-to-point noise in the val loss; more sequences lower it.
    eval_sequences: int = 64

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(f"--d-model {self.d_model} / --n-heads {self.n_heads} must be an even head "
                             "dimension (RoPE); pick n_heads dividing d_model into an even width")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"--n-kv-heads {self.n_kv_heads} must divide --n-heads {self.n_heads}")
        if self.seed < 0 or self.n_layers < 1:
            raise ValueError(f"--seed must be >= 0 and --n-layers >= 1, got {self.seed}, {self.n_layers}")
        if self.eval_sequences < 1:
            raise ValueError(f"--eval-sequences must be >= 1, got {self.eval_sequences}")

    def overrides(self) -> list[str]:
        return ["model=llama_tiny", f"model.d_model={self.d_model}", f"model.n_layers={self.n_layers}",
                f"model.n_heads={self.n_heads}", f"model.n_kv_heads={self.n_kv_heads}", f"train.seed={self.seed}",
                f"train.eval_sequences={self.eval_sequences}"]


# The proxy's training: small enough for seconds per 100 steps on one core, big enough that the peak LR matters.
PROXY_TRAIN = [
    "train=cpu", "train.seq_len=64", "train.batch_size=16", "train.eval_every=20",
    "train.num_threads=1", "train.checkpoint_every=100000",
    "optim=adamw",
]


@dataclass(frozen=True)
class ProxyRun:
    horizon: int
    schedule: str
    peak_lr: float
    shape: ProxyShape = ProxyShape()

    @property
    def name(self) -> str:
        return f"{self.horizon}_{self.schedule}_{self.peak_lr:g}"

    def overrides(self, run_dir: Path) -> list[str]:
        return [*self.shape.overrides(), *PROXY_TRAIN, *SCHEDULES[self.schedule], f"schedule.warmup_steps={WARMUP_STEPS}",
                f"train.steps={self.horizon}", f"optim.lr={self.peak_lr:g}", f"name={self.name}",
                f"run_dir={run_dir}"]


def all_runs(shape: ProxyShape = ProxyShape()) -> list[ProxyRun]:
    """Every run; the base peak LR first at each horizon (what the fit sets need), then the others."""
    runs = [ProxyRun(h, s, lr, shape) for h in HORIZONS for lr in PEAK_LRS for s in SCHEDULES]
    return sorted(runs, key=lambda r: (r.horizon, r.peak_lr != BASE_LR))


def is_completed(run_dir: Path) -> bool:
    status = run_dir / "status.json"
    if not status.is_file():
        return False
    try:
        return json.loads(status.read_text()).get("state") == "completed"
    except json.JSONDecodeError:
        return False


def train(run: ProxyRun, out: Path) -> tuple[str, int, float]:
    run_dir = out / run.name
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "harness.train", *run.overrides(run_dir)]
    log = out / f"{run.name}.log"
    with open(log, "w") as fh:
        rc = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT)
    return run.name, rc, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (outside the repository)")
    ap.add_argument("--jobs", type=int, default=2, help="runs trained at once (one core each)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, train nothing")
    ap.add_argument("--horizons", type=int, nargs="+", default=list(HORIZONS), help="train only these horizons")
    ap.add_argument("--peak-lrs", type=float, nargs="+", default=None,
                    help="train only these peak LRs (of %s), in this order within each horizon" % (PEAK_LRS,))
    default = ProxyShape()
    ap.add_argument("--d-model", type=int, default=default.d_model, help="proxy width")
    ap.add_argument("--n-layers", type=int, default=default.n_layers, help="proxy depth")
    ap.add_argument("--n-heads", type=int, default=default.n_heads, help="attention heads")
    ap.add_argument("--n-kv-heads", type=int, default=default.n_kv_heads, help="key/value heads")
    ap.add_argument("--seed", type=int, default=default.seed, help="train.seed: initialization and data order")
    ap.add_argument("--eval-sequences", type=int, default=default.eval_sequences,
                    help="validation sequences (of 64 tokens) per evaluation; more = less noise in the val loss")
    args = ap.parse_args(argv)
    shape = ProxyShape(args.d_model, args.n_layers, args.n_heads, args.n_kv_heads, args.seed, args.eval_sequences)
    args.out.mkdir(parents=True, exist_ok=True)
    runs = all_runs(shape)
    todo = [r for r in runs if r.horizon in args.horizons and not is_completed(args.out / r.name)]
    if args.peak_lrs is not None:
        unknown = [lr for lr in args.peak_lrs if lr not in PEAK_LRS]
        if unknown:
            ap.error(f"--peak-lrs {unknown}: not among the set's peak LRs {PEAK_LRS}")
        order = {lr: i for i, lr in enumerate(args.peak_lrs)}
        todo = sorted((r for r in todo if r.peak_lr in order), key=lambda r: (r.horizon, order[r.peak_lr]))
    print(f"{len(todo)} of {len(runs)} runs to train into {args.out}", flush=True)
    if args.dry_run:
        for r in todo:
            print("python -m harness.train " + " ".join(r.overrides(args.out / r.name)))
        return 0
    env_note = os.environ.get("PYTHONPATH", "")
    if not env_note:
        print("note: PYTHONPATH is empty; the runs use whichever `harness` Python finds first", file=sys.stderr)
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for name, rc, wall in pool.map(lambda r: train(r, args.out), todo):
            failed += rc != 0
            print(f"{name:28s} rc={rc} {wall:6.1f}s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
