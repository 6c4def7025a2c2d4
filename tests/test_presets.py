"""Every shipped preset composes with every other: each conf/model x conf/train x conf/schedule x
conf/optim combination builds a valid RunConfig through Hydra (config validation only, no
training), and so does each conf/data and conf/logging preset with the defaults."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from harness.config import ConfigError, register_configs, to_run_config

CONF = Path(__file__).resolve().parents[1] / "conf"


def presets(group: str) -> list[str]:
    names = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    assert names, f"no presets in conf/{group}"
    return names


@pytest.fixture(scope="module")
def build():
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield lambda *overrides: compose(config_name="config", overrides=list(overrides))


GROUPS = ("model", "train", "schedule", "optim")


def test_every_model_train_schedule_optim_combination_validates(build):
    """Hydra composes each preset once; a combination is the defaults with each group's section
    swapped for its preset's (the presets share no keys across groups, which the spot checks below
    confirm against a full Hydra composition), validated by to_run_config."""
    base = OmegaConf.to_container(build())
    sections = {group: {name: OmegaConf.to_container(build(f"{group}={name}"))[group] for name in presets(group)}
                for group in GROUPS}
    combos = list(itertools.product(*(presets(group) for group in GROUPS)))
    failures = []
    for combo in combos:
        cfg = {**base, **{group: sections[group][name] for group, name in zip(GROUPS, combo)}}
        try:
            to_run_config(cfg)
        except ConfigError as err:
            failures.append(f"{' '.join(f'{g}={n}' for g, n in zip(GROUPS, combo))}: {err}")
    assert not failures, f"{len(failures)} of {len(combos)} preset combinations fail:\n" + "\n".join(failures[:20])
    # Spot checks: a full composition equals the assembled combination (every preset appears once).
    longest = max(len(presets(group)) for group in GROUPS)
    for i in range(longest):
        combo = [presets(group)[i % len(presets(group))] for group in GROUPS]
        composed = build(*(f"{g}={n}" for g, n in zip(GROUPS, combo)))
        assembled = {**base, **{group: sections[group][name] for group, name in zip(GROUPS, combo)}}
        assert OmegaConf.to_container(composed) == assembled
        assert to_run_config(composed) == to_run_config(assembled)


def test_schedule_and_optim_presets_select_their_class(build):
    for group in ("schedule", "optim"):
        for name in presets(group):
            assert getattr(to_run_config(build(f"{group}={name}")), group).name == name


@pytest.mark.parametrize("group", ["data", "logging"])
def test_data_and_logging_presets_validate(build, group):
    for name in presets(group):
        extra = ["data.source=notes/*.txt"] if (group, name) == ("data", "local_files") else []
        to_run_config(build(f"{group}={name}", *extra))


def test_local_files_preset_asks_for_its_source(build):
    with pytest.raises(ConfigError, match="data.source"):
        to_run_config(build("data=local_files"))


def test_tiny_presets_compose_as_a_new_user_tries_them(build):
    cfg = to_run_config(build("model=llama_tiny", "train=tiny"))
    # The schedule presets give warmup as a fraction of train.steps: 7.5% of 20 steps.
    assert cfg.schedule.warmup(cfg.train.steps) == 2
    # The small model presets take their context length from the train preset.
    assert cfg.model.max_seq_len == cfg.train.seq_len == 32
