"""Collect a sweep into one table: `python -m harness.collect SWEEP_DIR [--out TABLE_BASENAME]`.

Every run directory below SWEEP_DIR (any depth; a directory holding both `config.yaml` and
`status.json`, see harness/run.py) becomes one row of `TABLE_BASENAME.parquet` and
`TABLE_BASENAME.csv` (default `SWEEP_DIR/runs`), both written atomically:

| column | what |
|---|---|
| `model.d_model`, `optim.lr`, ... | the run's resolved config, flattened (lists as JSON text) |
| `N`, `N_total` | parameters without the embedding (the N of every law and hyperparameter fit: Kaplan, |
|  | Step Law, DeepSeek), and all parameters. `N_non_embedding` (= `N`) and `N_active` (used per |
|  | token, MoE) are kept for older readers |
| `N_avg`, `N_final` | for runs whose parameter count changes (train.prune, harness/prune.py): the live |
|  | non-embedding count averaged over the run's tokens (each step's curve `params_live` weighted by the |
|  | step's tokens; the N of `--law chinchilla-journey`), and the count at the last step. `= N` for dense |
|  | runs (and for steps of a curve without `params_live`); empty for a pruned run without a curve |
| `D` | tokens trained on (status.json `tokens`; else the curve's last row) |
| `B`, `lr`, `wd` | tokens per optimizer step (train.batch_size sequences x train.seq_len), peak learning |
|  | rate (optim.lr), weight decay (optim.weight_decay): the hyperparameter fits' columns |
| `unique_tokens`, `epochs` | size of the training split in tokens, and D / unique_tokens (> 1: D repeats |
|  | data; see harness/data/repetition.py); from status.json, else the curve; empty for older runs |
| `flops`, `C` | training FLOPs (tokens x FLOPs/token of harness/models/flops.py); `C` is the same |
|  | number under the name the fitting stage reads (it then uses it instead of 6ND) |
| `flops_per_token` | training FLOPs per token |
| `optimizer_flops`, `total_flops` | the optimizer's own FLOPs over the run (Muon's Newton-Schulz, SOAP's |
|  | rotations; harness.optim.routing.step_flops) and `flops` + that: the axis for comparing |
|  | optimizers at matched compute. `flops`/`C` leave it out (they stay the C = 6ND of the laws). |
|  | From status.json, else the curve's last row; empty for runs recorded before they were counted |
| `final_loss`, `final_val_loss`, `min_val_loss` | last train loss, last val loss, lowest val loss on the curve |
| `loss` | the fitting target: `final_val_loss` when the run has one, else `final_loss`; |
|  | empty unless the run completed (`loss_source` says which: val_loss / train_loss) |
| `status`, `step` | state in status.json (completed / running / failed / preempted) and the step reached |
| `init_from`, `branch_step` | for a run started from another run's checkpoint (train.init_from, |
|  | harness/branch.py): that checkpoint file and its step (for a cooldown branch, where it left |
|  | its parent); empty for ordinary runs |
| `curve`, `run_dir` | paths of the run's curve.jsonl and directory |
| `acc/<task>`, `error/<task>`, ..., `error` | downstream evals of RUN_DIR/evals.jsonl (harness/eval): each |
|  | task's last evaluated step; `error` = mean error of the multiple-choice tasks at the final step, |
|  | the target of `--law gadre-error` (harness/eval/join.py); absent for runs without evals |
| `val_loss/<name>`, `tokens/<name>` | a data mixture's (data.sources, harness/data/mixture.py) last val loss |
|  | on source <name>'s fixed val set, and the tokens that source gave the run; status.json, else the |
|  | curve's last row holding them; absent for single-source sweeps |

One naming from sweep to fit: every fit and analysis of harness/fit reads N, N_total, D, B, lr, wd,
C and loss from this table as they are (`python -m harness.fit steplaw DIR/runs.csv`).

Parameter counts come from status.json when the run wrote them, else from the config through
harness/models/flops.py (the one formula). The table feeds the fitting CLI directly:
`python -m harness.fit scaling --law chinchilla --fit SWEEP_DIR/runs.csv --out fit/` (rows
without a final loss are skipped with a note). Curves are read by harness/tracking/curve.py: a torn
last line (a run killed mid-write) is skipped with a note; any other bad line stops the collection
with an error naming the file and line (exit 2, nothing written).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from harness.checkpoint import checkpoint_step
from harness.files import atomic_write_bytes, atomic_write_text, read_json
from harness.formatting import finite
from harness.identity import flatten
from harness.tracking.curve import CurveFileError, read_curve

# Leading columns, in this order; the flattened config follows.
SUMMARY_COLUMNS = ("name", "status", "step", "N", "N_total", "N_non_embedding", "N_active", "N_avg", "N_final", "D", "B", "lr", "wd",
                   "unique_tokens", "epochs", "flops", "C", "flops_per_token", "optimizer_flops", "total_flops", "loss", "loss_source",
                   "final_loss", "final_val_loss", "min_val_loss", "init_from", "branch_step", "curve", "run_dir")


def find_run_dirs(root: Path) -> Iterator[Path]:
    """Directories below (or at) `root` that hold a run: config.yaml and status.json."""
    for status in sorted(Path(root).rglob("status.json")):
        if (status.parent / "config.yaml").is_file():
            yield status.parent


def _counts_from_config(model_cfg: dict[str, Any], seq_len: int) -> dict[str, float]:
    """N, N_non_embedding, N_active and FLOPs/token through harness/models/flops.py."""
    from omegaconf import OmegaConf

    from harness.config import ModelConfig
    from harness.models import flops

    model = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), model_cfg))
    return {"N": flops.num_params(model), "N_non_embedding": flops.num_params(model, include_embedding=False),
            "N_active": flops.active_params(model), "flops_per_token": flops.flops_per_token(model, seq_len)}


def live_params(rows: list[dict[str, Any]], n: int | None, pruned: bool) -> dict[str, float | None]:
    """`N_avg` and `N_final` of a run from its curve: each row's `params_live` (n where a row has none:
    a dense run, or a dense parent's rows) weighted by the tokens of its step."""
    if n is None or (pruned and not rows):
        return {"N_avg": None, "N_final": None}
    weighted, seen, previous = 0.0, 0, 0
    for row in rows:
        tokens = row.get("tokens")
        if tokens is None:
            continue
        weighted += (tokens - previous) * row.get("params_live", n)
        seen += tokens - previous
        previous = tokens
    final = rows[-1].get("params_live", n) if rows else n
    return {"N_avg": weighted / seen if seen else float(final), "N_final": final}


def _cell(value: Any) -> Any:
    """Config values as table cells: scalars as they are, lists/dicts as JSON text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def collect_run(run_dir: Path) -> dict[str, Any]:
    """One row for one run directory."""
    from omegaconf import OmegaConf

    config = OmegaConf.to_container(OmegaConf.load(run_dir / "config.yaml"), resolve=False)
    status = read_json(run_dir / "status.json")
    curve_path = run_dir / "curve.jsonl"
    rows = read_curve(curve_path)  # a torn last line is skipped with a note; a bad middle line raises

    counts = {"N": status.get("params"), "N_non_embedding": status.get("params_non_embedding"),
              "N_active": status.get("params_active"), "flops_per_token": status.get("flops_per_token")}
    if any(v is None for v in counts.values()):
        try:
            computed = _counts_from_config(config.get("model", {}), config.get("train", {}).get("seq_len", 0))
            counts = {k: v if v is not None else computed[k] for k, v in counts.items()}
        except (ValueError, TypeError, KeyError):  # e.g. vocab size not yet known
            pass

    tokens = status.get("tokens")
    if tokens is None and rows:
        tokens = rows[-1].get("tokens")
    unique_tokens = status.get("unique_tokens")
    if unique_tokens is None:
        unique_tokens = next((r["unique_tokens"] for r in reversed(rows) if "unique_tokens" in r), None)
    epochs = tokens / unique_tokens if tokens is not None and unique_tokens else None
    flops_total = status.get("flops")
    if flops_total is None and tokens is not None and counts["flops_per_token"] is not None:
        flops_total = tokens * counts["flops_per_token"]

    # The optimizer's own FLOPs: absent (None) for runs recorded before they were counted.
    last_row = rows[-1] if rows else {}
    optimizer_flops = status.get("optimizer_flops", last_row.get("optimizer_flops"))
    total_flops = status.get("total_flops", last_row.get("total_flops"))

    val_losses = [v for v in (finite(r.get("val_loss")) for r in rows) if v is not None]
    final_loss = finite(status.get("final_loss"))
    final_val = finite(status.get("final_val_loss"))
    state = status.get("state", "unknown")
    loss, source = None, None
    if state == "completed":
        loss, source = (final_val, "val_loss") if final_val is not None else (final_loss, "train_loss")
        if loss is None:
            source = None

    init_from = status.get("init_from", config.get("train", {}).get("init_from"))
    branch_step = status.get("branch_step", checkpoint_step(init_from) if init_from else None)

    train, optim = config.get("train", {}), config.get("optim", {})
    batch_tokens = (train["batch_size"] * train["seq_len"]
                    if isinstance(train.get("batch_size"), int) and isinstance(train.get("seq_len"), int) else None)
    row = {
        "name": config.get("name"), "status": state, "step": status.get("step"),
        # N is the non-embedding count (the laws' N); N_total all parameters (see the docstring).
        "N": counts["N_non_embedding"], "N_total": counts["N"], "N_non_embedding": counts["N_non_embedding"],
        "N_active": counts["N_active"], "flops_per_token": counts["flops_per_token"],
        **live_params(rows, counts["N_non_embedding"], bool(train.get("prune", {}).get("enabled"))),
        "D": tokens, "B": batch_tokens, "lr": optim.get("lr"), "wd": optim.get("weight_decay"), "unique_tokens": unique_tokens, "epochs": epochs, "flops": flops_total, "C": flops_total,
        "optimizer_flops": optimizer_flops, "total_flops": total_flops, "loss": loss, "loss_source": source,
        "final_loss": final_loss, "final_val_loss": final_val,
        "min_val_loss": min(val_losses) if val_losses else None,
        "init_from": init_from, "branch_step": branch_step,
        "curve": str(curve_path) if curve_path.is_file() else None, "run_dir": str(run_dir),
    }
    # Downstream evals (harness/eval/join.py): <metric>/<task> of each task's last eval, and `error`
    # (mean MC error at the final step: the gadre-error law's target).
    from harness.eval.join import eval_columns

    row.update(eval_columns(run_dir, status.get("step")))
    row.update(mixture_columns(status, rows))
    for key, value in flatten(config).items():
        if key not in ("name",):
            row.setdefault(key, _cell(value))
    return row


def mixture_columns(status: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """`val_loss/<name>` and `tokens/<name>` of a mixture run: status.json's final values, else the
    curve's last row that holds each."""
    out: dict[str, Any] = {}
    for row in reversed(rows):  # oldest value last: newer rows win through setdefault
        for key, value in row.items():
            if key.startswith(("val_loss/", "tokens/")):
                out.setdefault(key, value)
    for key, value in status.items():
        if key.startswith("final_val_loss/"):
            out[key[len("final_"):]] = finite(value)
        elif key.startswith("tokens/"):
            out[key] = value
    return out


def collect(root: Path) -> pd.DataFrame:
    """The table of every run below `root` (columns as in the module docstring)."""
    records = [collect_run(d) for d in find_run_dirs(root)]
    frame = pd.DataFrame.from_records(records)
    if frame.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    lead = [c for c in SUMMARY_COLUMNS if c in frame.columns]
    rest = sorted(c for c in frame.columns if c not in lead)
    frame = frame[lead + rest]
    for col in ("step", "N", "N_total", "N_non_embedding", "N_active", "N_final", "D", "B", "unique_tokens", "branch_step"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Int64")
    for col in ("N_avg", "lr", "wd", "epochs", "flops", "C", "flops_per_token", "optimizer_flops", "total_flops", "loss", "final_loss",
                "final_val_loss", "min_val_loss"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    # Mixed-type config columns (e.g. null in one run, a number in another) must be one type for parquet.
    for col in rest:
        if frame[col].dtype == object:
            kinds = {type(v) for v in frame[col] if v is not None and not (isinstance(v, float) and math.isnan(v))}
            if len(kinds) > 1 and not kinds <= {int, float}:
                frame[col] = frame[col].map(lambda v: None if v is None else str(v))
    return frame


def write_table(frame: pd.DataFrame, basename: Path) -> tuple[Path, Path]:
    """Write BASENAME.parquet and BASENAME.csv atomically; returns both paths."""
    basename = Path(basename)
    parquet, csv = basename.with_name(basename.name + ".parquet"), basename.with_name(basename.name + ".csv")
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    atomic_write_bytes(parquet, buffer.getvalue())
    atomic_write_text(csv, frame.to_csv(index=False, float_format="%.10g"))
    return parquet, csv


def summary(frame: pd.DataFrame) -> str:
    counts = Counter(frame["status"]) if len(frame) else Counter()
    parts = ", ".join(f"{state} {n}" for state, n in sorted(counts.items()))
    fit_ready = int(frame["loss"].notna().sum()) if len(frame) else 0
    return f"{len(frame)} run(s): {parts or 'none'}; {fit_ready} with a final loss (column 'loss')"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.collect", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep_dir", type=Path, help="directory holding run directories (any depth)")
    parser.add_argument("--out", type=Path, default=None,
                        help="table basename; writes OUT.parquet and OUT.csv (default SWEEP_DIR/runs)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(f"error: {args.sweep_dir} is not a directory. Fix: pass the sweep's root directory.", file=sys.stderr)
        return 2
    try:
        frame = collect(args.sweep_dir)
    except CurveFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if frame.empty:
        print(f"error: no run directories (config.yaml + status.json) below {args.sweep_dir}. "
              "Fix: pass the directory the sweep's run_dir points into.", file=sys.stderr)
        return 2
    parquet, csv = write_table(frame, args.out if args.out is not None else args.sweep_dir / "runs")
    print(summary(frame))
    print(f"wrote {parquet} and {csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
