"""Where public data is read from (harness/fit/data_dir.py): --data, then $HARNESS_DATA, then
<repo root>/../shared/data; a missing dataset names the directory and the files' origin."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

from harness.fit import data_dir


def test_lookup_order(tmp_path, monkeypatch):
    (tmp_path / "env" / "luo2025_multipowerlaw").mkdir(parents=True)
    (tmp_path / "explicit" / "luo2025_multipowerlaw").mkdir(parents=True)
    monkeypatch.delenv(data_dir.ENV_VAR, raising=False)
    assert data_dir.data_root() == ROOT.parent / "shared" / "data"
    monkeypatch.setenv(data_dir.ENV_VAR, str(tmp_path / "env"))
    assert data_dir.dataset("luo2025_multipowerlaw") == tmp_path / "env" / "luo2025_multipowerlaw"
    assert data_dir.dataset("luo2025_multipowerlaw", tmp_path / "explicit") == \
        tmp_path / "explicit" / "luo2025_multipowerlaw"


def test_missing_dataset_names_directory_and_origin(tmp_path, monkeypatch):
    monkeypatch.setenv(data_dir.ENV_VAR, str(tmp_path))
    with pytest.raises(data_dir.DataMissing) as info:
        data_dir.dataset("besiroglu2024_analyzing_chinchilla")
    message = str(info.value)
    assert str(tmp_path / "besiroglu2024_analyzing_chinchilla") in message
    assert "epoch-research/analyzing-chinchilla" in message and "92258837" in message and "docs/DATA.md" in message
    with pytest.raises(KeyError, match="unknown public dataset"):
        data_dir.dataset("nope")


def test_every_dataset_is_documented():
    doc = (ROOT / "docs" / "DATA.md").read_text()
    for name in data_dir.SOURCES:
        assert f"## {name}/" in doc, name


def test_script_without_data_exits_2_naming_the_directory(tmp_path):
    env = {"PATH": "/usr/bin:/bin", data_dir.ENV_VAR: str(tmp_path / "none")}
    proc = subprocess.run([sys.executable, "scripts/reproduce_tissue.py"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{tmp_path / 'none' / 'tissue2024_appendix_example'} is missing" in proc.stderr
