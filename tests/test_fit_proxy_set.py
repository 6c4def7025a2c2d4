"""scripts/make_curve_validation_set.py: the proxy shape and seed options that made the third, fresh
validation set (docs/CURVE_LAWS.md "Clock-averaged peak-LR transfer")."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_curve_validation_set as proxy_set  # noqa: E402


def test_default_shape_is_the_first_set_and_options_change_model_and_seed():
    default = proxy_set.all_runs()[0].overrides(Path("/tmp/x"))
    assert "model.d_model=64" in default and "model.n_layers=2" in default and "train.seed=0" in default
    fresh = proxy_set.all_runs(proxy_set.ProxyShape(d_model=96, n_layers=3, seed=1))
    assert len(fresh) == 40 and {r.name for r in fresh} == {r.name for r in proxy_set.all_runs()}
    args = fresh[0].overrides(Path("/tmp/x"))
    assert {"model.d_model=96", "model.n_layers=3", "train.seed=1"} <= set(args)
    # Everything but the shape and seed is the same run (schedule, horizon, LR, training settings).
    assert [a for a in args if not a.startswith(("model.", "train.seed"))] == \
        [a for a in default if not a.startswith(("model.", "train.seed"))]


@pytest.mark.parametrize("kwargs, match", [
    ({"d_model": 90, "n_heads": 4}, "even head"),      # 22.5-wide heads
    ({"d_model": 96, "n_heads": 4, "n_kv_heads": 3}, "--n-kv-heads 3 must divide"),
    ({"seed": -1}, "--seed must be >= 0"),
])
def test_bad_shapes_are_refused_naming_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        proxy_set.ProxyShape(**kwargs)


def test_peak_lrs_orders_and_filters_the_runs(capsys, tmp_path):
    assert proxy_set.main(["--out", str(tmp_path), "--dry-run", "--horizons", "1200",
                           "--peak-lrs", "0.006", "0.001"]) == 0
    names = [line.split("name=")[1].split()[0] for line in capsys.readouterr().out.splitlines() if "name=" in line]
    assert names[:5] == [f"1200_{s}_0.006" for s in proxy_set.SCHEDULES] and len(names) == 10
    assert all(n.endswith("_0.001") for n in names[5:])
    with pytest.raises(SystemExit):
        proxy_set.main(["--out", str(tmp_path), "--dry-run", "--peak-lrs", "0.003"])
