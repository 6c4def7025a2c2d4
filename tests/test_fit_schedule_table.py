"""Curve CSVs that give each run's schedule parameters instead of an lr column (harness/fit/schedule_table.py).

The LR must be the trainer's own schedule at every step, a file may hold several runs, the fit must
equal the fit on the same runs written step by step, and bad tables are refused naming the row and
the fix. On the public Tissue example (when the data is there): the CLI fits the raw file directly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from harness.fit.__main__ import main
from harness.fit.curve_files import read_curve_files, read_curves
from harness.fit.curve_predict import lr_from_schedule
from harness.fit.data_dir import dataset
from harness.fit.io import InputError, curve_to_csv

from conftest import needs_data

HEADER = "lr_schedule,step,loss,max_lr,min_lr,total_steps,warmup_steps,decay_fraction,cooldown"


def _loss(step: int, shift: float) -> float:
    return 3.0 + 2.0 * step ** -0.3 + shift


def _table(tmp_path: Path, rows: list[str], name: str = "runs.csv", header: str = HEADER) -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _two_runs(tmp_path: Path) -> Path:
    """A cosine to 10 % and a WSD with a 1-sqrt cooldown, loss every 100 steps of 1000 (warmup 50)."""
    rows = []
    for step in range(100, 1001, 100):
        rows.append(f"cosine,{step},{_loss(step, 0.0):.6f},3e-3,3e-4,1000,50,,")
    for step in range(100, 1001, 100):
        rows.append(f"wsd,{step},{_loss(step, 0.01):.6f},3e-3,0,1000,50,0.2,sqrt")
    return _table(tmp_path, rows)


def test_lr_is_the_trainers_schedule_and_one_file_holds_two_runs(tmp_path):
    cosine, wsd = read_curve_files(_two_runs(tmp_path))
    assert (cosine.name, wsd.name) == ("runs_cosine", "runs_wsd")
    assert cosine.step[0] == 1 and cosine.step[-1] == 1000 and np.all(np.diff(cosine.step) == 1)
    want_cos = lr_from_schedule({"name": "cosine", "warmup_steps": 50, "min_lr_ratio": 0.1}, 1000, 3e-3)
    want_wsd = lr_from_schedule({"name": "wsd", "warmup_steps": 50, "min_lr_ratio": 0.0, "decay_fraction": 0.2,
                                 "cooldown": "sqrt"}, 1000, 3e-3)
    np.testing.assert_allclose(cosine.lr, want_cos, rtol=1e-12)  # min_lr / max_lr: 3e-4 / 3e-3 in floats
    np.testing.assert_array_equal(wsd.lr, want_wsd)
    assert cosine.lr[-1] == pytest.approx(3e-4) and wsd.lr[799] == pytest.approx(3e-3)  # floor; stable to 800
    assert np.flatnonzero(np.isfinite(cosine.loss)).tolist() == list(range(99, 1000, 100))
    assert wsd.loss[499] == pytest.approx(_loss(500, 0.01), abs=1e-6)


def test_a_step_zero_row_is_kept_with_lr_zero(tmp_path):
    rows = [f"constant,{s},{_loss(max(s, 1), 0):.6f},1e-3,1e-3,200,0,," for s in (0, 100, 200)]
    (curve,) = read_curve_files(_table(tmp_path, rows))
    assert curve.name == "runs" and curve.step[0] == 0 and curve.lr[0] == 0.0
    assert np.all(curve.lr[1:] == 1e-3)  # constant: the min_lr column is ignored (no floor)
    assert np.isfinite(curve.loss).sum() == 3


def test_fit_equals_the_fit_on_the_same_runs_written_step_by_step(tmp_path):
    table = _two_runs(tmp_path)
    full = []
    for c in read_curve_files(table):
        p = tmp_path / f"{c.name}_full.csv"
        p.write_text(curve_to_csv(c))
        full.append(str(p))
    fits = {}
    for label, inputs in (("table", [str(table)]), ("full", full)):
        out = tmp_path / label
        assert main(["curve", "--law", "tissue", "--fit", *inputs, "--out", str(out), "--allow-unconverged"]) == 0
        fits[label] = json.loads((out / "params.json").read_text())["params"]
    for k, v in fits["full"].items():
        assert fits["table"][k] == pytest.approx(v, rel=1e-6), k  # the CSV rounds the LR in its last digits


def test_same_schedule_twice_gets_names_with_peak_and_length(tmp_path):
    rows = [f"cosine,{s},{_loss(s, 0):.6f},1e-3,0,400,10,," for s in (100, 400)]
    rows += [f"cosine,{s},{_loss(s, 0):.6f},2e-3,0,400,10,," for s in (100, 400)]
    names = [c.name for c in read_curves([_table(tmp_path, rows)], need_loss=True)]
    assert names == ["runs_cosine_0.001_400", "runs_cosine_0.002_400"]


@pytest.mark.parametrize("row, header, message", [
    ("cosinus,100,3.1,1e-3,0,400,10,,", HEADER, "unknown schedule 'cosinus'"),
    ("cosine,500,3.1,1e-3,0,400,10,,", HEADER, "step 500 is outside the run's steps 0..400"),
    ("cosine,-5,3.1,1e-3,0,400,10,,", HEADER, "step -5 is outside the run's steps 0..400"),
    ("cosine,100.5,3.1,1e-3,0,400,10,,", HEADER, "step 100.5 is not an integer"),
    ("cosine,100,3.1,abc,0,400,10,,", HEADER, "'max_lr' has a non-numeric value"),
    ("cosine,100,3.1,1e-3,0,400.5,10,,", HEADER, "whole number of steps"),
    ("cosine,100,-3.1,1e-3,0,400,10,,", HEADER, "column 'loss' must be finite and > 0"),
    ("cosine,100,abc,1e-3,0,400,10,,", HEADER, "column 'loss' has a non-numeric value"),
    ("wsd,100,3.1,1e-3,0,400,10,0.2,wobbly", HEADER, "schedule.cooldown"),
    ("cosine,100,3.1,1e-3,1e-3,0,400,10", "lr_schedule,step,loss,max_lr,peak_lr,min_lr,total_steps,warmup_steps",
     "both columns ['max_lr', 'peak_lr']"),
])
def test_bad_tables_are_refused_naming_the_row_and_fix(tmp_path, row, header, message):
    path = _table(tmp_path, [row], header=header)
    with pytest.raises(InputError, match="Fix:") as err:
        read_curve_files(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_unsorted_steps_are_refused_and_the_cli_writes_nothing(tmp_path):
    rows = [f"cosine,{s},3.1,1e-3,0,400,10,," for s in (200, 100)]
    path = _table(tmp_path, rows)
    with pytest.raises(InputError, match="row 3: out of order: step 100 after step 200"):
        read_curve_files(path)
    out = tmp_path / "out"
    assert main(["curve", "--fit", str(path), "--out", str(out)]) == 2
    assert not out.exists()


def test_a_csv_with_neither_lr_nor_schedule_columns_names_both_ways(tmp_path):
    path = _table(tmp_path, ["100,3.1"], header="step,loss")
    with pytest.raises(InputError, match=r"missing column\(s\) \['lr'\].*lr_schedule,max_lr,total_steps"):
        read_curve_files(path)


@needs_data("tissue2024_appendix_example")
def test_cli_fits_the_tissue_example_file_directly(tmp_path):
    raw = dataset("tissue2024_appendix_example") / "tissue2024_fit_example_points.csv"
    out = tmp_path / "out"
    assert main(["curve", "--law", "tissue", "--fit", str(raw), "--out", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())["params"]
    # The authors' fit (warmup counted at the peak LR) gives L0 = 2.628; with the warmup as run the
    # two fits differ only in the first 500 steps' LR area, which moves L0 by < 0.1 %.
    assert params["L0"] == pytest.approx(2.628, rel=1e-3)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["fit_curves"]) == {"tissue2024_fit_example_points_cosine",
                                          "tissue2024_fit_example_points_constant"}
    assert metrics["fit"]["r2"] > 0.9996
    recorded = json.loads((out / "params.json").read_text())["lr_from_schedule"]
    assert recorded["tissue2024_fit_example_points_cosine"] == {"name": "cosine", "peak_lr": 2e-4, "steps": 20000,
                                                                "warmup_steps": 500, "min_lr_ratio": 0.0}


def test_one_run_spelled_two_ways_is_one_curve(tmp_path):
    rows = [f"cosine,100,{_loss(100, 0):.6f},2e-4,0,400,10,,", f"cosine,200,{_loss(200, 0):.6f},0.0002,0.0,400,10,,",
            f"cosine,400,{_loss(400, 0):.6f},2E-4,0,400,10,,"]
    (curve,) = read_curve_files(_table(tmp_path, rows))
    assert curve.name == "runs" and np.isfinite(curve.loss).sum() == 3 and curve.lr.max() == pytest.approx(2e-4)


def test_columns_that_are_no_schedule_field_do_not_split_a_run(tmp_path):
    header = "lr_schedule,step,loss,max_lr,total_steps,warmup_steps,wall_time,run_id"
    rows = [f"cosine,{s},{_loss(s, 0):.6f},1e-3,400,10,{s * 0.37:.2f},abc{s}" for s in (100, 200, 400)]
    (curve,) = read_curve_files(_table(tmp_path, rows, header=header))
    assert curve.name == "runs" and np.isfinite(curve.loss).sum() == 3
