"""Exact values for every schedule, computed by hand from the formulas in schedules.py."""

import math

import pytest

from harness.config import ConfigError, ScheduleConfig
from harness.optim.schedules import build_schedule


def sched(name, total=100, peak=1.0, **kw):
    return build_schedule(ScheduleConfig(name=name, **kw), total_steps=total, peak_lr=peak)


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
    cfg = ScheduleConfig(name="power", warmup_steps=0, power_a=4.6, power_b=-0.51)
    s = build_schedule(cfg, total_steps=1000, peak_lr=0.05, batch_size=16, tokens_per_step=16 * 128)
    for step in (1, 10, 100, 1000):
        expected = min(0.05, 4.6 * 16 * (step * 2048) ** -0.51)
        assert s.lr(step) == pytest.approx(expected, rel=1e-12)
    # Early steps are capped at the peak, late ones follow the power law.
    assert s.lr(1) == 0.05
    assert s.lr(1000) < 0.05


def test_power_scheduler_warmup_and_decay():
    cfg = ScheduleConfig(name="power", warmup_steps=100, power_a=4.6, power_b=-0.51,
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
    cfg = ScheduleConfig(name="wsds", warmup_steps=10, decay_fraction=0.2, cooldown="linear", min_lr_ratio=0.0,
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
    from harness.config import to_run_config

    with pytest.raises(ConfigError, match="schedule.wsds_cycle_ends"):
        sched("wsds", wsds_cycle_ends=[])
    with pytest.raises(ConfigError, match="schedule.wsds_cycle_ends"):
        to_run_config({"schedule": {"name": "wsds", "wsds_cycle_ends": [100, 200]}, "train": {"steps": 300}})
