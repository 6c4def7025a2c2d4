"""Over-training extrapolation on Gadre et al. 2024's models: every (N, D) law, two splits.

Data: the 104 model JSONs of mlfoundations/scaling (public, not part of this repository):
DIR/gadre2024_mlfoundations_scaling/exp_data/models/*.json (DIR from --data, else $HARNESS_DATA,
else ../shared/data; harness/fit/data_dir.py). As the official code does: N = all parameters
(embeddings included), D = the `tokens` hyperparameter (= 20 x chinchilla_multiplier x N), loss =
the C4 validation loss; the RedPajama models (`rpj-*`) unless --dataset says otherwise.

Splits (shared/notes/ANCHORS-FITTING.md §6 and §12):
  * paper5: the official 5 fit points (d=96, d=512, d=576_l24, d=1024 at M = 20, d=96 at M = 320)
    -> 1.4B at M = 640 and 6.9B at M = 20; metric: max relative error. Anchor: Gadre's law by the
    official code, 0.7103% / 0.7320% (max 0.73%).
  * broad: the 11M-411M models at every over-training multiple -> the 1.4B and 6.9B models; metric:
    mean relative error. Anchor: 1.54% (over-training law, issue 13).

Every law is fitted by the harness's fitter (Huber 1e-3 on log loss, multi-start L-BFGS-B) and then
passes harness/fit/fit_checks.py; a refused fit is printed as such with its reason, as the CLI would
exit, and its number is shown in brackets.

    python scripts/reproduce_overtraining.py [--data DIR] [--dataset rpj|c4_original|rw_original]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fit.data_dir import DataMissing, dataset, exit_if_missing  # noqa: E402
from harness.fit.fit_checks import check_fit  # noqa: E402
from harness.fit.fitter import fit_law, metrics  # noqa: E402
from harness.fit.registry import SCALING_LAWS  # noqa: E402

DATASET = "gadre2024_mlfoundations_scaling"
C4_VAL = "c4_val"  # the validation set whose loss the paper fits (val_data path contains this)
LOSS_LAWS = ("chinchilla", "kaplan", "gadre", "farseer", "compute")
ANCHORS = {"paper5": 0.0073, "broad": 0.0154}
SMALL = ("d=96_l=8_h=4", "d=512_l=8_h=4", "d=576_l=24_h=8", "d=1024_l=24_h=8")
BIG = ("open_lm_1b", "open_lm_7b")


def load_models(data: Path | str | None = None, which: str = "rpj") -> pd.DataFrame:
    """One row per model of `which` training set: name, shape, M, N, N_non_embedding, D, loss."""
    rows = []
    for path in sorted((dataset(DATASET, data) / "exp_data" / "models").glob(f"{which}-*.json")):
        model = json.loads(path.read_text())
        hp = model["hyperparameters"]
        loss = next(r["loss"] for r in model["results"] if any(C4_VAL in v for v in r["val_data"]))
        shape = model["name"][len(which) + 1:].rsplit("-", 1)[0]
        rows.append({"name": model["name"], "shape": shape, "M": 20.0 * hp["chinchilla_multiplier"],
                     "N": float(hp["params"]), "N_non_embedding": float(hp["params_no_embed"]),
                     "D": float(hp["tokens"]), "loss": float(loss)})
    if not rows:
        raise DataMissing(f"no {which}-*.json models below {dataset(DATASET, data)}/exp_data/models")
    return pd.DataFrame(rows)


def splits(models: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """name -> (fit table, target table), as in the module docstring."""
    small = models[models["shape"].isin(SMALL)]
    paper_fit = small[(small["M"] == 20) | ((small["shape"] == SMALL[0]) & (small["M"] == 320))]
    targets = models[((models["shape"] == BIG[0]) & (models["M"] == 640))
                     | ((models["shape"] == BIG[1]) & (models["M"] == 20))]
    broad_targets = models[models["shape"].isin(BIG)]
    return {"paper5": (paper_fit, targets), "broad": (small, broad_targets)}


def evaluate(law_name: str, fit: pd.DataFrame, target: pd.DataFrame, seed: int = 0) -> dict[str, object]:
    law = SCALING_LAWS[law_name]()
    data = law.prepare(fit)
    result = fit_law(law, data, fit["loss"].to_numpy(), seed=seed)
    pred = np.asarray(law.predict(result.theta, law.prepare(target)), dtype=float)
    obs = target["loss"].to_numpy()
    m = metrics(obs, pred)
    problems = check_fit(law, result.theta, result.converged,
                         {"fit set": law.predict(result.theta, data), "targets": pred}, fit["loss"].to_numpy(),
                         data)
    return {"law": law_name, "mean": m["prede"], "max": m["worste"], "pred": pred.tolist(),
            "refused": [p.message for p in problems], "params": result.params}


def reproduce(data: Path | str | None = None, which: str = "rpj") -> dict[str, list[dict[str, object]]]:
    models = load_models(data, which)
    return {name: [evaluate(law, fit, target) for law in LOSS_LAWS]
            for name, (fit, target) in splits(models).items()}


def report(results: dict[str, list[dict[str, object]]]) -> str:
    lines = []
    for split, rows in results.items():
        metric = "max" if split == "paper5" else "mean"
        lines.append(f"{split}: {metric} relative error on the targets (anchor {100 * ANCHORS[split]:.2f}%)")
        for r in rows:
            value = f"{100 * r[metric]:.3f}%"
            verdict = "ok" if not r["refused"] else "REFUSED: " + r["refused"][0].split(";")[0]
            lines.append(f"  {r['law']:>10}  {value if not r['refused'] else f'[{value}]':>14}  {verdict}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--dataset", default="rpj", choices=("rpj", "c4_original", "rw_original"))
    args = ap.parse_args()
    results = exit_if_missing(lambda: reproduce(args.data, args.dataset))
    print(report(results))


if __name__ == "__main__":
    main()
