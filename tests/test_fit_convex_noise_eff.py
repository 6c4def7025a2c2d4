"""The effective-LR law `convex-noise-eff` (harness/fit/laws/eff_lr.py; docs/CURVE_LAWS.md "Effective-LR law").

Checks: lr_eff reduces to the LR when S0 is huge (and the law to `convex-noise-sqrt`); lr_eff of a
constant LR in closed form; a bad S0 is refused naming it; the mechanism (at a constant LR, late in
training, a 3x peak LR carries ~sqrt(3)x the noise, not 3x); exact jacobians (S0 held and S0 free);
synthetic recovery of every parameter incl. S0 (S0 free, fit curves at two peak LRs, which identify
it), and transfer to other peak LRs with S0 held; S0 is declared weak for `--band` and the pinned
refits run. Two peak LRs (docs/CURVE_LAWS.md "Two peak LRs"): `convex-noise-eff-fit` is registered and its
interpolated V matches the exact one; the CLI's notice suggests the sibling law (held S0 at several peak LRs,
fitted S0 at one; `--peak-lr-law` for the routed peak-LR law) and params.json / metrics.json say which
parameters were held; the `eff-s0-by-lr2` rule of scripts/validate_curve_laws.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.fit import registry
from harness.fit.curve_predict import pinned_fits, weak_parameters
from harness.fit.fitter import _fd_jacobian, fit_law, metrics
from harness.fit.io import Curve
from harness.fit.laws.convex_bound import ConvexNoiseSqrtLaw, bound_terms
from harness.fit.laws.eff_lr import ConvexNoiseEffFitLaw, ConvexNoiseEffLaw, effective_lr
from synthetic_curves import assert_recovers_and_transfers, synthetic_curves

TRUTH = np.array([2.0, 1.0, 0.4, 40.0, 0.5])  # L0, A, alpha, sigma, S0


def _observed(curves):
    return np.concatenate([c.loss[c.eval_index()] for c in curves])


def test_effective_lr_is_the_lr_when_s0_is_huge_and_closed_form_at_a_constant_lr():
    lr = np.r_[np.linspace(1e-4, 2e-3, 40), np.full(500, 2e-3), np.linspace(2e-3, 0.0, 100)]
    np.testing.assert_allclose(effective_lr(lr, 1e12), lr, rtol=1e-8)
    const = np.full(300, 3e-3)
    s1 = 3e-3 * np.arange(1, 301)
    np.testing.assert_allclose(effective_lr(const, 0.2), 3e-3 * np.sqrt(0.2 / (0.2 + s1)), rtol=1e-12)
    # Always below the LR and decreasing at a constant LR (the norm only grows).
    assert np.all(effective_lr(const, 0.2) < const) and np.all(np.diff(effective_lr(const, 0.2)) < 0)


def test_area_power_grows_the_norm_faster_at_lrs_above_the_reference_and_the_law_uses_it():
    const = np.full(300, 3e-3)
    area = 1e-3 * np.cumsum((const / 1e-3) ** 1.3)  # (3x the reference)^1.3 per step, in units of LR_REF
    np.testing.assert_allclose(effective_lr(const, 0.2, 1.3, 1e-3), const * np.sqrt(0.2 / (0.2 + area)), rtol=1e-12)
    assert np.all(effective_lr(const, 0.2, 1.3) < effective_lr(const, 0.2))  # above LR_REF: a larger area
    below = np.full(300, 5e-4)
    assert np.all(effective_lr(below, 0.2, 1.3) > effective_lr(below, 0.2))  # below it: a smaller one
    np.testing.assert_array_equal(effective_lr(const, 0.2, 1.0), effective_lr(const, 0.2))
    # The registered law's noise is V of the effective schedule with its AREA_POWER (1.3) and S0.
    law = ConvexNoiseEffLaw()
    assert law.AREA_POWER == 1.3
    curves = synthetic_curves(ConvexNoiseSqrtLaw(), TRUTH[:4], 3e-3, steps=400, first=50)
    data = law.prepare(curves)
    expected = np.concatenate([bound_terms(effective_lr(c.lr[:int(c.eval_index()[-1]) + 1], 3.0, 1.3), c.eval_index())[1]
                               for c in curves])
    np.testing.assert_allclose(law.noise(3.0, data), expected, rtol=1e-12)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_bad_s0_is_refused_naming_it(bad):
    with pytest.raises(ValueError, match="S0 must be > 0"):
        effective_lr(np.full(10, 1e-3), bad)


def test_huge_s0_gives_convex_noise_sqrt():
    base = ConvexNoiseSqrtLaw()
    curves = synthetic_curves(base, TRUTH[:4], 2e-3, steps=400, first=50)
    law = ConvexNoiseEffLaw()
    pred = law.predict(np.r_[TRUTH[:4], 1e12], law.prepare(curves))
    np.testing.assert_allclose(pred, base.predict(TRUTH[:4], base.prepare(curves)), rtol=1e-8)


def test_a_higher_peak_lr_carries_less_than_proportionally_more_noise_late_in_training():
    """At a constant LR with S1 >> S0, lr_eff ~ sqrt(lr S0 / t): 3x the LR is ~sqrt(3)x the noise (V ~ lr_eff),
    where the plain bound (S0 -> infinity) says 3x. Early (S1 << S0) it is still ~3x."""
    steps, s0 = 4000, 0.5
    rows = np.array([4, steps - 1])  # S1 = 0.015 << S0 at 3e-3; then S1 = 12 >> S0
    v1 = bound_terms(effective_lr(np.full(steps, 1e-3), s0), rows)[1]
    v3 = bound_terms(effective_lr(np.full(steps, 3e-3), s0), rows)[1]
    early, late = v3 / v1
    assert early == pytest.approx(3.0, rel=0.05)
    assert 1.5 < late < 2.1  # 3 sqrt((S0 + 4) / (S0 + 12)) = 1.8 at the last step; V averages over earlier ones
    plain = bound_terms(np.full(steps, 3e-3), rows)[1] / bound_terms(np.full(steps, 1e-3), rows)[1]
    np.testing.assert_allclose(plain, 3.0, rtol=1e-9)


def test_registered_with_s0_held_and_declared_weak():
    law = registry.CURVE_LAWS["convex-noise-eff"]()
    assert isinstance(law, ConvexNoiseEffLaw) and law.name == "convex-noise-eff"
    s0 = law.params[law.param_names.index("S0")]
    assert s0.lower == s0.upper == ConvexNoiseEffLaw.S0_FIXED == 3.0
    assert weak_parameters(law) == {"S0": (0.3, 1.0, 3.0, 10.0)}
    assert registry.DEFAULT_CURVE_LAW == "lr-noise-clock"  # the lead decides the default


@pytest.mark.parametrize("law", [ConvexNoiseEffLaw(), ConvexNoiseEffFitLaw()], ids=["S0 held", "S0 free"])
def test_jacobian_matches_finite_differences(law):
    theta = TRUTH.copy()
    theta[4] = law.params[4].lower if law.params[4].lower == law.params[4].upper else TRUTH[4]
    data = law.prepare(synthetic_curves(law, theta, 2e-3, steps=300, first=50))
    pred, jac = law.jacobian(theta, data)
    fd_pred, fd_jac = _fd_jacobian(law, theta, data)
    np.testing.assert_allclose(pred, fd_pred, rtol=1e-12)
    free = slice(None) if law.params[4].lower < law.params[4].upper else slice(0, 4)
    np.testing.assert_allclose(jac[:, free], fd_jac[:, free], rtol=2e-4, atol=1e-7)
    if free == slice(0, 4):
        assert np.all(jac[:, 4] == 0)  # S0 held: the fitter never moves it


def test_recovers_every_parameter_incl_s0_from_curves_at_two_peak_lrs():
    law = ConvexNoiseEffFitLaw()
    fit_set = synthetic_curves(law, TRUTH, 2e-3, first=50) + synthetic_curves(law, TRUTH, 6e-3, first=50)
    fit = fit_law(law, law.prepare(fit_set), _observed(fit_set))
    assert fit.converged
    np.testing.assert_allclose(fit.theta, TRUTH, rtol=2e-2)
    for c in synthetic_curves(law, TRUTH, 1e-3, first=50):
        obs = c.loss[c.eval_index()]
        assert metrics(obs, np.asarray(law.predict(fit.theta, law.prepare([c]))))["prede"] < 1e-4, c.name


def test_s0_held_recovers_the_rest_and_transfers_to_other_peak_lrs():
    law = ConvexNoiseEffLaw()
    assert_recovers_and_transfers(law, np.r_[TRUTH[:4], law.S0_FIXED])


def test_pinned_refits_over_s0_run_and_the_true_s0_fits_best():
    """`--band` refits with S0 held at each grid value; on curves made at S0 = 1 that refit is the best."""
    law = ConvexNoiseEffLaw()
    truth = np.r_[TRUTH[:4], 1.0]
    fit_set = synthetic_curves(law, truth, 2e-3, steps=600, first=50)
    fits = pinned_fits(law, fit_set)
    assert [f.values["S0"] for f in fits] == [0.3, 1.0, 3.0, 10.0]
    assert all(f.theta[4] == f.values["S0"] for f in fits)
    best = min(fits, key=lambda f: f.objective)
    assert best.values["S0"] == 1.0


def test_a_zero_lr_tail_and_a_curve_with_no_observed_loss_predict_finite_values():
    law = ConvexNoiseEffLaw()
    lr = np.r_[np.linspace(1e-4, 2e-3, 20), np.full(100, 2e-3), np.zeros(30)]
    curve = Curve(name="z", path="z", step=np.arange(1, lr.size + 1), lr=lr, loss=np.full(lr.size, np.nan))
    pred = law.predict(np.r_[TRUTH[:4], 3.0], law.prepare([curve]))
    assert pred.shape == (lr.size,) and np.all(np.isfinite(pred))


# ---- Fit curves at two peak LRs: the CLI's notice and what params.json says (docs/CURVE_LAWS.md "Two peak LRs")


def _cli_fit(tmp_path, law_name: str, curves: list[Curve]) -> dict:
    import json

    from harness.fit.__main__ import main
    from harness.fit.io import curve_to_csv

    paths = []
    for c in curves:
        paths.append(tmp_path / f"{c.name}.csv")
        paths[-1].write_text(curve_to_csv(c))
    out = tmp_path / law_name
    assert main(["curve", "--law", law_name, "--fit", *map(str, paths), "--out", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["held_params"] == params["held_params"]
    return params


def _identification(params: dict) -> list[str]:
    return [w["message"] for w in params["warnings"] if w["kind"] == "peak_lr_identification"]


def _two_lr_fit_set(truth: np.ndarray) -> list[Curve]:
    law = ConvexNoiseEffFitLaw()
    base = synthetic_curves(law, truth, 2e-3, steps=400, first=50)
    return base + [c for c in synthetic_curves(law, truth, 4e-3, steps=400, first=50) if c.name.startswith("constant")]


def test_fitted_s0_sibling_is_registered_and_the_two_name_each_other():
    law = registry.CURVE_LAWS["convex-noise-eff-fit"]()
    assert isinstance(law, ConvexNoiseEffFitLaw) and law.name == "convex-noise-eff-fit"
    s0 = law.params[law.param_names.index("S0")]
    assert s0.lower < 3.0 < s0.upper
    held = ConvexNoiseEffLaw
    assert (held.law_at_several_peak_lrs, held.law_at_one_peak_lr) == ("convex-noise-eff-fit", None)
    assert (law.law_at_several_peak_lrs, law.law_at_one_peak_lr) == (None, "convex-noise-eff")


def test_spans_several_peak_lrs_uses_the_peak_lr_tolerance():
    from harness.fit.law_fit import PEAK_LR_TOLERANCE, spans_several_peak_lrs

    law = ConvexNoiseEffLaw()
    at = lambda peak: synthetic_curves(law, np.r_[TRUTH[:4], 3.0], peak, steps=100, first=50)[:1]  # noqa: E731
    assert not spans_several_peak_lrs(at(2e-3) + at(2e-3))
    assert not spans_several_peak_lrs(at(2e-3) + at(2e-3 * PEAK_LR_TOLERANCE * 0.99))
    assert spans_several_peak_lrs(at(2e-3) + at(2e-3 * PEAK_LR_TOLERANCE * 1.01))


def test_cli_held_s0_at_two_peak_lrs_says_s0_is_held_and_suggests_the_fitted_sibling(tmp_path):
    params = _cli_fit(tmp_path, "convex-noise-eff", _two_lr_fit_set(np.r_[TRUTH[:4], 3.0]))
    assert params["held_params"] == {"S0": 3.0} and params["params"]["S0"] == 3.0
    [notice] = _identification(params)
    assert "'--law convex-noise-eff-fit'" in notice and "0.002, 0.004" in notice and "S0 = 3" in notice


def test_cli_fitted_s0_at_two_peak_lrs_fits_s0_without_a_notice(tmp_path):
    truth = TRUTH.copy()  # S0 = 0.5: far from the held 3
    params = _cli_fit(tmp_path, "convex-noise-eff-fit", _two_lr_fit_set(truth))
    assert params["held_params"] == {}
    assert params["params"]["S0"] == pytest.approx(truth[4], rel=0.05)
    assert _identification(params) == []


def test_cli_fitted_s0_at_one_peak_lr_suggests_the_held_sibling(tmp_path):
    law = ConvexNoiseEffFitLaw()
    fit_set = synthetic_curves(law, TRUTH, 2e-3, steps=400, first=50)
    params = _cli_fit(tmp_path, "convex-noise-eff-fit", fit_set)
    assert params["held_params"] == {}
    [notice] = _identification(params)
    assert "one peak LR (0.002)" in notice and "'--law convex-noise-eff'" in notice and "S0" in notice
    # The held law at one peak LR: S0 held, no notice (its own situation).
    held = _cli_fit(tmp_path, "convex-noise-eff", fit_set)
    assert held["held_params"] == {"S0": 3.0} and _identification(held) == []


def test_fitted_s0_law_interpolates_v_to_1e4_and_is_exact_at_its_nodes():
    """The free-S0 law interpolates V between exact nodes in log S0 (its fit time: 160 s -> 2.5 s on the MPL
    400M train curves); the held law computes V exactly."""
    free, held = ConvexNoiseEffFitLaw(), ConvexNoiseEffLaw()
    curves = synthetic_curves(held, np.r_[TRUTH[:4], 3.0], 2e-3, steps=600, first=50)
    d_free, d_held = free.prepare(curves), held.prepare(curves)
    for s0 in np.geomspace(1.1e-3, 0.9e3, 23):
        np.testing.assert_allclose(free.noise(s0, d_free), held.noise(s0, d_held), rtol=1e-4)
    node = 10.0 ** (3 / free.NODES_PER_DECADE)
    np.testing.assert_allclose(free.noise(node, d_free), held.noise(node, d_held), rtol=1e-12)


def test_cli_routed_peak_lr_law_at_two_peak_lrs_names_the_peak_lr_option(tmp_path):
    """Without --law, predictions at a new peak LR are made by the peak-LR law (`convex-noise-eff`); fitted
    on curves at two peak LRs it gets the same notice, naming --peak-lr-law."""
    import json

    from harness.fit.__main__ import main
    from harness.fit.io import curve_to_csv

    truth = np.r_[TRUTH[:4], 3.0]
    fit_set = _two_lr_fit_set(truth)
    new_lr = synthetic_curves(ConvexNoiseEffLaw(), truth, 8e-3, steps=400, first=50)[0]
    paths = []
    for c in fit_set + [new_lr]:
        paths.append(tmp_path / f"{c.name}.csv")
        paths[-1].write_text(curve_to_csv(c))
    out = tmp_path / "routed"
    assert main(["curve", "--fit", *map(str, paths[:-1]), "--predict", str(paths[-1]), "--out", str(out),
                 "--allow-unconverged"]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["peak_lr_law"]["law"] == "convex-noise-eff"
    assert params["peak_lr_law"]["held_params"] == {"S0": 3.0}
    [notice] = _identification(params)
    assert "'--peak-lr-law convex-noise-eff-fit'" in notice


def test_eff_s0_by_lr2_rule_picks_the_true_s0_from_the_second_peak_lr_and_needs_one():
    """scripts/validate_curve_laws.py's `eff-s0-by-lr2`: S0 from the grid by the curve at the second peak LR."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from validate_curve_laws import SECOND_LR_S0_GRID, second_lr_s0

    truth = np.r_[TRUTH[:4], 1.0]
    assert 1.0 in SECOND_LR_S0_GRID
    fit_set = _two_lr_fit_set(truth)
    rule = second_lr_s0(fit_set)
    assert rule.s0 == 1.0 and min(rule.scores, key=rule.scores.get) == 1.0
    assert rule.scores[1.0] < 1e-4 < rule.scores[1e6]
    np.testing.assert_allclose(rule.theta, truth, rtol=5e-3)
    with pytest.raises(ValueError, match="second one"):
        second_lr_s0(fit_set[:3])
