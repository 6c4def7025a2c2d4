"""`python -m harness.fit curve` without --law: predictions at a peak LR no fit curve has are made by
DEFAULT_PEAK_LR_LAW, fitted on the same curves; the rest by DEFAULT_CURVE_LAW (harness/fit/law_fit.py).

Data: our own proxy curves (tests/data/curve_proxy_T300.csv, see test_lr_noise_sqrt.py): fit constant +
cosine + WSD at 6e-3, predict a 3e-3 curve (new peak LR) and a 6e-3 curve (fitted peak LR; one of the fit curves)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.fit import registry
from harness.fit.cli import main
from harness.fit.io import curve_to_csv

sys.path.insert(0, str(Path(__file__).parent))
from synthetic_curves import write_csvs  # noqa: E402
from test_lr_noise_sqrt import FIT_LR, FIT_SCHEDULES, WARMUP, _proxy_curves  # noqa: E402

NEW_LR = 3e-3


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, list[str]]:
    root = tmp_path_factory.mktemp("peak_lr_law")
    curves = _proxy_curves()

    def write(schedule: str, peak: float) -> str:
        path = root / f"{schedule}_{peak:g}.csv"
        path.write_text(curve_to_csv(curves[(schedule, peak)]))
        return str(path)

    return {"fit": [write(s, FIT_LR) for s in FIT_SCHEDULES],
            "predict": [write("cosine_10", NEW_LR), write("wsd_lin20", FIT_LR)]}


def _run(files, out: Path, *extra: str) -> dict:
    assert main(["curve", "--fit", *files["fit"], "--predict", *files["predict"], "--out", str(out),
                 "--target", "loss", "--min-step", str(WARMUP + 1), *extra]) == 0
    return json.loads((out / "params.json").read_text())


def _pred(out: Path, name: str) -> np.ndarray:
    return pd.read_csv(out / f"pred_{name}.csv")["loss_pred"].to_numpy()


def test_default_routes_new_peak_lr_predictions(files, tmp_path, capsys):
    params = _run(files, tmp_path / "default")
    new, same = f"cosine_10_{NEW_LR:g}", f"wsd_lin20_{FIT_LR:g}"
    assert params["law"] == registry.DEFAULT_CURVE_LAW
    routed = params["peak_lr_law"]
    assert routed["law"] == registry.DEFAULT_PEAK_LR_LAW and routed["predicted"] == [new]
    assert routed["converged"] and set(routed["params"]) >= {"L0", "A", "alpha", "sigma"}
    # Each prediction is exactly what its own law predicts when fitted alone on the same curves.
    alone_peak = _run(files, tmp_path / "peak", "--law", registry.DEFAULT_PEAK_LR_LAW)
    alone_main = _run(files, tmp_path / "main", "--law", registry.DEFAULT_CURVE_LAW)
    assert "peak_lr_law" not in alone_peak and "peak_lr_law" not in alone_main  # an explicit --law predicts all
    np.testing.assert_allclose(_pred(tmp_path / "default", new), _pred(tmp_path / "peak", new), rtol=1e-9)
    np.testing.assert_allclose(_pred(tmp_path / "default", same), _pred(tmp_path / "main", same), rtol=1e-9)
    assert not np.allclose(_pred(tmp_path / "default", new), _pred(tmp_path / "main", new), rtol=1e-3)
    # The new-peak-LR warning names the law that made the prediction; metrics carry both curves.
    notices = [w["message"] for w in params["warnings"] if w["kind"] == "peak_lr_extrapolation"]
    assert len(notices) == 1 and new in notices[0] and registry.DEFAULT_PEAK_LR_LAW in notices[0]
    metrics = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert set(metrics["predict"]) == {new, same}
    assert f"are made by {registry.DEFAULT_PEAK_LR_LAW!r}" in capsys.readouterr().out


def test_peak_lr_law_none_and_explicit(files, tmp_path):
    off = _run(files, tmp_path / "off", "--peak-lr-law", "none")
    assert "peak_lr_law" not in off
    main_only = _run(files, tmp_path / "main", "--law", registry.DEFAULT_CURVE_LAW)
    for name in (f"cosine_10_{NEW_LR:g}", f"wsd_lin20_{FIT_LR:g}"):
        np.testing.assert_allclose(_pred(tmp_path / "off", name), _pred(tmp_path / "main", name), rtol=1e-9)
    # An explicit --peak-lr-law with an explicit --law routes too, and records the band it used.
    both = _run(files, tmp_path / "both", "--law", "lr-noise-sqrt", "--peak-lr-law", "convex-noise-sqrt",
                "--band", "0.9")
    assert both["law"] == "lr-noise-sqrt" and both["peak_lr_law"]["law"] == "convex-noise-sqrt"
    assert both["peak_lr_law"]["band"]["widened"] == [f"cosine_10_{NEW_LR:g}"]
    table = pd.read_csv(tmp_path / "both" / f"pred_cosine_10_{NEW_LR:g}.csv")
    assert (table["loss_band_lo"] < table["loss_pred"]).all() and (table["loss_pred"] < table["loss_band_hi"]).all()


def test_rejected_peak_lr_fit_falls_back_to_the_default(tmp_path):
    """Curves made by the lr-noise law itself (test_fit_curve_laws_lr_noise's synthetic set): convex-noise-eff's
    noise amplitude ends on its bound there, so its fit is not used; the default law predicts everything and
    the outputs say why."""
    from test_fit_curve_laws_lr_noise import _synthetic

    paths = write_csvs(_synthetic(2e-3), tmp_path)
    target = tmp_path / "cos.yaml"
    target.write_text("name: cosine\nsteps: 800\npeak_lr: 4.0e-3\nwarmup_steps: 20\n")
    out = tmp_path / "out"
    assert main(["curve", "--fit", *paths, "--predict-schedule", str(target), "--out", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())
    assert "peak_lr_law" not in params
    rejected = [w for w in params["warnings"] if w["kind"] == "peak_lr_law_rejected"]
    assert len(rejected) == 1 and registry.DEFAULT_PEAK_LR_LAW in rejected[0]["message"]
    assert "sigma" in rejected[0]["message"] and registry.DEFAULT_CURVE_LAW in rejected[0]["message"]
    # the same refusal is an error when the law was asked for explicitly
    assert main(["curve", "--fit", *paths, "--predict-schedule", str(target), "--out", str(tmp_path / "o2"),
                 "--peak-lr-law", registry.DEFAULT_PEAK_LR_LAW]) == 3
    assert not (tmp_path / "o2").exists()
    # with --allow-unconverged the default keeps both fits and names the peak-LR law's problem as its own
    kept = tmp_path / "kept"
    assert main(["curve", "--fit", *paths, "--predict-schedule", str(target), "--out", str(kept),
                 "--allow-unconverged"]) == 0
    params = json.loads((kept / "params.json").read_text())
    assert params["peak_lr_law"]["predicted"] == ["cos"]
    assert any(w["kind"] == "on_bound" and f"(--peak-lr-law {registry.DEFAULT_PEAK_LR_LAW})" in w["message"]
               for w in params["warnings"])


def test_band_of_a_routed_curve_is_the_peak_lr_laws_band_widened_with_the_lr_distance(files, tmp_path):
    _run(files, tmp_path / "both", "--band", "0.9")
    peak = _run(files, tmp_path / "peak", "--band", "0.9", "--law", registry.DEFAULT_PEAK_LR_LAW)
    name = f"cosine_10_{NEW_LR:g}"
    both, peak_only = (pd.read_csv(tmp_path / d / f"pred_{name}.csv") for d in ("both", "peak"))
    np.testing.assert_allclose(both["loss_band_lo"], peak_only["loss_band_lo"])
    np.testing.assert_allclose(both["loss_band_hi"], peak_only["loss_band_hi"])
    np.testing.assert_allclose(both["loss_pred"], peak_only["loss_pred"])
    # The envelope is widened by kappa * |ln(LR ratio)| on top of the calibrated half-width.
    kappa = peak["band"]["distance_width"]
    assert kappa == registry.CURVE_LAWS[registry.DEFAULT_PEAK_LR_LAW]().peak_lr_distance_width > 0
    half = peak["band"]["half_width"] + kappa * abs(np.log(NEW_LR / FIT_LR))
    assert (peak_only["loss_band_hi"] >= peak_only["loss_pred"] * (1 + half) - 1e-12).all()
    assert (peak_only["loss_band_lo"] <= peak_only["loss_pred"] * (1 - half) + 1e-12).all()


def test_check_script_refuses_a_folder_without_a_proxy_set(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import check_peak_lr_law

    with pytest.raises(SystemExit) as stop:
        check_peak_lr_law.main(["--sets", str(tmp_path)])
    assert stop.value.code == 2 and "no proxy set there" in capsys.readouterr().err


def test_bootstrap_interval_of_a_routed_curve_comes_from_the_peak_lr_law(files, tmp_path):
    params = _run(files, tmp_path / "boot", "--bootstrap", "3")
    assert params["peak_lr_law"]["bootstrap"]["n_boot"] == 3 and "bootstrap" in params
    table = pd.read_csv(tmp_path / "boot" / f"pred_cosine_10_{NEW_LR:g}.csv")
    assert (table["loss_pred_lo"] <= table["loss_pred_hi"]).all()
    assert table["loss_pred_hi"].max() > table["loss_pred_lo"].min()


def test_check_script_seed_mean_set_averages_seeds_and_refuses_other_runs(tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import check_peak_lr_law

    def write(root: Path, run: str, losses: list[float], lr: float = 1e-3) -> None:
        (root / run).mkdir(parents=True)
        rows = [{"step": i + 1, "lr": lr, "loss": x, **({"val_loss": x + 0.1} if i % 2 else {})}
                for i, x in enumerate(losses)]
        (root / run / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    a, b = tmp_path / "a", tmp_path / "b"
    write(a, "600_cosine_0.002", [4.0, 3.0, 2.0, 1.5])
    write(b, "600_cosine_0.002", [4.2, 3.2, 2.2, 1.7])
    out = check_peak_lr_law.seed_mean_set([a, b], tmp_path / "mean")
    rows = [json.loads(line) for line in (out / "600_cosine_0.002" / "curve.jsonl").read_text().splitlines()]
    assert [r["loss"] for r in rows] == pytest.approx([4.1, 3.1, 2.1, 1.6])
    assert [r.get("val_loss") for r in rows] == [None, pytest.approx(3.2), None, pytest.approx(1.7)]
    write(tmp_path / "c", "600_cosine_0.002", [4.2, 3.2, 2.2, 1.7], lr=2e-3)
    with pytest.raises(SystemExit, match="other steps or LRs"):
        check_peak_lr_law.seed_mean_set([a, tmp_path / "c"], tmp_path / "mean2")
