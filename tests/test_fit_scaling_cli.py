"""`python -m harness.fit scaling` end to end on the Chinchilla points: fit the runs below 1e21
FLOPs, predict the 23 runs at or above it. The points are public data (docs/DATA.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import needs_data

from harness.fit.__main__ import main
from harness.fit.data_dir import dataset

DATASET = "besiroglu2024_analyzing_chinchilla"
pytestmark = needs_data(DATASET)


@pytest.fixture(scope="module")
def chinchilla_csvs(tmp_path_factory) -> tuple[Path, Path]:
    raw = pd.read_csv(dataset(DATASET) / "svg_extracted_data.csv").sort_values("loss").iloc[:-5]  # Besiroglu drop the 5 highest losses
    table = pd.DataFrame({"N": raw["Model Size"], "C": raw["Training FLOP"], "loss": raw["loss"]})
    table["D"] = table["C"] / (6 * table["N"])
    root = tmp_path_factory.mktemp("chinchilla")
    fit, big = root / "small.csv", root / "big.csv"
    table[table["C"] < 1e21][["N", "D", "loss"]].to_csv(fit, index=False)
    table[table["C"] >= 1e21][["N", "D", "C", "loss"]].to_csv(big, index=False)
    return fit, big


@pytest.mark.parametrize("law,max_pred_err", [
    ("chinchilla", 0.02), ("kaplan", 0.03), ("gadre", 0.02), ("farseer", 0.02), ("compute", 0.02),
])
def test_scaling_cli_end_to_end(chinchilla_csvs, tmp_path: Path, law: str,
                                max_pred_err: float) -> None:
    fit_csv, big_csv = chinchilla_csvs
    out = tmp_path / law
    argv = ["scaling", "--law", law, "--fit", str(fit_csv), "--predict", str(big_csv),
            "--out", str(out)]
    if law == "chinchilla":
        argv += ["--bootstrap", "20"]
    assert main(argv) == 0
    for name in ("params.json", "metrics.json", "pred_big.csv", "plot_scaling.png"):
        assert (out / name).is_file(), name
    params = json.loads((out / "params.json").read_text())
    assert params["law"] == law and params["n"] == 217
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fit"]["prede"] < 0.012
    assert metrics["predict"]["big"]["n"] == 23
    assert metrics["predict"]["big"]["prede"] < max_pred_err
    pred = pd.read_csv(out / "pred_big.csv")
    assert len(pred) == 23 and pred["loss_pred"].between(1.5, 3.5).all()
    if law == "chinchilla":
        assert 0.25 < params["derived"]["alpha"] < 0.45
        assert "bootstrap" in params and {"loss_pred_lo", "loss_pred_hi"} <= set(pred.columns)


def test_scaling_cli_names_a_missing_column(chinchilla_csvs, tmp_path: Path, capsys) -> None:
    fit_csv, _ = chinchilla_csvs
    no_d = tmp_path / "no_d.csv"
    pd.read_csv(fit_csv).drop(columns=["D"]).to_csv(no_d, index=False)
    out = tmp_path / "out"
    assert main(["scaling", "--law", "chinchilla", "--fit", str(no_d), "--out", str(out)]) == 2
    assert "'D'" in capsys.readouterr().err
    assert not out.exists()


def test_scaling_cli_select_settings(chinchilla_csvs, tmp_path: Path) -> None:
    """--select-settings chooses the robust-fit settings by extrapolating inside the fit runs."""
    fit_csv, big_csv = chinchilla_csvs
    out = tmp_path / "selected"
    assert main(["scaling", "--law", "chinchilla", "--fit", str(fit_csv), "--predict", str(big_csv),
                 "--out", str(out), "--select-settings"]) == 0
    params = json.loads((out / "params.json").read_text())
    settings = params["fit_settings"]
    assert set(settings["settings"]) == {"huber_delta", "weight_power", "lower_cut"}
    assert settings["n_candidates"] == 45 and settings["validation_prede"] < 0.02
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["predict"]["big"]["prede"] < 0.02 and params["warnings"] == []
