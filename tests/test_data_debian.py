"""The Debian-package text source (`data.source=deb:dict-gcide`, `data=gcide`): the dictd reader on a
small database built here, clear errors, and (when the package is installed) real tokens and a real run."""

from __future__ import annotations

import base64
import gzip
import json
from pathlib import Path

import pytest

from conftest import read_rows, run_train

from harness.config import ConfigError, DataConfig
from harness.data import debian_text, prepare_tokens
from harness.data.debian_text import CORPORA, DebianCorpus, corpus, dictd_entries
from harness.data.sources import iter_documents, source_kind

GCIDE_INSTALLED = all(Path(f).is_file() for f in CORPORA["dict-gcide"].files)
needs_gcide = pytest.mark.skipif(not GCIDE_INSTALLED, reason="needs the Debian package dict-gcide: "
                                 "bash scripts/install_debian_text.sh (apt-get install dict-gcide)")

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd(n: int) -> str:
    digits = ""
    while True:
        digits = _ALPHABET[n % 64] + digits
        n //= 64
        if n == 0:
            return digits


def test_dictd_entries_cut_by_the_index(tmp_path: Path):
    body = ("00-database-short\n   A test\n\n" + "Apple \\Ap\"ple\\, n.\n   A fruit.\n\n"
            + "Caf\xe9 \\Ca*f\xe9\\, n.\n   A coffee house.\n\n" + "x" * 5000 + "\n")
    raw = body.encode("latin-1")
    (tmp_path / "t.dict.dz").write_bytes(gzip.compress(raw))
    spans = {"00-database-short": (0, raw.index(b"Apple"))}
    start = raw.index(b"Apple")
    spans["apple"] = (start, raw.index(b"Caf") - start)
    spans["cafe"] = (raw.index(b"Caf"), raw.index(b"xxx") - raw.index(b"Caf"))
    spans["long"] = (raw.index(b"xxx"), 5000)
    lines = [f"{word}\t{_dictd(o)}\t{_dictd(n)}" for word, (o, n) in spans.items()]
    lines.insert(2, f"Apples\t{_dictd(start)}\t{_dictd(spans['apple'][1])}")  # a second headword, same entry
    (tmp_path / "t.index").write_text("\n".join(lines) + "\n", encoding="latin-1")
    entries = dictd_entries(tmp_path / "t.dict.dz", tmp_path / "t.index")
    assert entries == ["Apple \\Ap\"ple\\, n.\n   A fruit.", "Caf\xe9 \\Ca*f\xe9\\, n.\n   A coffee house.", "x" * 5000]
    assert _dictd(5000) == "BOI" and debian_text._dictd_number("BOI") == 5000


def test_deb_source_errors_name_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    assert source_kind("deb:dict-gcide") == "deb"
    with pytest.raises(ConfigError, match="not a known Debian text package; known: deb:dict-gcide"):
        list(iter_documents(DataConfig(source="deb:nope")))
    monkeypatch.setitem(CORPORA, "dict-gcide", DebianCorpus("dict-gcide", (str(tmp_path / "absent.dz"),), list))
    with pytest.raises(ConfigError, match=r"needs the Debian package dict-gcide .*absent.dz is missing.*"
                                          r"bash scripts/install_debian_text.sh"):
        corpus("dict-gcide")


@needs_gcide
def test_gcide_tokens_are_english_dictionary_entries(tmp_path: Path):
    cfg = DataConfig(source="deb:dict-gcide", vocab_size=300, max_chars=400_000, val_tokens=4096,
                     cache_dir=str(tmp_path))
    docs = list(iter_documents(cfg))
    assert sum(map(len, docs)) == 400_000 and len(docs) > 500
    assert sum("[1913 Webster]" in d for d in docs) > len(docs) / 2  # Webster's 1913 entries
    first_words = [d.split()[0] for d in docs[:50]]
    assert first_words != sorted(first_words)  # shuffled: the val tail is not all Z-words
    assert docs == list(iter_documents(cfg))  # ... with a fixed order
    data = prepare_tokens(cfg)
    assert data.manifest["source"]["kind"] == "deb" and data.manifest["source"]["package_version"]
    assert data.unique_tokens > 100_000
    assert "Webster" in data.tokenizer.decode(data.train[:20000].tolist())


@needs_gcide
def test_gcide_preset_trains(train_env, tmp_path: Path):
    run_dir = tmp_path / "gcide"
    proc = run_train(train_env, "data=gcide", f"run_dir={run_dir}")  # TINY's data.max_chars keeps it small
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = json.loads((run_dir / "env.json").read_text())
    assert env["data_manifest"]["source"]["source"] == "deb:dict-gcide"
    rows = read_rows(run_dir)
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3
