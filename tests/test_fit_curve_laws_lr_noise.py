"""The LR-noise curve laws, schedule prediction (harness/fit/curve_predict.py), curve-file step
offsets, the default curve law on the CLI and `--predict-schedule`."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.fit import registry
from harness.fit.__main__ import main
from harness.fit.curve_predict import (
    calibrate_band, fit_curves, lr_from_schedule, predict_curve, read_schedule_spec, schedule_curve,
)
from harness.fit.fitter import _fd_jacobian, fit_law
from harness.fit.io import Curve, InputError, curve_to_csv, read_curve_csv
from harness.fit.laws.lr_noise import LRNoiseClockLaw, LRNoiseLaw
from harness.schedules import SCHEDULES, build_schedule


def _curve(name: str, lr: np.ndarray, loss: np.ndarray | None = None, every: int = 10) -> Curve:
    steps = np.arange(1, lr.size + 1)
    obs = np.full(lr.size, np.nan)
    if loss is not None:
        obs[every - 1::every] = loss[every - 1::every]
    return Curve(name=name, path=name, step=steps, lr=lr, loss=obs)


def _schedules(peak: float, steps: int = 1000) -> dict[str, np.ndarray]:
    return {name: lr_from_schedule(cfg, steps, peak) for name, cfg in {
        "constant": {"name": "constant", "warmup_steps": 50},
        "cosine": {"name": "cosine", "warmup_steps": 50, "min_lr_ratio": 0.0},
        "wsd": {"name": "wsd", "warmup_steps": 50, "decay_fraction": 0.2, "cooldown": "linear", "min_lr_ratio": 0.0},
    }.items()}


TRUTH = np.array([2.0, 1.5, 0.4, 60.0, 0.05])  # L0, A, alpha, sigma, tau


def _synthetic(peak: float, law: LRNoiseLaw = LRNoiseLaw()) -> list[Curve]:
    out = []
    for name, lr in _schedules(peak).items():
        full = _curve(name, lr)
        full.max_points = lr.size
        loss = np.asarray(law.predict(TRUTH, law.prepare([full])))
        out.append(_curve(f"{name}_{peak:g}", lr, np.concatenate([loss, []])))
    return out


def test_lr_from_schedule_is_the_trainers_schedule():
    cfg = SCHEDULES.create("wsd", warmup_steps=10, decay_fraction=0.3, cooldown="sqrt", min_lr_ratio=0.1)
    lr = lr_from_schedule(cfg, 200, 3e-3)
    run = build_schedule(cfg, total_steps=200, peak_lr=3e-3)
    assert lr.shape == (200,)
    assert lr[0] == pytest.approx(3e-3 / 10) and lr[-1] == pytest.approx(3e-4)
    np.testing.assert_allclose(lr, [run.lr(t) for t in range(1, 201)])
    # A mapping works too and names the bad field.
    with pytest.raises(Exception, match="cooldown"):
        lr_from_schedule({"name": "wsd", "cooldown": "nope"}, 100, 1e-3)


def test_noise_floor_tracks_the_lr_and_jacobian_is_exact():
    law = LRNoiseLaw()
    lr = np.concatenate([np.full(3000, 2e-3), np.full(3000, 1e-3)])
    curve = _curve("step", lr)
    curve.max_points = 6000
    data = law.prepare([curve])
    noise, _ = law._noise_all(0.05, data, grad=False)
    # At a constant LR the noise settles at the LR (the discrete geometric sum: lr^2 / tau / (1 -
    # exp(-lr / tau)) = lr (1 + lr / 2 tau + ...)); after the drop it relaxes to the new LR's level.
    level = lambda lr: lr**2 / 0.05 / -np.expm1(-lr / 0.05)  # noqa: E731
    assert noise[2999] == pytest.approx(level(2e-3), rel=1e-9) and noise[-1] == pytest.approx(level(1e-3), rel=1e-9)
    assert level(2e-3) == pytest.approx(2e-3, rel=0.03)
    theta = np.array([2.0, 1.5, 0.4, 60.0, 0.05])
    pred, jac = law.jacobian(theta, data)
    fd_pred, fd_jac = _fd_jacobian(law, theta, data)
    np.testing.assert_allclose(pred, fd_pred, rtol=1e-12)
    np.testing.assert_allclose(jac, fd_jac, rtol=1e-4, atol=1e-8)
    clock = LRNoiseClockLaw()
    theta_c = np.append(theta, 0.8)
    data_c = clock.prepare([curve])
    np.testing.assert_allclose(clock.jacobian(theta_c, data_c)[1], _fd_jacobian(clock, theta_c, data_c)[1],
                               rtol=1e-4, atol=1e-8)


def test_lr_noise_recovers_its_parameters_and_transfers_to_other_peak_lrs():
    law = LRNoiseLaw()
    fit_set = _synthetic(2e-3)
    fit = fit_law(law, law.prepare(fit_set), np.concatenate([c.loss[c.eval_index()] for c in fit_set]))
    assert fit.converged
    np.testing.assert_allclose(fit.theta, TRUTH, rtol=2e-3)
    for c in _synthetic(6e-3):  # 3x the peak LR: exact law, so exact transfer
        pred = predict_curve(law, fit, c)
        np.testing.assert_allclose(pred.loss[np.isfinite(c.loss[c.eval_index()])],
                                   c.loss[c.eval_index()][np.isfinite(c.loss[c.eval_index()])], rtol=1e-4)


def test_calibrated_band_is_positive_and_predict_curve_applies_it():
    fit_set = _synthetic(2e-3)
    band = calibrate_band("lr-noise", fit_set, 0.9)
    assert 0 <= band < 0.01  # exact synthetic law: refits on parts of the data still predict well
    law, fit = fit_curves("lr-noise", fit_set)
    pred = predict_curve(law, fit, _schedules(4e-3)["wsd"], band=0.01, max_points=50)
    assert pred.step.size == 50 and pred.step[-1] == 1000
    np.testing.assert_allclose(pred.hi / pred.loss, 1.01) and np.testing.assert_allclose(pred.lo / pred.loss, 0.99)


def test_curve_file_starting_late_is_refused(tmp_path):
    path = tmp_path / "late.csv"
    path.write_text("step,lr,loss\n500,0.001,3.0\n501,0.001,2.9\n")
    with pytest.raises(InputError, match=r"late.csv, row 2: the curve starts at step 500.*steps 1..499"):
        read_curve_csv(path)
    # From step 1 (loss missing early) it is read, with the LR sum over every step.
    rows = "\n".join(f"{s},0.001,{'' if s < 500 else 3.0 - s * 1e-4}" for s in range(1, 502))
    path.write_text("step,lr,loss\n" + rows + "\n")
    curve = read_curve_csv(path)
    assert curve.step[0] == 1 and curve.n_observed == 2
    data = LRNoiseLaw().prepare([curve])
    assert data["S1"][0] == pytest.approx(0.5)  # the first observed row is step 500: 500 x 1e-3


def test_mpl_recipe_is_not_reported_converged():
    law = registry.CURVE_LAWS["mpl-recipe"]()
    fit_set = _synthetic(2e-3)
    fit = fit_law(law, law.prepare(fit_set), np.concatenate([c.loss[c.eval_index()] for c in fit_set]))
    assert fit.converged is False


def test_cli_default_law_and_predict_schedule(tmp_path, capsys):
    paths = []
    for c in _synthetic(2e-3):
        p = tmp_path / f"{c.name}.csv"
        p.write_text(curve_to_csv(c))
        paths.append(str(p))
    spec = tmp_path / "wsd_sqrt.yaml"
    spec.write_text("name: wsd\nsteps: 1200\npeak_lr: 4.0e-3\nwarmup_steps: 50\ncooldown: sqrt\nmin_lr_ratio: 0.0\n")
    spec_json = tmp_path / "cos.json"
    spec_json.write_text(json.dumps({"name": "cosine", "steps": 800, "lr": 1e-3, "warmup_steps": 20}))
    out = tmp_path / "out"
    assert main(["curve", "--fit", *paths, "--predict-schedule", str(spec), "--predict-schedule", str(spec_json),
                 "--out", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["law"] == registry.DEFAULT_CURVE_LAW
    pred = pd.read_csv(out / "pred_wsd_sqrt.csv")
    want = LRNoiseLaw().predict(TRUTH, LRNoiseLaw().prepare([schedule_curve(read_schedule_spec(spec))]))
    assert pred["step"].iloc[-1] == 1200 and pred["lr"].iloc[-1] == 0.0
    if registry.DEFAULT_CURVE_LAW.startswith("lr-noise"):  # exact law: the prediction is the truth
        np.testing.assert_allclose(pred["loss_pred"], want, rtol=1e-3)
    assert (out / "pred_cos.csv").is_file()
    # both targets are at peak LRs no fit curve has (4e-3, 1e-3 vs 2e-3): said on stderr and in the outputs
    notices = [w for w in params["warnings"] if w["kind"] == "peak_lr_extrapolation"]
    assert [("wsd_sqrt" in w["message"], "cos" in w["message"]) for w in notices] == [(True, False), (False, True)]
    assert "peak LR 0.004" in capsys.readouterr().err
    same = tmp_path / "same.yaml"
    same.write_text("name: cosine\nsteps: 900\npeak_lr: 2.0e-3\nwarmup_steps: 50\n")
    assert main(["curve", "--fit", *paths, "--predict-schedule", str(same), "--out", str(tmp_path / "o2")]) == 0
    assert not json.loads((tmp_path / "o2" / "params.json").read_text())["warnings"]


@pytest.mark.parametrize("text,problem", [
    ("name: wsd\npeak_lr: 1e-3\n", "no 'steps'"),
    ("name: wsd\nsteps: 100\n", "no 'peak_lr'"),
    ("name: wsd\nsteps: 100\npeak_lr: 1e-3\ncooldown: nope\n", "cooldown"),
    ("steps: 100\npeak_lr: 1e-3\n", "name"),
])
def test_bad_schedule_file(tmp_path, capsys, text, problem):
    good = tmp_path / "good.csv"
    good.write_text(curve_to_csv(_synthetic(2e-3)[0]))
    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    out = tmp_path / "out"
    assert main(["curve", "--law", "power", "--fit", str(good), "--predict-schedule", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and problem in err and not out.exists()


def test_cli_band_columns_and_bad_level(tmp_path, capsys):
    paths = []
    for c in _synthetic(2e-3):
        p = tmp_path / f"{c.name}.csv"
        p.write_text(curve_to_csv(c))
        paths.append(str(p))
    out = tmp_path / "out"
    assert main(["curve", "--law", "lr-noise", "--fit", *paths, "--predict", paths[0], "--band", "1.5",
                 "--out", str(out)]) == 2
    assert "--band 1.5" in capsys.readouterr().err and not out.exists()
    assert main(["curve", "--law", "lr-noise", "--fit", *paths, "--predict", paths[0], "--band", "0.9",
                 "--out", str(out)]) == 0
    table = pd.read_csv(out / f"pred_{_synthetic(2e-3)[0].name}.csv")
    band = table["loss_band_hi"] / table["loss_pred"] - 1
    assert np.allclose(band, band.iloc[0]) and 0 <= band.iloc[0] < 0.01
    np.testing.assert_allclose(table["loss_band_lo"], table["loss_pred"] * (1 - band.iloc[0]))
