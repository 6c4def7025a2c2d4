"""The prediction band at a peak LR the fit curves do not have (harness/fit/curve_predict.py `PeakLRBand`;
issue 12, docs/CURVE_LAWS.md "Prediction bands").

Synthetic curves from a known law (`lr-noise-clock` with p = 1/2) at ONE peak LR, with 0.3 % noise: the
fit cannot pin p down, so its prediction at 1/3x and 3x the peak LR misses by more than the plain band
(calibrated on refits at the fitted peak LR); the band widened by refits over p covers the truth. At a
fitted peak LR nothing is refitted and the band is the plain one. Everything is deterministic.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from harness.fit.cli import main
from harness.fit.curve_predict import (PEAK_LR_TOLERANCE, WEAK_FIT_TOLERANCE, at_fitted_peak_lr, declared_distance_width,
                                       lr_distance, lr_from_schedule, peak_lr_band, pinned_law, weak_parameters)
from harness.fit.io import Curve
from harness.fit.laws.convex_bound import ConvexNoiseSqrtLaw
from harness.fit.laws.lr_noise import LRNoiseClockLaw, LRNoiseLaw, LRNoiseSqrtLaw

TRUTH = np.array([3.0, 0.7, 0.4, 30.0, 0.03, 0.5])  # L0, A, alpha, sigma, tau, p
FIT_LR = 6e-3
NOISE = 0.003  # relative sd of the observed loss, as on our proxies
SEED = 3  # the noise draw; with it the free fit puts p at 0.37 (truth 0.5)
SCHEDULES = {
    "constant": {"name": "constant", "warmup_steps": 20},
    "cosine": {"name": "cosine", "warmup_steps": 20, "min_lr_ratio": 0.0},
    "wsd": {"name": "wsd", "warmup_steps": 20, "decay_fraction": 0.2, "cooldown": "linear", "min_lr_ratio": 0.0},
}


def _curves(peak: float, *, noisy: bool, steps: int = 600) -> list[Curve]:
    """The three schedules at `peak`: loss every 10 steps from step 50, the law's truth times (1 + noise)."""
    law = LRNoiseClockLaw()
    rng = np.random.default_rng(SEED)
    out = []
    for name, cfg in SCHEDULES.items():
        lr = lr_from_schedule(cfg, steps, peak)
        step = np.arange(1, steps + 1)
        full = Curve(name=name, path=name, step=step, lr=lr, loss=np.zeros(steps), max_points=steps)
        truth = np.asarray(law.predict(TRUTH, law.prepare([full])))
        rows = np.arange(49, steps, 10)
        loss = np.full(steps, np.nan)
        loss[rows] = truth[rows] * (1 + NOISE * rng.standard_normal(rows.size)) if noisy else truth[rows]
        out.append(Curve(name=f"{name}_{peak:g}", path=f"{name}_{peak:g}.csv", step=step, lr=lr, loss=loss))
    return out


def _coverage(band, curves: list[Curve]) -> tuple[float, float]:
    """(plain band, widened band) coverage of the curves' losses."""
    plain, wide, n = 0, 0, 0
    for c in curves:
        y = c.loss[c.eval_index()]
        pred, lo, hi = band.limits(c)
        plain += int(np.sum(np.abs(pred - y) <= band.half_width * pred))
        wide += int(np.sum((y >= lo) & (y <= hi)))
        n += y.size
    return plain / n, wide / n


@pytest.fixture(scope="module")
def band():
    return peak_lr_band("lr-noise-clock", _curves(FIT_LR, noisy=True), 0.9)


def test_widened_band_covers_the_truth_at_new_peak_lrs_where_the_plain_band_does_not(band):
    assert abs(band.theta[5] - TRUTH[5]) > 0.1  # the premise: one peak LR does not pin p down
    for peak in (FIT_LR / 3, 3 * FIT_LR):
        truth = _curves(peak, noisy=False)
        assert all(band.widens(c) for c in truth)
        plain, wide = _coverage(band, truth)
        assert plain < 0.75, (peak, plain)
        assert wide == 1.0, (peak, wide)
    # the envelope holds the main fit and the pinned refits within the tolerance of the best objective
    kept = band.kept()
    assert {f.values["p"] for f in kept} >= {0.5} and len(kept) < len(band.pinned)
    best = min([band.objective] + [f.objective for f in band.pinned])
    assert all(f.objective <= best * (1 + WEAK_FIT_TOLERANCE) for f in kept)
    dropped = [f for f in band.pinned if all(f is not k for k in kept)]
    assert all(f.objective > best * (1 + WEAK_FIT_TOLERANCE) for f in dropped)


def test_no_widening_and_no_refits_at_a_shared_peak_lr():
    fit_set = _curves(FIT_LR, noisy=True)
    band = peak_lr_band("lr-noise-clock", fit_set, 0.9)
    near = _curves(FIT_LR * 1.05, noisy=False)  # within PEAK_LR_TOLERANCE: the same peak LR
    assert PEAK_LR_TOLERANCE > 1.05
    for c in fit_set + near:
        assert not band.widens(c)
        pred, lo, hi = band.limits(c)
        np.testing.assert_array_equal(lo, pred * (1 - band.half_width))
        np.testing.assert_array_equal(hi, pred * (1 + band.half_width))
    assert band.pinned is None  # nothing asked for the refits, none were run
    assert band.to_json()["widening"].startswith("none needed")


def test_deterministic(band):
    again = peak_lr_band("lr-noise-clock", _curves(FIT_LR, noisy=True), 0.9)
    target = _curves(3 * FIT_LR, noisy=False)[1]
    for a, b in zip(band.limits(target), again.limits(target)):
        np.testing.assert_array_equal(a, b)
    assert [f.objective for f in band.pinned] == [f.objective for f in again.pinned]


def test_declarations_and_pinning():
    assert weak_parameters(LRNoiseClockLaw()) == {"p": (0.0, 0.25, 0.5, 0.75, 1.0)}
    assert weak_parameters(LRNoiseSqrtLaw()) == {"p": (0.0, 0.25, 0.5, 0.75, 1.0)}  # fixed p, varied for the band
    assert weak_parameters(LRNoiseLaw()) == {}  # declares nothing: its band is never widened
    law = pinned_law(LRNoiseClockLaw(), {"p": 0.25})
    assert (law.params[5].lower, law.params[5].upper) == (0.25, 0.25)
    assert LRNoiseClockLaw().params[5].upper == 1.0  # the class is untouched

    class Bad(LRNoiseClockLaw):
        weak_at_one_peak_lr = {"q": (0.5,)}

    with pytest.raises(ValueError, match="names 'q', which is neither a parameter"):
        weak_parameters(Bad())

    class OutOfRange(LRNoiseClockLaw):
        weak_at_one_peak_lr = {"p": (0.5, 1.5)}

    with pytest.raises(ValueError, match=r"inside the parameter's bounds \[0.0, 1.0\]"):
        weak_parameters(OutOfRange())
    assert at_fitted_peak_lr(_curves(FIT_LR, noisy=False)[0], [])  # nothing fitted: nothing to widen against


def test_a_constant_of_the_formula_can_be_the_weak_parameter():
    """convex-noise-sqrt's clock exponent is a constant (CLOCK_P = 1/2), not a fitted parameter: pinning it
    changes the prepared clock of the copy only, and the band refits on that data."""
    law = ConvexNoiseSqrtLaw()
    assert weak_parameters(law) == {"CLOCK_P": (0.0, 0.25, 0.5, 0.75, 1.0)}
    curve = _curves(FIT_LR, noisy=False)[1]
    one = pinned_law(law, {"CLOCK_P": 1.0})
    assert ConvexNoiseSqrtLaw.CLOCK_P == 0.5 and law.CLOCK_P == 0.5
    np.testing.assert_allclose(one.prepare([curve])["Sq"], np.cumsum(curve.lr)[curve.eval_index()], rtol=1e-12)
    steps = pinned_law(law, {"CLOCK_P": 0.0}).prepare([curve])["Sq"]  # p = 0 counts the steps with a positive LR
    assert curve.lr[-1] == 0.0  # the cosine ends at 0: that step is not counted
    np.testing.assert_allclose(steps, ConvexNoiseSqrtLaw.LR_REF * np.cumsum(curve.lr > 0)[curve.eval_index()],
                               rtol=1e-12)
    band = peak_lr_band("convex-noise-sqrt", _curves(FIT_LR, noisy=True), 0.9)
    target = _curves(3 * FIT_LR, noisy=False)[2]
    pred, lo, hi = band.limits(target)
    assert [f.values["CLOCK_P"] for f in band.pinned] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert np.all(lo <= pred * (1 - band.half_width)) and np.all(hi >= pred * (1 + band.half_width))
    assert np.mean(hi - lo) > 1.05 * np.mean(2 * band.half_width * pred)  # the kept refits do widen it


def test_cli_band_widened_only_for_new_peak_lr_and_recorded(tmp_path, capsys):
    paths = []
    for c in _curves(FIT_LR, noisy=True):
        p = tmp_path / f"{c.name}.csv"
        p.write_text(pd.DataFrame({"step": c.step, "lr": c.lr, "loss": c.loss}).to_csv(index=False))
        paths.append(str(p))
    far = tmp_path / "wsd_far.yaml"
    far.write_text(f"name: wsd\nsteps: 600\npeak_lr: {3 * FIT_LR}\nwarmup_steps: 20\ndecay_fraction: 0.2\n")
    same = tmp_path / "cos_same.yaml"
    same.write_text(f"name: cosine\nsteps: 900\npeak_lr: {FIT_LR}\nwarmup_steps: 20\n")
    out = tmp_path / "out"
    args = ["curve", "--law", "lr-noise-clock", "--fit", *paths, "--predict-schedule", str(far),
            "--predict-schedule", str(same), "--band", "0.9", "--out", str(out)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "band widened for 1 prediction(s)" in captured.out
    params = json.loads((out / "params.json").read_text())
    band = params["band"]
    assert band["widened"] == ["wsd_far"] and band["level"] == 0.9
    assert [f["values"]["p"] for f in band["pinned_fits"]] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert any(f["kept"] for f in band["pinned_fits"]) and not all(f["kept"] for f in band["pinned_fits"])
    notice = [w["message"] for w in params["warnings"] if w["kind"] == "peak_lr_extrapolation"]
    assert len(notice) == 1 and "wsd_far" in notice[0] and "widened" in notice[0]
    q = band["half_width"]
    plain = pd.read_csv(out / "pred_cos_same.csv")
    np.testing.assert_allclose(plain["loss_band_lo"], plain["loss_pred"] * (1 - q), rtol=1e-12)
    wide = pd.read_csv(out / "pred_wsd_far.csv")
    assert (wide["loss_band_lo"] <= wide["loss_pred"] * (1 - q) * (1 + 1e-12)).all()
    assert (wide["loss_band_hi"] >= wide["loss_pred"] * (1 + q) * (1 - 1e-12)).all()
    assert ((wide["loss_band_hi"] - wide["loss_band_lo"]) > 2 * q * wide["loss_pred"] * 1.05).mean() > 0.5
    # the same command again writes the same band
    assert main(args[:-1] + [str(tmp_path / "again")]) == 0
    pd.testing.assert_frame_equal(wide, pd.read_csv(tmp_path / "again" / "pred_wsd_far.csv"))


def test_band_grows_with_the_log_lr_distance_by_the_laws_kappa(band):
    from dataclasses import replace

    kappa = 0.02
    wide = replace(band, distance_width=kappa)
    for peak in (FIT_LR / 3, FIT_LR / 2, 2 * FIT_LR, 3 * FIT_LR):
        c = _curves(peak, noisy=False)[1]
        assert lr_distance(c, [FIT_LR]) == pytest.approx(abs(np.log(peak / FIT_LR)))
        assert wide.half_width_at(c) == pytest.approx(band.half_width + kappa * abs(np.log(peak / FIT_LR)))
        preds = band.predictions(c)
        pred, lo, hi = wide.limits(c)
        np.testing.assert_allclose(lo, preds.min(axis=0) * (1 - wide.half_width_at(c)))
        np.testing.assert_allclose(hi, preds.max(axis=0) * (1 + wide.half_width_at(c)))
        assert np.all(lo < band.limits(c)[1]) and np.all(hi > band.limits(c)[2])
    at_fit = _curves(FIT_LR, noisy=False)[0]
    assert wide.half_width_at(at_fit) == band.half_width  # no distance term at a fitted peak LR
    # The nearest fitted peak LR counts, and a law declares its kappa (checked).
    assert lr_distance(at_fit, [FIT_LR / 4, FIT_LR * 2]) == pytest.approx(np.log(2))

    class Negative(LRNoiseClockLaw):
        peak_lr_distance_width = -0.1

    with pytest.raises(ValueError, match="peak_lr_distance_width must be a finite number >= 0"):
        declared_distance_width(Negative())
    assert declared_distance_width(LRNoiseLaw()) == 0.0  # declares none


def test_kappa_calibration_script_needs_and_quantile(capsys, tmp_path):
    """scripts/calibrate_band_kappa.py: the kappa a point needs, the pooled quantile, leave-one-set-out."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import calibrate_band_kappa as cal

    y = np.array([1.0, 0.90, 1.12, 1.0])
    lo, hi = np.full(4, 0.95), np.full(4, 1.05)
    need = cal.needed_kappa(y, lo, hi, distance=np.log(2))
    np.testing.assert_allclose(need, [0.0, (0.95 - 0.90) / 0.95 / np.log(2), (1.12 - 1.05) / 1.05 / np.log(2), 0.0])
    # With that kappa the point sits exactly on the widened edge.
    assert 0.95 * (1 - need[1] * np.log(2)) == pytest.approx(0.90)
    with pytest.raises(ValueError, match="distance must be > 0"):
        cal.needed_kappa(y, lo, hi, distance=0.0)
    sets = {"a": cal.SetPoints([0.0] * 8 + [0.01, 0.05], [(0.02, 0.7)] * 10),
            "b": cal.SetPoints([0.0] * 9 + [0.2], [(0.03, 1.1)] * 10)}
    kappa = cal.report("law", sets, 0.9)
    assert kappa == pytest.approx(np.quantile([0.0] * 17 + [0.01, 0.05, 0.2], 0.9))
    out = capsys.readouterr().out
    assert "covered without kappa 85.0 %" in out and "leave out a" in out and "leave out b" in out
    with pytest.raises(SystemExit):
        cal.main(["--law", "convex-noise-eff", "--sets", str(tmp_path)])
    assert "no proxy set or curve_prediction experiment there" in capsys.readouterr().err
