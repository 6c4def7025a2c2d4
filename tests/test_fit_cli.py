"""`python -m harness.fit` end to end: outputs, curve.jsonl input, and every bad-input case."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.fit import registry
from harness.fit.__main__ import main
from harness.fit.io import Curve, curve_to_csv
from harness.fit.laws.base import Law, Param
from harness.fit.laws.curve import TissueLaw

from conftest import needs_data

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from reproduce_mpl import load_curve  # noqa: E402
from reproduce_tissue import tissue_curves  # noqa: E402


def _write_curves(tmp: Path, curves: list[Curve]) -> list[Path]:
    paths = []
    for c in curves:
        p = tmp / f"{c.name}.csv"
        p.write_text(curve_to_csv(c))
        paths.append(p)
    return paths


@needs_data("tissue2024_appendix_example")
def test_curve_cli_on_tissue_example(tmp_path, capsys):
    cosine, constant = _write_curves(tmp_path, tissue_curves())
    out = tmp_path / "out"
    rc = main(["curve", "--law", "tissue", "--fit", str(cosine), str(constant), "--predict", str(constant),
               "--out", str(out), "--bootstrap", "20", "--seed", "1"])
    assert rc == 0
    params = json.loads((out / "params.json").read_text())
    assert params["params"]["L0"] == pytest.approx(2.628, rel=1e-3)
    assert set(params["bootstrap"]["intervals"]) == {"L0", "A", "C", "alpha"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["fit"]["r2"] > 0.9996 and constant.stem in metrics["predict"]
    pred = pd.read_csv(out / f"pred_{constant.stem}.csv")
    assert list(pred.columns) == ["step", "lr", "loss", "loss_pred", "loss_pred_lo", "loss_pred_hi"]
    assert len(pred) == 20 and (pred["loss_pred_lo"] <= pred["loss_pred_hi"]).all()
    assert (out / "plot_curve.png").stat().st_size > 1000
    assert "PredE" in capsys.readouterr().out
    assert not list(out.glob(".*.tmp"))  # atomic writes leave no temp files


@needs_data("luo2025_multipowerlaw")
def test_curve_cli_on_mpl_data_predicts_unseen_schedules(tmp_path):
    fit = _write_curves(tmp_path, [load_curve("25", n) for n in ("cosine_24000", "constant_24000", "wsdcon_9")])
    pred = _write_curves(tmp_path, [load_curve("25", "wsdcon_3")])
    out = tmp_path / "out"
    rc = main(["curve", "--law", "tissue-true-warmup", "--fit", *map(str, fit), "--predict", str(pred[0]),
               "--out", str(out)])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())["predict"]["wsdcon_3"]
    assert m["prede"] < 0.004 and m["n"] == 95


def _jsonl_run(tmp: Path, truth: np.ndarray, *, torn: bool = False) -> Path:
    """A synthetic harness run: loss every step (noisy), val_loss every 50 steps (exact)."""
    steps = np.arange(1, 2001)
    lr = np.where(steps <= 100, 1e-3 * steps / 100, 1e-4 + 0.5 * 9e-4 * (1 + np.cos(np.pi * (steps - 100) / 1900)))
    law = TissueLaw(warmup="true")
    full = law.predict(truth, law.prepare([Curve("r", "r", steps, lr, np.ones(steps.size), max_points=steps.size)]))
    rng = np.random.default_rng(0)
    run = tmp / "run_a"
    run.mkdir()
    lines = []
    for i, s in enumerate(steps):
        row = {"step": int(s), "tokens": int(s) * 1024, "flops": 1e9 * s, "lr": float(lr[i]),
               "loss": float(full[i] * (1 + 0.002 * rng.standard_normal())), "grad_norm": 1.0}
        if s % 50 == 0:
            row["val_loss"] = float(full[i])
        if s == 7:
            row["loss"] = "nan"  # the harness writes non-finite values as strings
        lines.append(json.dumps(row))
    text = "\n".join(lines) + "\n"
    if torn:
        text += '{"step": 2001, "lr'  # killed mid-write
    (run / "curve.jsonl").write_text(text)
    return run / "curve.jsonl"


def test_curve_cli_on_harness_jsonl(tmp_path):
    truth = np.array([2.0, 0.3, 0.4, 0.5])
    path = _jsonl_run(tmp_path, truth, torn=True)
    out = tmp_path / "out"
    assert main(["curve", "--law", "tissue-true-warmup", "--fit", str(path), "--predict", str(path),
                 "--target", "val_loss", "--out", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())["params"]
    np.testing.assert_allclose([params[k] for k in ("L0", "A", "C", "alpha")], truth, rtol=2e-3)
    pred = pd.read_csv(out / "pred_run_a.csv")
    assert list(pred.columns[:4]) == ["step", "lr", "val_loss", "val_loss_pred"] and len(pred) == 40
    # Train loss (every step, one NaN row): thinned to --max-points, still fits.
    out2 = tmp_path / "out2"
    assert main(["curve", "--law", "power", "--fit", str(path), "--target", "loss", "--max-points", "200",
                 "--out", str(out2)]) == 0
    assert json.loads((out2 / "metrics.json").read_text())["fit"]["n"] == 200


class _ToyScaling(Law):
    """L = E + A N^-a (a stand-in so the scaling plumbing is tested without F2's laws)."""

    name = "toy"
    required_columns = ("N", "D")
    params = (Param("E", 0.0, 10.0, (1.0, 2.0)), Param("A", 0.0, 1e4, (10.0, 100.0)),
              Param("a", 0.0, 2.0, (0.2, 0.5)))

    def predict(self, theta, data):
        th = np.atleast_2d(theta)
        out = th[:, :1] + th[:, 1:2] * data["N"][None, :] ** (-th[:, 2:3])
        return out[0] if np.ndim(theta) == 1 else out


@pytest.fixture
def toy_law(monkeypatch):
    monkeypatch.setitem(registry.SCALING_LAWS, "toy", _ToyScaling)


def _scaling_files(tmp: Path) -> tuple[Path, Path]:
    n = np.logspace(6, 9, 12)
    law = _ToyScaling()
    fit = tmp / "runs.csv"
    pd.DataFrame({"N": n, "D": 20 * n, "loss": law.predict(np.array([1.8, 50.0, 0.3]), {"N": n})}).to_csv(fit, index=False)
    targets = tmp / "targets.csv"
    pd.DataFrame({"N": [1e10, 1e11], "D": [2e11, 2e12]}).to_csv(targets, index=False)
    return fit, targets


def test_scaling_cli_plumbs_registry_laws(tmp_path, toy_law):
    fit, targets = _scaling_files(tmp_path)
    out = tmp_path / "out"
    assert main(["scaling", "--law", "toy", "--fit", str(fit), "--predict", str(targets), "--out", str(out),
                 "--bootstrap", "10"]) == 0
    pred = pd.read_csv(out / "pred_targets.csv")
    assert list(pred.columns) == ["N", "D", "loss", "loss_pred", "loss_pred_lo", "loss_pred_hi"]
    assert pred["loss"].isna().all()
    np.testing.assert_allclose(pred["loss_pred"], 1.8 + 50.0 * pred["N"] ** -0.3, rtol=1e-4)
    assert (out / "plot_scaling.png").exists()


# -- bad input: exit 2, message names file (and row), nothing written ---------------------------

GOOD = "step,lr,loss\n0,0.0,\n1,0.001,3.0\n2,0.001,2.9\n3,0.001,2.8\n4,0.0009,2.7\n"
BAD_CURVES = {
    "missing_column": ("step,loss\n0,3.0\n", "missing column", None),
    "non_numeric": ("step,lr,loss\n0,0.001,3.0\n1,0.001,abc\n", "non-numeric", 3),
    "negative_loss": ("step,lr,loss\n0,0.001,3.0\n1,0.001,-2.0\n", "must be finite and > 0", 3),
    "unsorted": ("step,lr,loss\n0,0.001,3.0\n2,0.001,2.9\n1,0.001,2.8\n", "out of order", 4),
    "duplicated": ("step,lr,loss\n0,0.001,3.0\n1,0.001,2.9\n1,0.001,2.8\n", "duplicated", 4),
    "missing_steps": ("step,lr,loss\n0,0.001,3.0\n1,0.001,2.9\n5,0.001,2.8\n", "missing steps", 4),
    "empty_lr": ("step,lr,loss\n0,0.001,3.0\n1,,2.9\n", "'lr' is empty", 3),
    "no_loss": ("step,lr,loss\n0,0.001,\n1,0.001,\n", "no observed", None),
}


@pytest.mark.parametrize("case", sorted(BAD_CURVES))
@pytest.mark.parametrize("role", ["fit", "predict"])
def test_bad_curve_input_exits_and_writes_nothing(tmp_path, capsys, case, role):
    text, problem, row = BAD_CURVES[case]
    if case == "no_loss" and role == "predict":
        pytest.skip("a prediction target needs no loss")
    good, bad = tmp_path / "good.csv", tmp_path / f"{case}.csv"
    good.write_text(GOOD)
    bad.write_text(text)
    fit, pred = (bad, good) if role == "fit" else (good, bad)
    out = tmp_path / "out"
    rc = main(["curve", "--law", "power", "--fit", str(fit), "--predict", str(pred), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert str(bad) in err and problem in err and "Fix:" in err
    if row is not None:
        assert f"row {row}" in err
    assert not out.exists()


def test_bad_jsonl_and_missing_target(tmp_path, capsys):
    path = tmp_path / "curve.jsonl"
    path.write_text('{"step": 1, "lr": 0.001, "loss": 3.0}\nnot json\n{"step": 2, "lr": 0.001, "loss": 2.9}\n')
    out = tmp_path / "out"
    assert main(["curve", "--law", "power", "--fit", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{path}, line 2: not a JSON object" in err and "Fix:" in err and not out.exists()
    path.write_text('{"step": 1, "lr": 0.001, "loss": 3.0}\n{"step": 2, "lr": 0.001, "loss": 2.9}\n')
    assert main(["curve", "--law", "power", "--fit", str(path), "--target", "val_loss", "--out", str(out)]) == 2
    assert "val_loss" in capsys.readouterr().err and not out.exists()


def test_bad_scaling_input(tmp_path, capsys, toy_law):
    fit, targets = _scaling_files(tmp_path)
    out = tmp_path / "out"
    no_d = tmp_path / "no_d.csv"
    no_d.write_text("N,loss\n1e6,3.0\n")
    assert main(["scaling", "--law", "toy", "--fit", str(no_d), "--out", str(out)]) == 2
    assert "missing column(s) ['D']" in capsys.readouterr().err
    bad_row = tmp_path / "bad_row.csv"
    bad_row.write_text("N,D\n1e10,2e11\n-5,2e11\n")
    assert main(["scaling", "--law", "toy", "--fit", str(fit), "--predict", str(bad_row), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad_row) in err and "row 3" in err
    assert not out.exists()


def test_module_entry_point_exit_code(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("step,lr\n0,x\n")
    proc = subprocess.run([sys.executable, "-m", "harness.fit", "curve", "--law", "power", "--fit", str(bad),
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "bad.csv, row 2" in proc.stderr
    assert not (tmp_path / "out").exists()


# -- the registry and the CLI's start-up ---------------------------------------------------------


@pytest.mark.parametrize("table", ["CURVE_LAWS", "SCALING_LAWS"])
def test_every_registry_name_is_the_laws_own_name(table):
    """CLI `--law NAME` == law.name (reported in params.json): one spelling, hyphens only."""
    for name, factory in getattr(registry, table).items():
        law = factory()
        assert isinstance(law, Law)
        assert law.name == name, f"registry name {name!r} builds a law named {law.name!r}"
        assert "_" not in name, name


@pytest.mark.parametrize("argv", [["--help"], ["curve", "--help"], ["scaling", "--help"], ["isoflop", "--help"]])
def test_help_imports_no_heavy_module(argv):
    """`--help` stays fast because it loads neither numpy, pandas, scipy nor matplotlib (their
    import alone took ~1.5 s); the timing itself is in the report of issue 9, not a test."""
    code = ("import sys\nfrom harness.fit.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "heavy = {m.split('.')[0] for m in sys.modules} & {'numpy', 'pandas', 'scipy', 'matplotlib'}\n"
            "print('HEAVY', sorted(heavy))")
    proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: python -m harness.fit" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY []"
