"""Exact values for every schedule, computed by hand from the formulas in harness/schedules.py."""

import math
from pathlib import Path

import pytest

from harness.config import ConfigError, schedule_config, to_run_config
from harness.schedules import build_schedule


def sched(name, total=100, peak=1.0, **kw):
    return build_schedule(schedule_config(name, **kw), total_steps=total, peak_lr=peak)


def test_constant_with_warmup():
    s = sched("constant", warmup_steps=10, peak=3e-3)
    assert s.lr(1) == pytest.approx(3e-4, rel=1e-12)
    assert s.lr(5) == pytest.approx(1.5e-3, rel=1e-12)
    assert s.lr(10) == 3e-3
    assert s.lr(11) == 3e-3
    assert s.lr(100) == 3e-3


def test_cosine_exact_values():
    s = sched("cosine", total=110, warmup_steps=10, min_lr_ratio=0.1)
    assert s.multiplier(10) == pytest.approx(1.0)
    # p = 0.5 at step 60: 0.1 + 0.9 * 0.5 * (1 + cos(pi/2)) = 0.55
    assert s.multiplier(60) == pytest.approx(0.55, abs=1e-15)
    # p = 0.25 at step 35: 0.1 + 0.45 * (1 + cos(pi/4))
    assert s.multiplier(35) == pytest.approx(0.1 + 0.45 * (1 + math.sqrt(0.5)), abs=1e-15)
    assert s.multiplier(110) == pytest.approx(0.1, abs=1e-15)


def test_linear_exact_values():
    s = sched("linear", total=100, warmup_steps=0, min_lr_ratio=0.0)
    assert s.multiplier(1) == pytest.approx(0.99)
    assert s.multiplier(50) == pytest.approx(0.5)
    assert s.multiplier(100) == 0.0


@pytest.mark.parametrize(
    "shape, q_half_value",
    [
        ("linear", 1 - 0.9 * 0.5),
        ("sqrt", 1 - 0.9 * math.sqrt(0.5)),
        ("cosine", 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 2))),
        ("exp", 0.1**0.5),
    ],
)
def test_wsd_cooldown_shapes(shape, q_half_value):
    # 200 steps, 20% cooldown: stable through step 160, cooldown over 161..200.
    s = sched("wsd", total=200, warmup_steps=20, decay_fraction=0.2, cooldown=shape, min_lr_ratio=0.1)
    assert s.decay_start == 160
    assert s.multiplier(10) == pytest.approx(0.5)
    assert s.multiplier(100) == 1.0
    assert s.multiplier(160) == 1.0
    assert s.multiplier(180) == pytest.approx(q_half_value, abs=1e-15)
    assert s.multiplier(200) == pytest.approx(0.1, abs=1e-15)
    assert s.phase_boundaries() == [20, 160, 200]


def test_power_scheduler_values():
    # lr = min(peak, a * B * n^b), n = tokens after the step.
    cfg = schedule_config("power", warmup_steps=0, power_a=4.6, power_b=-0.51)
    s = build_schedule(cfg, total_steps=1000, peak_lr=0.05, batch_size=16, tokens_per_step=16 * 128)
    for step in (1, 10, 100, 1000):
        expected = min(0.05, 4.6 * 16 * (step * 2048) ** -0.51)
        assert s.lr(step) == pytest.approx(expected, rel=1e-12)
    # Early steps are capped at the peak, late ones follow the power law.
    assert s.lr(1) == 0.05
    assert s.lr(1000) < 0.05


def test_power_scheduler_warmup_and_decay():
    cfg = schedule_config("power", warmup_steps=100, power_a=4.6, power_b=-0.51,
                         power_decay_fraction=0.1, cooldown="exp", min_lr_ratio=0.1)
    s = build_schedule(cfg, total_steps=1000, peak_lr=1.0, batch_size=8, tokens_per_step=8 * 64)
    at_warmup_end = 4.6 * 8 * (100 * 512) ** -0.51
    assert s.lr(50) == pytest.approx(at_warmup_end * 0.5, rel=1e-12)
    plateau = 4.6 * 8 * (900 * 512) ** -0.51
    assert s.decay_start == 900
    assert s.lr(900) == pytest.approx(plateau, rel=1e-12)
    assert s.lr(950) == pytest.approx(plateau * 0.1**0.5, rel=1e-12)
    assert s.lr(1000) == pytest.approx(plateau * 0.1, rel=1e-12)


def test_schedule_is_a_pure_function_of_step():
    s = sched("cosine", total=50, warmup_steps=5)
    forward = [s.multiplier(t) for t in range(1, 51)]
    backward = [s.multiplier(t) for t in range(50, 0, -1)][::-1]
    assert forward == backward


def test_bad_schedule_config_names_field():
    with pytest.raises(ConfigError, match="schedule.cooldown"):
        sched("wsd", cooldown="quadratic")
    with pytest.raises(ConfigError, match="schedule.name"):
        sched("cosinus")
    with pytest.raises(ValueError, match="count from 1"):
        sched("constant").multiplier(0)


def test_wsds_cycles_cool_down_and_return_to_peak():
    # Warmup 10; cycles end at 110 and 310 with 20% cooldowns: (90, 110] and (270, 310].
    cfg = schedule_config("wsds", warmup_steps=10, decay_fraction=0.2, cooldown="linear", min_lr_ratio=0.0,
                         wsds_cycle_ends=[110, 310])
    s = build_schedule(cfg, total_steps=310, peak_lr=1.0)
    assert s.multiplier(5) == pytest.approx(0.5)
    assert s.multiplier(90) == 1.0
    assert s.multiplier(100) == pytest.approx(0.5)
    assert s.multiplier(110) == pytest.approx(0.0, abs=1e-15)
    assert s.multiplier(111) == 1.0  # back to the peak from the decayed weights
    assert s.multiplier(270) == 1.0
    assert s.multiplier(290) == pytest.approx(0.5)
    assert s.multiplier(310) == pytest.approx(0.0, abs=1e-15)
    assert {90, 110, 270, 310} <= set(s.phase_boundaries())


def test_wsds_config_errors_name_the_field():
    with pytest.raises(ConfigError, match="schedule.wsds_cycle_ends"):
        sched("wsds", wsds_cycle_ends=[])
    with pytest.raises(ConfigError, match="schedule.wsds_cycle_ends"):
        to_run_config({"schedule": {"name": "wsds", "wsds_cycle_ends": [100, 200]}, "train": {"steps": 300}})


@pytest.mark.parametrize("shape, mid_cooldown", [("linear", 1 - 0.9 * 0.5), ("exp", 0.1**0.5)])
def test_wsdc_decays_then_holds_the_final_lr(shape, mid_cooldown):
    # 200 steps: warmup 20, stable to 140, cooldown (140, 180] (20% of 200), constant tail (180, 200] (10%).
    s = sched("wsdc", total=200, warmup_steps=20, decay_fraction=0.2, tail_fraction=0.1, cooldown=shape,
              min_lr_ratio=0.1)
    assert s.multiplier(10) == pytest.approx(0.5, abs=1e-15)
    assert s.multiplier(20) == 1.0 and s.multiplier(140) == 1.0
    assert s.decay_start == 140
    assert s.multiplier(150) == pytest.approx(
        {"linear": 1 - 0.9 * 0.25, "exp": 0.1**0.25}[shape], abs=1e-15)
    assert s.multiplier(160) == pytest.approx(mid_cooldown, abs=1e-15)
    for step in (180, 181, 190, 200):
        assert s.multiplier(step) == pytest.approx(0.1, abs=1e-15)
    assert s.phase_boundaries() == [20, 140, 180, 200]


def test_wsdc_without_tail_is_wsd():
    wsdc = sched("wsdc", total=150, warmup_steps=10, decay_fraction=0.3, tail_fraction=0.0, cooldown="sqrt",
                 min_lr_ratio=0.05)
    wsd = sched("wsd", total=150, warmup_steps=10, decay_fraction=0.3, cooldown="sqrt", min_lr_ratio=0.05)
    assert [wsdc.multiplier(t) for t in range(1, 151)] == [wsd.multiplier(t) for t in range(1, 151)]


def test_wsdc_fields_are_checked():
    with pytest.raises(ConfigError, match="schedule.tail_fraction"):
        sched("wsdc", decay_fraction=0.8, tail_fraction=0.3)
    with pytest.raises(ConfigError, match="schedule.tail_fraction"):
        to_run_config({"schedule": {"name": "cosine", "tail_fraction": 0.1}})


def test_warmup_fraction_scales_with_the_run_and_steps_win():
    # round(0.1 * 110) = 11 warmup steps.
    s = sched("cosine", total=110, warmup_fraction=0.1, min_lr_ratio=0.0)
    assert s.warmup_steps == 11
    assert s.multiplier(11) == 1.0 and s.multiplier(5) == pytest.approx(5 / 11, abs=1e-15)
    assert sched("cosine", total=1000, warmup_fraction=0.1).warmup_steps == 100
    # An explicit step count is taken as given.
    assert sched("cosine", total=110, warmup_fraction=0.1, warmup_steps=3).warmup_steps == 3
    with pytest.raises(ConfigError, match="schedule.warmup_steps"):
        to_run_config({"schedule": {"name": "cosine", "warmup_steps": 20}, "train": {"steps": 20}})
    with pytest.raises(ConfigError, match="schedule.warmup_fraction"):
        sched("cosine", warmup_fraction=1.0)


def test_wsds_cycle_fractions_match_cycle_ends():
    by_steps = sched("wsds", total=310, warmup_steps=10, decay_fraction=0.2, cooldown="linear", min_lr_ratio=0.0,
                     wsds_cycle_ends=[155, 310])
    by_fraction = sched("wsds", total=310, warmup_steps=10, decay_fraction=0.2, cooldown="linear",
                        min_lr_ratio=0.0, wsds_cycle_fractions=[0.5, 1.0])
    assert [by_steps.multiplier(t) for t in range(1, 311)] == [by_fraction.multiplier(t) for t in range(1, 311)]
    with pytest.raises(ConfigError, match="schedule.wsds_cycle_fractions"):
        sched("wsds", wsds_cycle_fractions=[0.5, 0.9])
    with pytest.raises(ConfigError, match="schedule.wsds_cycle_ends"):
        sched("wsds", wsds_cycle_ends=[100], wsds_cycle_fractions=[1.0])


def test_a_field_of_another_schedule_is_an_error_naming_it():
    with pytest.raises(ConfigError, match=r"schedule.decay_fraction: .*schedule.name=wsd"):
        to_run_config({"schedule": {"name": "cosine", "decay_fraction": 0.3}})
    with pytest.raises(ConfigError, match="schedule.decay_fraction"):
        schedule_config("linear", decay_fraction=0.3)
    with pytest.raises(ConfigError, match="schedule.decay_fraction"):
        to_run_config({"schedule": {"name": "wsd", "decay_fraction": "most"}})


def test_hydra_overrides_type_the_chosen_schedule():
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs
    from harness.schedules import WSDSchedule

    register_configs()
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = to_run_config(compose(config_name="config", overrides=["schedule=wsd", "schedule.decay_fraction=0.3"]))
        assert isinstance(cfg.schedule, WSDSchedule) and cfg.schedule.decay_fraction == 0.3
        wsdc = to_run_config(compose(config_name="config", overrides=["schedule=wsdc", "train=tiny"])).schedule
        assert wsdc.name == "wsdc" and wsdc.warmup(20) == 2
        for bad, field_name in (("schedule.decay_fractoin=0.3", "schedule.decay_fractoin"),
                                ("schedule.decay_fraction=lots", "schedule.decay_fraction")):
            with pytest.raises(ConfigError, match=field_name):
                to_run_config(compose(config_name="config", overrides=["schedule=wsd", bad]))
        with pytest.raises(ConfigError, match="schedule.decay_fraction"):
            to_run_config(compose(config_name="config", overrides=["schedule=cosine", "schedule.decay_fraction=0.3"]))


def test_piecewise_interpolates_between_knots_exactly():
    # W = 10, T = 110: p = (t - 10) / 100. Knots: 1.0 at p=0, 1.0 at p=0.6, 0.2 at p=0.8, 0.0 at p=1.
    s = sched("piecewise", total=110, warmup_steps=10, knot_fractions=[0.0, 0.6, 0.8, 1.0],
              knot_multipliers=[1.0, 1.0, 0.2, 0.0])
    assert s.multiplier(5) == pytest.approx(0.5, abs=1e-15)  # warmup ramps to the first knot's value
    assert s.multiplier(10) == 1.0
    assert s.multiplier(70) == 1.0                            # p = 0.6
    assert s.multiplier(75) == pytest.approx(0.8, abs=1e-15)  # p = 0.65: 1 - 0.8 * 0.25
    assert s.multiplier(90) == pytest.approx(0.2, abs=1e-15)  # p = 0.8
    assert s.multiplier(100) == pytest.approx(0.1, abs=1e-15)  # p = 0.9
    assert s.multiplier(110) == 0.0
    assert s.phase_boundaries() == [10, 70, 90, 110]
    assert s.decay_start == 70


def test_piecewise_default_conf_is_a_linear_wsd():
    """conf/schedule/piecewise.yaml's knots equal a WSD with a 40% linear cooldown (no warmup)."""
    import yaml

    conf = yaml.safe_load((Path(__file__).resolve().parents[1] / "conf/schedule/piecewise.yaml").read_text())
    conf["warmup_fraction"] = 0.0
    piecewise = sched(total=100, **conf)
    wsd = sched("wsd", total=100, warmup_steps=0, decay_fraction=0.4, cooldown="linear", min_lr_ratio=0.0)
    for t in range(1, 101):
        assert piecewise.multiplier(t) == pytest.approx(wsd.multiplier(t), abs=1e-12)


def test_step_schedule_drops_after_each_boundary():
    # W = 10, T = 110: boundaries at 10 + round(0.5 * 100) = 60 and 10 + 75 = 85.
    s = sched("step", total=110, warmup_steps=10, step_fractions=[0.5, 0.75], step_multipliers=[0.3, 0.1])
    assert s.multiplier(5) == pytest.approx(0.5, abs=1e-15)
    assert [s.multiplier(t) for t in (11, 60, 61, 85, 86, 110)] == [1.0, 1.0, 0.3, 0.3, 0.1, 0.1]
    assert s.phase_boundaries() == [10, 60, 85, 110]
    assert s.decay_start == 60


@pytest.mark.parametrize("name, fields, field_name", [
    ("piecewise", {"knot_fractions": [0.0, 0.5], "knot_multipliers": [1.0, 0.0]}, "schedule.knot_fractions"),
    ("piecewise", {"knot_fractions": [0.0, 0.7, 0.5, 1.0], "knot_multipliers": [1, 1, 1, 0]}, "schedule.knot_fractions"),
    ("piecewise", {"knot_fractions": [0.0, 1.0], "knot_multipliers": [1.0]}, "schedule.knot_multipliers"),
    ("piecewise", {"knot_fractions": [0.0, 1.0], "knot_multipliers": [1.0, -0.1]}, "schedule.knot_multipliers"),
    ("step", {"step_fractions": [0.5, 1.0], "step_multipliers": [0.3, 0.1]}, "schedule.step_fractions"),
    ("step", {"step_fractions": [0.5], "step_multipliers": [0.3, 0.1]}, "schedule.step_multipliers"),
])
def test_piecewise_and_step_errors_name_the_field(name, fields, field_name):
    with pytest.raises(ConfigError, match=field_name):
        schedule_config(name, **fields)


def test_piecewise_and_step_compose_from_hydra_overrides():
    from hydra import compose, initialize_config_dir

    from harness.config import register_configs

    register_configs()
    conf = str(Path(__file__).resolve().parents[1] / "conf")
    with initialize_config_dir(config_dir=conf, version_base="1.3"):
        cfg = to_run_config(compose(config_name="config", overrides=[
            "schedule=piecewise", "schedule.knot_fractions=[0.0,0.5,1.0]", "schedule.knot_multipliers=[1.0,0.5,0.1]"]))
        assert cfg.schedule.knot_multipliers == [1.0, 0.5, 0.1]
        step = to_run_config(compose(config_name="config", overrides=["schedule=step", "train=tiny"])).schedule
        assert step.step_fractions == [0.5, 0.75] and step.step_multipliers == [0.3, 0.1]
