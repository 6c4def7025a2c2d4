"""Independent check of `chinchilla-journey` (Jin et al. 2025, "The Journey Matters") on pruned runs
trained here: does the average live parameter count N_avg predict the final loss of sparse
pre-training, where Chinchilla with the final or the initial count does not?

    python scripts/check_journey_pruning.py [--out runs/journey_check] [--threads 1]

Runs (tiny LLaMA proxies, 2 layers, the embedded offline text, CPU, fp32; ~3 minutes on one thread):

| family | d_model         | steps    | train.prune                                          |
|--------|-----------------|----------|------------------------------------------------------|
| dense  | 32, 64, 96, 128 | 200, 400 | off                                                  |
| sparse | 32, 64, 96, 128 | 400      | final_sparsity 0.5 and 0.75, window 25%..75% of the  |
|        |                 |          | steps (the paper's near-optimal one), masks every 10 |

The split was chosen before any run was looked at: FIT on the 8 dense runs plus the 4 sparse runs at
sparsity 0.5; PREDICT the 4 held-out sparse runs at sparsity 0.75 (a sparsity the fit never saw).
Three laws are fitted on the same 12 runs and predict the same 4 (final val loss, fitted with the
harness's multi-start Huber fit, harness/fit/fitter.py):

* `chinchilla-journey`: N = N_avg, the token-weighted live non-embedding count (harness/collect.py);
* `chinchilla` with N = N_final, the live count at the end (what the pruned model has);
* `chinchilla` with N = N, the initial (dense) count.

Dense runs have N_avg = N_final = N, so the three differ only on the sparse runs. Prints a table
of every run and the mean / worst relative error of each law on the held-out runs, and writes it
to OUT/check.md. Re-running reuses the completed runs (their directories are skipped).

Result of the one pre-registered run (2026-11-30, 16 runs, 169 s wall on 1 thread): held-out mean
(worst) relative error of the final val loss: journey (N_avg) 0.66% (1.62%), chinchilla with N_final
1.84% (3.39%), chinchilla with the initial N 0.83% (1.10%; its beta sits on the bound 3, as two D
levels leave beta free). With a third dense D level (--dense-steps 200 300 400, a sensitivity check
added after that run, same split): 0.70% (1.45%), 2.09% (3.63%), 0.84% (1.23%), no bound hit.
What pruning to 75% costs (held-out loss minus the dense run of the same width and D, a diagnostic
also chosen after the first run): observed +0.042 nats; journey predicts +0.060, N_final +0.132,
the initial N +0.000 (it cannot see pruning at all).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from harness.collect import collect  # noqa: E402
from harness.config import to_run_config  # noqa: E402
from harness.fit.fit_checks import bound_problems  # noqa: E402
from harness.fit.fitter import fit_law, metrics  # noqa: E402
from harness.fit.laws.final_loss import ChinchillaLaw  # noqa: E402
from harness.fit.laws.journey import JourneyChinchillaLaw  # noqa: E402

WIDTHS = (32, 64, 96, 128)
DENSE_STEPS = (200, 400)
SPARSE_STEPS = 400
FIT_SPARSITY, HELD_OUT_SPARSITY = 0.5, 0.75
BATCH, SEQ = 8, 64  # 512 tokens per step


def run_spec(width: int, steps: int, sparsity: float | None, out: Path, threads: int) -> dict:
    name = f"d{width}_s{steps}_" + ("dense" if sparsity is None else f"p{round(sparsity * 100)}")
    train = {"steps": steps, "seq_len": SEQ, "batch_size": BATCH, "device": "cpu", "deterministic": True,
             "num_threads": threads, "eval_every": steps, "eval_sequences": 64, "checkpoint_every": steps,
             "keep_checkpoints": 1}
    if sparsity is not None:
        train["prune"] = {"enabled": True, "final_sparsity": sparsity, "start_frac": 0.25, "end_frac": 0.75,
                          "every": 10}
    return {"name": name, "run_dir": str(out / "runs" / name),
            "model": {"arch": "llama", "d_model": width, "n_layers": 2, "n_heads": width // 16,
                      "max_seq_len": SEQ},
            "data": {"source": "embedded", "tokenizer": "bpe", "vocab_size": 512, "val_tokens": 32768,
                     "max_chars": 2_000_000},
            "schedule": {"name": "cosine", "warmup_fraction": 0.05, "min_lr_ratio": 0.1},
            "train": train, "logging": {"progress": False, "plot": False}}


def plan(dense_steps: tuple[int, ...] = DENSE_STEPS) -> list[tuple[int, int, float | None]]:
    dense = [(w, s, None) for w in WIDTHS for s in dense_steps]
    sparse = [(w, SPARSE_STEPS, p) for w in WIDTHS for p in (FIT_SPARSITY, HELD_OUT_SPARSITY)]
    return dense + sparse


def train_all(runs: list[tuple[int, int, float | None]], out: Path, threads: int) -> None:
    from harness.train import run_training

    for width, steps, sparsity in runs:
        cfg = to_run_config(run_spec(width, steps, sparsity, out, threads))
        start = time.perf_counter()
        status = run_training(cfg)
        print(f"[check] {cfg.name}: loss {status.get('final_val_loss'):.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)


def role(row: pd.Series) -> str:
    sparsity = row.get("train.prune.final_sparsity") if bool(row.get("train.prune.enabled")) else None
    if sparsity is None or pd.isna(sparsity):
        return "fit"
    return "held_out" if abs(float(sparsity) - HELD_OUT_SPARSITY) < 1e-9 else "fit"


def fit_and_predict(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Fit the three laws on the `fit` rows, predict every row; returns the table with a prediction
    column per law and each law's held-out metrics."""
    train, test = table[table["role"] == "fit"], table[table["role"] == "held_out"]
    laws = {"journey (N_avg)": (JourneyChinchillaLaw(), "N_avg"),
            "chinchilla (N_final)": (ChinchillaLaw(), "N_final"),
            "chinchilla (N initial)": (ChinchillaLaw(), "N")}
    results = {}
    for label, (law, column) in laws.items():
        def frame(rows: pd.DataFrame) -> dict:
            data = {"N_avg": rows[column].to_numpy(float), "N": rows[column].to_numpy(float),
                    "D": rows["D"].to_numpy(float)}
            return law.prepare(data)

        fit = fit_law(law, frame(train), train["loss"].to_numpy(float), seed=0)
        table[f"pred {label}"] = law.predict(fit.theta, frame(table))
        results[label] = {"fit": metrics(train["loss"].to_numpy(float), law.predict(fit.theta, frame(train))),
                          "held_out": metrics(test["loss"].to_numpy(float), law.predict(fit.theta, frame(test))),
                          "converged": fit.converged, "params": fit.derived,
                          "on_bound": [re.search(r"parameter '(\w+)'", p.message).group(1)
                                       for p in bound_problems(law, fit.theta)]}
    return table, results


def pruning_penalties(table: pd.DataFrame, labels: list[str]) -> dict[str, float]:
    """A diagnostic (added after the first run, not part of the pre-registered split): the mean over the
    held-out runs of their loss minus the loss of the dense run of the same width and steps, observed
    and as each law predicts it. It cancels the error all three laws share on the dense baseline and
    asks only what each says pruning costs."""
    dense = table[table["train.prune.enabled"] != True].set_index(["model.d_model", "train.steps"])  # noqa: E712
    held = table[table["role"] == "held_out"]
    keys = list(zip(held["model.d_model"], held["train.steps"]))
    out = {"observed": float(np.mean(held["loss"].to_numpy() - dense.loc[keys, "loss"].to_numpy()))}
    for label in labels:
        column = f"pred {label}"
        out[label] = float(np.mean(held[column].to_numpy() - dense.loc[keys, column].to_numpy()))
    return out


def report(table: pd.DataFrame, results: dict[str, dict]) -> str:
    cols = ["name", "role", "N", "N_avg", "N_final", "D", "loss"] + [c for c in table.columns if c.startswith("pred ")]
    lines = ["| " + " | ".join(c.replace("pred ", "") for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table[cols].iterrows():
        cells = [f"{row[c]:.4f}" if isinstance(row[c], float) and c not in ("N_avg",) else
                 (f"{row[c]:.0f}" if c == "N_avg" else str(row[c])) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| law | fit mean rel. err. | held-out mean rel. err. | held-out worst | converged | on a bound "
              "| alpha | beta |", "|---|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {100 * r['fit']['prede']:.2f}% | {100 * r['held_out']['prede']:.2f}% | "
                     f"{100 * r['held_out']['worste']:.2f}% | {r['converged']} | {', '.join(r['on_bound']) or '-'} | "
                     f"{r['params'].get('alpha', float('nan')):.3f} | {r['params'].get('beta', float('nan')):.3f} |")
    penalty = pruning_penalties(table, list(results))
    lines += ["", "Diagnostic (chosen after the first run): mean cost of pruning to "
              f"{HELD_OUT_SPARSITY:g} on the held-out runs, loss minus the dense run of the same width and D: "
              + ", ".join(f"{k} {v:+.4f}" for k, v in penalty.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/journey_check"))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    parser.add_argument("--dense-steps", type=int, nargs="+", default=list(DENSE_STEPS),
                        help="token budgets (steps) of the dense runs; the pre-registered design is 200 400 "
                             "(a sensitivity check: 200 300 400, more D levels to pin down beta)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    runs = plan(tuple(args.dense_steps))
    train_all(runs, args.out, args.threads)
    names = {run_spec(w, s, p, args.out, args.threads)["name"] for w, s, p in runs}
    table = collect(args.out / "runs")
    table = table[(table["status"] == "completed") & table["name"].isin(names)].copy()
    if len(table) != len(runs):
        print(f"error: {len(table)} of {len(runs)} runs completed", file=sys.stderr)
        return 1
    table["role"] = table.apply(role, axis=1)
    table = table.sort_values(["role", "name"]).reset_index(drop=True)
    table, results = fit_and_predict(table)
    text = report(table, results)
    print(text)
    print(f"\n[check] total wall time {time.perf_counter() - start:.0f} s")
    (args.out / "check.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
