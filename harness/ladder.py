"""Model ladder and isoFLOP planner: sizes -> runs (configs, budgets, LR schedules), without training.

    python -m harness.ladder dry-run [--sizes d64 d128 d256] [--tokens-per-param 20]
                                     [--budgets 1e15 3e15 ...] [--lr-rule power|step-law]
                                     [--device-tflops 989 --mfu 0.4 | --cpu-tokens-per-s 2e4]
                                     [--out DIR] [--emit-overrides] [--extra OVERRIDE ...]

**Sizes** (`size_spec`): `d<W>` is the rule d_model = W (a multiple of 64, or of 32 below 256),
n_layers = max(2, W / 64), head_dim 64 (32 below d_model 256), n_heads = W / head_dim; `<W>x<L>`
picks the depth too; the names in `NAMED_SIZES` (tiny, xs, s, m, l, xl) are aliases of `d<W>`.
MLP widths are the architecture defaults (`d_ff` null), embeddings untied.

**Run rules** (`LadderConfig`; N below is `param_count`: non-embedding parameters by default, as
in Kaplan and Step Law, or "total"; every count comes from harness/models/flops.py):
* tokens: D = tokens_per_param x N (default 20, Chinchilla); an isoFLOP plan instead sets
  D = C / flops_per_token for each budget C.
* batch (tokens): B = 0.58 D^0.571 (Step Law's published B_opt), rounded to a power-of-two number
  of sequences within [min_batch, max_batch]; steps = round(D / B) (at least 1).
* peak LR, `lr_rule="power"`: lr = lr_ref (N / n_ref)^-lr_exponent with lr_ref 3e-3 at n_ref 1e6
  (our default 1M run) and lr_exponent 1/3 (the exponent of OLMo-core's ladder). `"step-law"`:
  lr = c N^a D^b with Step Law's published (1.79, -0.713, 0.307), or the constants of a fitted
  `StepLawResult` (`LadderConfig.from_step_law`, or `--step-law-json` with its `summary()`);
  a fitted Step Law also gives the batch rule.
* weight decay: optim default, or from a fitted Power Lines result (`power_lines=`): lambda =
  B / (lr D tau_opt(D/N)), B and D in tokens.
* warmup: N tokens (OLMo-core's rule; 5% of a 20 tokens/param run), at most warmup_max_fraction of
  the steps; schedule `schedule` (cosine by default, min_lr_ratio 0.1).

Each planned run becomes a `RunConfig` (`PlannedRun.run_config()`) or a list of Hydra overrides
(`PlannedRun.overrides()`) for `python -m harness.train`. The dry run prints the plan table,
writes plan.csv, overrides.txt and lr_schedules.png to --out, and creates no run directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import shlex
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.archs import ARCHS
from harness.config import ModelConfig, RunConfig, ScheduleConfig, schedule_config
from harness.models import flops

NAMED_SIZES = {"tiny": "d64", "xs": "d128", "s": "d256", "m": "d512", "l": "d768", "xl": "d1024"}

# Step Law (Li et al. 2025) published fits: lr = 1.79 N^-0.713 D^0.307, B = 0.58 D^0.571 (tokens).
STEP_LAW_LR = (1.79, -0.713, 0.307)
STEP_LAW_BATCH = (0.58, 0.571)


class LadderError(ValueError):
    """A bad size spec or ladder setting; the message says how to fix it."""


@dataclass(frozen=True)
class Size:
    name: str
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


@dataclass(frozen=True)
class Power:
    """value = coefficient * N^exp_N * D^exp_D."""

    coefficient: float
    exp_N: float = 0.0
    exp_D: float = 0.0

    def __call__(self, N: float, D: float) -> float:
        return self.coefficient * N**self.exp_N * D**self.exp_D


@dataclass
class LadderConfig:
    arch: str = "llama"  # llama | gpt2
    vocab_size: int = 512
    seq_len: int = 256
    param_count: str = "non_embedding"  # non_embedding | total: the N of the rules below
    tokens_per_param: float = 20.0
    lr_rule: str = "power"  # power | step-law
    lr_ref: float = 3e-3
    n_ref: float = 1e6
    lr_exponent: float = 1.0 / 3.0
    step_law_lr: Power = field(default_factory=lambda: Power(*STEP_LAW_LR))
    batch_tokens: Power = field(default_factory=lambda: Power(STEP_LAW_BATCH[0], 0.0, STEP_LAW_BATCH[1]))
    min_batch: int = 1  # sequences
    max_batch: int = 1024
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    warmup_max_fraction: float = 0.25
    # A fitted harness.fit.laws.hyperparams.PowerLinesResult: sets weight decay from tau_opt(D/N).
    power_lines: Any = None
    weight_decay: float = 0.1
    # isoFLOP plans skip sizes that would train for fewer steps than this.
    min_steps: int = 50
    run_root: str = "runs/ladder"
    prefix: str = "ladder"

    def validate(self) -> None:
        if self.arch not in dense_archs():
            raise LadderError(f"arch: got {self.arch!r}; the ladder plans dense archs: {', '.join(dense_archs())}")
        if self.param_count not in ("non_embedding", "total"):
            raise LadderError(f"param_count: got {self.param_count!r}; choose non_embedding or total")
        if self.lr_rule not in ("power", "step-law"):
            raise LadderError(f"lr_rule: got {self.lr_rule!r}; choose power or step-law")
        for name in ("vocab_size", "seq_len", "tokens_per_param", "lr_ref", "n_ref", "min_batch", "max_batch",
                     "min_steps"):
            if not getattr(self, name) > 0:
                raise LadderError(f"{name}: must be positive")
        if self.min_batch > self.max_batch:
            raise LadderError("min_batch: must not exceed max_batch")
        _schedule(self.schedule, min_lr_ratio=self.min_lr_ratio)

    @classmethod
    def from_step_law(cls, result: Any, **kwargs: Any) -> "LadderConfig":
        """LR and batch rules from a fitted `StepLawResult` (its power laws, or their `summary()`)."""
        lr, batch = (result["lr"], result["batch"]) if isinstance(result, dict) else (
            result.lr.as_dict(), result.batch.as_dict())
        return cls(lr_rule="step-law",
                   step_law_lr=Power(float(lr["coefficient"]), float(lr.get("exponent_N", 0.0)),
                                     float(lr.get("exponent_D", 0.0))),
                   batch_tokens=Power(float(batch["coefficient"]), float(batch.get("exponent_N", 0.0)),
                                      float(batch.get("exponent_D", 0.0))), **kwargs)


@dataclass
class PlannedRun:
    name: str
    size: Size
    model: ModelConfig
    N: int                # all parameters
    N_non_embedding: int
    flops_per_token: float
    batch_size: int       # sequences
    seq_len: int
    steps: int
    lr: float
    warmup_steps: int
    schedule: str
    min_lr_ratio: float
    weight_decay: float
    run_dir: str
    budget: Optional[float] = None  # the isoFLOP budget, if any

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len

    @property
    def D(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def flops(self) -> float:
        return self.D * self.flops_per_token

    def schedule_config(self) -> ScheduleConfig:
        return _schedule(self.schedule, warmup_steps=self.warmup_steps, min_lr_ratio=self.min_lr_ratio)

    def run_config(self) -> RunConfig:
        """A validated RunConfig (library defaults for everything the plan does not set)."""
        cfg = RunConfig(model=replace(self.model), schedule=self.schedule_config(), name=self.name,
                        run_dir=self.run_dir)
        cfg.data.vocab_size = self.model.vocab_size or cfg.data.vocab_size
        cfg.optim.lr, cfg.optim.weight_decay = self.lr, self.weight_decay
        cfg.train.steps, cfg.train.seq_len, cfg.train.batch_size = self.steps, self.seq_len, self.batch_size
        cfg.validate()
        return cfg

    def overrides(self) -> list[str]:
        """Hydra overrides for `python -m harness.train` (on top of conf/config.yaml or any base)."""
        m = self.model
        return [f"model.arch={m.arch}", f"model.d_model={m.d_model}", f"model.n_layers={m.n_layers}",
                f"model.n_heads={m.n_heads}", "model.n_kv_heads=null", "model.d_ff=null",
                f"model.max_seq_len={m.max_seq_len}", f"model.vocab_size={m.vocab_size}",
                f"model.tie_embeddings={str(m.tie_embeddings).lower()}", f"data.vocab_size={m.vocab_size}",
                f"train.steps={self.steps}", f"train.seq_len={self.seq_len}", f"train.batch_size={self.batch_size}",
                f"optim.lr={self.lr:.6g}", f"optim.weight_decay={self.weight_decay:.6g}",
                f"schedule={self.schedule}",
                *(f"schedule.{k}={v}" for k, v in dataclasses.asdict(self.schedule_config()).items()
                  if k in ("warmup_steps", "min_lr_ratio")),
                f"name={self.name}", f"run_dir={self.run_dir}"]


def dense_archs() -> tuple[str, ...]:
    """Registered archs the ladder can size (its rules have no notion of experts)."""
    return tuple(name for name in ARCHS.names() if not ARCHS.get(name).uses_moe)


def _schedule(name: str, **fields: Any) -> ScheduleConfig:
    """The schedule `name` with those of `fields` it has (constant has no min_lr_ratio)."""
    from harness.schedules import SCHEDULES

    known = {f.name for f in dataclasses.fields(SCHEDULES.get(name))}
    return schedule_config(name, **{k: v for k, v in fields.items() if k in known})


def model_config(size: Size, cfg: LadderConfig) -> ModelConfig:
    model = ModelConfig(arch=cfg.arch, d_model=size.d_model, n_layers=size.n_layers, n_heads=size.n_heads,
                        max_seq_len=cfg.seq_len, vocab_size=cfg.vocab_size, tie_embeddings=False)
    model.validate()
    return model


def _basis(model: ModelConfig, cfg: LadderConfig) -> int:
    return flops.num_params(model, include_embedding=cfg.param_count == "total")


def _pow2_batch(tokens: float, cfg: LadderConfig) -> int:
    seqs = max(tokens / cfg.seq_len, 1.0)
    return int(min(max(2 ** round(math.log2(seqs)), cfg.min_batch), cfg.max_batch))


def plan_run(size: Size, cfg: LadderConfig, tokens: float, tag: str, budget: Optional[float] = None) -> PlannedRun:
    """One run of `size` on about `tokens` tokens, with the ladder's batch / LR / warmup rules."""
    model = model_config(size, cfg)
    n = _basis(model, cfg)
    batch = _pow2_batch(cfg.batch_tokens(n, tokens), cfg)
    steps = max(1, round(tokens / (batch * cfg.seq_len)))
    d_actual = steps * batch * cfg.seq_len
    if cfg.lr_rule == "power":
        lr = cfg.lr_ref * (n / cfg.n_ref) ** (-cfg.lr_exponent)
    else:
        lr = cfg.step_law_lr(n, d_actual)
    wd = cfg.weight_decay
    if cfg.power_lines is not None:
        wd = float(cfg.power_lines.optimal_weight_decay(n, d_actual, batch * cfg.seq_len, lr))
    warmup = min(round(n / (batch * cfg.seq_len)), int(cfg.warmup_max_fraction * steps))
    name = f"{cfg.prefix}_{size.name}_{tag}"
    return PlannedRun(name=name, size=size, model=model, N=flops.num_params(model),
                      N_non_embedding=flops.num_params(model, include_embedding=False),
                      flops_per_token=flops.flops_per_token(model, cfg.seq_len), batch_size=batch,
                      seq_len=cfg.seq_len, steps=steps, lr=lr, warmup_steps=max(warmup, 0), schedule=cfg.schedule,
                      min_lr_ratio=cfg.min_lr_ratio, weight_decay=wd, run_dir=f"{cfg.run_root}/{name}", budget=budget)


def plan_ladder(sizes: Sequence[str], cfg: LadderConfig) -> list[PlannedRun]:
    """One run per size with D = tokens_per_param x N."""
    cfg.validate()
    runs = []
    for spec in sizes:
        size = size_spec(spec)
        n = _basis(model_config(size, cfg), cfg)
        runs.append(plan_run(size, cfg, cfg.tokens_per_param * n, tag=f"tpp{cfg.tokens_per_param:g}"))
    return runs


def plan_isoflop(budgets: Sequence[float], sizes: Sequence[str], cfg: LadderConfig) -> tuple[list[PlannedRun], list[str]]:
    """For each budget C, every candidate size trained on D = C / flops_per_token tokens; sizes that
    would take fewer than `cfg.min_steps` steps are skipped (returned as notes)."""
    cfg.validate()
    runs, skipped = [], []
    for budget in budgets:
        if not budget > 0:
            raise LadderError(f"budget {budget!r}: must be a positive number of FLOPs")
        for spec in sizes:
            size = size_spec(spec)
            fpt = flops.flops_per_token(model_config(size, cfg), cfg.seq_len)
            run = plan_run(size, cfg, budget / fpt, tag=f"C{budget:.0e}".replace("+", ""), budget=budget)
            if run.steps < cfg.min_steps:
                skipped.append(f"{run.name}: {run.steps} steps < min_steps {cfg.min_steps}")
                continue
            runs.append(run)
    return runs, skipped


# ----------------------------------------------------------------------------------------------
# Dry run


def _fmt(x: float) -> str:
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.2e}"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def estimate_seconds(run: PlannedRun, device_tflops: Optional[float], mfu: float,
                     cpu_tokens_per_s: Optional[float]) -> Optional[float]:
    if cpu_tokens_per_s:
        return run.D / cpu_tokens_per_s
    if device_tflops:
        return run.flops / (device_tflops * 1e12 * mfu)
    return None


def plan_table(runs: Sequence[PlannedRun], seconds: Sequence[Optional[float]]) -> list[dict[str, Any]]:
    return [{"name": r.name, "d_model": r.model.d_model, "n_layers": r.model.n_layers, "n_heads": r.model.n_heads,
             "N": r.N, "N_non_embedding": r.N_non_embedding, "D": r.D, "tokens_per_param": r.D / r.N_non_embedding,
             "flops": r.flops, "budget": r.budget, "batch_size": r.batch_size, "batch_tokens": r.tokens_per_step,
             "lr": r.lr, "weight_decay": r.weight_decay, "warmup_steps": r.warmup_steps, "steps": r.steps,
             "schedule": r.schedule, "est_seconds": s}
            for r, s in zip(runs, seconds)]


def print_plan(rows: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ["name", "N", "N_non_embedding", "D", "flops", "batch_size", "lr", "warmup_steps", "steps", "est_time"]
    for c in cols:
        table.add_column(c, justify="left" if c == "name" else "right")
    for row in rows:
        est = "-" if row["est_seconds"] is None else _duration(row["est_seconds"])
        table.add_row(row["name"], _fmt(row["N"]), _fmt(row["N_non_embedding"]), _fmt(row["D"]), _fmt(row["flops"]),
                      str(row["batch_size"]), f"{row['lr']:.3g}", str(row["warmup_steps"]), str(row["steps"]), est)
    Console(width=160).print(table)


def plot_schedules(runs: Sequence[PlannedRun], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.files import atomic_write_bytes
    from harness.optim.schedules import build_schedule

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for run in runs:
        sched = build_schedule(run.schedule_config(), total_steps=run.steps, peak_lr=run.lr,
                               batch_size=run.batch_size, tokens_per_step=run.tokens_per_step)
        stride = max(1, run.steps // 400)
        steps = list(range(1, run.steps + 1, stride)) + ([run.steps] if (run.steps - 1) % stride else [])
        ax.plot([s * run.tokens_per_step for s in steps], [sched.lr(s) for s in steps], label=run.name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens")
    ax.set_ylabel("learning rate")
    ax.set_title("planned LR schedules")
    if len(runs) <= 12:
        ax.legend(fontsize=7)
    fig.tight_layout()
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def dry_run(runs: Sequence[PlannedRun], out: Path, *, title: str, device_tflops: Optional[float] = None,
            mfu: float = 0.4, cpu_tokens_per_s: Optional[float] = None, extra: Sequence[str] = (),
            emit_overrides: bool = False) -> list[dict[str, Any]]:
    """Print the plan, write plan.csv / overrides.txt / lr_schedules.png under `out`; trains nothing."""
    import pandas as pd

    from harness.files import atomic_write_text

    seconds = [estimate_seconds(r, device_tflops, mfu, cpu_tokens_per_s) for r in runs]
    rows = plan_table(runs, seconds)
    print_plan(rows, title)
    total = [s for s in seconds if s is not None]
    if total:
        print(f"estimated total: {_duration(sum(total))} "
              + (f"at {cpu_tokens_per_s:g} tokens/s" if cpu_tokens_per_s else f"at {device_tflops:g} TFLOP/s x MFU {mfu:g}"))
    lines = [shlex.join([*r.overrides(), *extra]) for r in runs]
    atomic_write_text(out / "plan.csv", pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "overrides.txt", "\n".join(lines) + "\n")
    plot_schedules(runs, out / "lr_schedules.png")
    if emit_overrides:
        print("# one run per line: python -m harness.train <line>")
        for line in lines:
            print(line)
    print(f"wrote {out / 'plan.csv'}, {out / 'overrides.txt'}, {out / 'lr_schedules.png'} (nothing trained)")
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.ladder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dry-run", help="print the plan and plot the LR schedules; trains nothing")
    p.add_argument("--sizes", nargs="+", default=["d64", "d128", "d256"], help="d<W>, <W>x<L> or a named size")
    p.add_argument("--budgets", nargs="+", type=float, default=None,
                   help="isoFLOP budgets (training FLOPs); each size gets D = C / FLOPs-per-token")
    p.add_argument("--tokens-per-param", type=float, default=20.0)
    p.add_argument("--param-count", choices=("non_embedding", "total"), default="non_embedding")
    p.add_argument("--arch", choices=dense_archs(), default="llama")
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--schedule", default="cosine", choices=("constant", "cosine", "linear", "wsd"))
    p.add_argument("--lr-rule", choices=("power", "step-law"), default="power")
    p.add_argument("--lr-ref", type=float, default=3e-3, help="power rule: LR at --n-ref parameters")
    p.add_argument("--n-ref", type=float, default=1e6)
    p.add_argument("--lr-exponent", type=float, default=1 / 3, help="power rule: lr ∝ N^-exponent")
    p.add_argument("--step-law-json", type=Path, default=None,
                   help="a fitted Step Law: JSON {'lr': {coefficient, exponent_N, exponent_D}, "
                        "'batch': {coefficient, exponent_D}} (StepLawResult.summary()); implies --lr-rule step-law")
    p.add_argument("--min-steps", type=int, default=50, help="isoFLOP: skip sizes with fewer steps")
    p.add_argument("--max-batch", type=int, default=1024, help="sequences")
    p.add_argument("--device-tflops", type=float, default=None, help="peak TFLOP/s of the device (H100 bf16: 989)")
    p.add_argument("--mfu", type=float, default=0.4)
    p.add_argument("--cpu-tokens-per-s", type=float, default=None, help="measured training tokens/s (CPU)")
    p.add_argument("--run-root", default="runs/ladder", help="run_dir of each run is RUN_ROOT/<name>")
    p.add_argument("--prefix", default="ladder")
    p.add_argument("--out", type=Path, default=Path("ladder_plan"))
    p.add_argument("--emit-overrides", action="store_true", help="print one Hydra override line per run")
    p.add_argument("--extra", nargs="*", default=[], help="overrides appended to every run (e.g. data=tinystories)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    common = dict(arch=args.arch, vocab_size=args.vocab_size, seq_len=args.seq_len, param_count=args.param_count,
                  tokens_per_param=args.tokens_per_param, schedule=args.schedule, min_steps=args.min_steps,
                  max_batch=args.max_batch, run_root=args.run_root, prefix=args.prefix)
    try:
        if args.step_law_json is not None:
            cfg = LadderConfig.from_step_law(json.loads(args.step_law_json.read_text()), **common)
        else:
            cfg = LadderConfig(lr_rule=args.lr_rule, lr_ref=args.lr_ref, n_ref=args.n_ref,
                               lr_exponent=args.lr_exponent, **common)
        if args.budgets:
            runs, skipped = plan_isoflop(args.budgets, args.sizes, cfg)
            title = f"isoFLOP plan: budgets {', '.join(f'{b:.1e}' for b in args.budgets)}"
        else:
            runs, skipped = plan_ladder(args.sizes, cfg), []
            title = f"ladder plan: D = {args.tokens_per_param:g} x N ({args.param_count})"
    except (LadderError, ValueError, KeyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in skipped:
        print(f"skipped {note}")
    if not runs:
        print("error: no run left in the plan. Fix: lower --min-steps or raise --budgets.", file=sys.stderr)
        return 2
    dry_run(runs, args.out, title=title, device_tflops=args.device_tflops, mfu=args.mfu,
            cpu_tokens_per_s=args.cpu_tokens_per_s, extra=args.extra, emit_overrides=args.emit_overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
