"""Tests of the data pipeline (harness/data): sources, tokenizer cache, token cache, batches.

Small on purpose (200k chars, vocab 300): the whole file runs in seconds on a laptop CPU.
Everything the pipeline writes goes to tmp dirs, and the Hugging Face libraries are put in
offline mode with their caches in a tmp dir, so nothing touches the network or the user's home.
"""

from __future__ import annotations

import json
import re
import sysconfig
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.config import ConfigError, DataConfig
from harness.data import TokenData, iter_documents, load_tokenizer, prepare_tokens, train_batch, val_batches
from harness.data import cache as cache_mod
from harness.data import tokenizer as tokenizer_mod
from harness.data import tokens as tokens_mod
from harness.data.sources import embedded_documents, stdlib_source_files

SMALL_CHARS = 200_000
SMALL_VOCAB = 300
SMALL_VAL = 4096


@pytest.fixture(scope="module", autouse=True)
def hf_offline(tmp_path_factory: pytest.TempPathFactory):
    """Offline mode and tmp caches for datasets/huggingface_hub.

    Both libraries read these variables at import time (already done by `harness.data`), so the
    module-level constants they consult are patched too, not just the environment.
    """
    import datasets.config
    import huggingface_hub.constants

    hf_home = tmp_path_factory.mktemp("hf_home")
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(hf_home),
                            "HF_DATASETS_CACHE": str(hf_home / "datasets"),
                            "TOKENIZERS_PARALLELISM": "false"}.items():
            mp.setenv(name, value)
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", hf_home / "datasets")
        mp.setattr(datasets.config, "HF_MODULES_CACHE", hf_home / "modules")
        yield


def small_cfg(cache_dir: Path, **overrides) -> DataConfig:
    fields = dict(source="embedded", max_chars=SMALL_CHARS, vocab_size=SMALL_VOCAB,
                  val_tokens=SMALL_VAL, cache_dir=str(cache_dir))
    fields.update(overrides)
    return DataConfig(**fields)


@pytest.fixture(scope="module")
def small_data(tmp_path_factory: pytest.TempPathFactory) -> TokenData:
    return prepare_tokens(small_cfg(tmp_path_factory.mktemp("cache")))


def leftover_tmp_dirs(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.rglob(".tmp-*")]


def synthetic_data(n_train: int, n_val: int) -> TokenData:
    """Tokens equal to their position in the stream, so a batch tells where it was read from."""
    stream = np.arange(n_train + n_val, dtype=np.uint32)
    return TokenData(train=stream[:n_train], val=stream[n_train:], vocab_size=n_train + n_val,
                     tokenizer=None, manifest={}, cache_path=Path("/nonexistent"))  # type: ignore[arg-type]


# --- sources ----------------------------------------------------------------------------------


def test_embedded_source_is_real_english_text():
    docs = list(iter_documents(DataConfig(max_chars=SMALL_CHARS)))
    text = "".join(docs)
    assert len(text) == SMALL_CHARS  # the cap is exact: the last document is cut to fit
    words = set(re.findall(r"[a-z]+", text.lower()))
    assert {"the", "and", "function", "return", "value", "object"} <= words
    assert docs == list(iter_documents(DataConfig(max_chars=SMALL_CHARS)))  # deterministic


def test_embedded_source_has_prose_and_code_and_enough_of_it():
    from pydoc_data.topics import topics

    docs = embedded_documents()
    assert sum(map(len, docs)) > 5_000_000
    assert topics["assert"] in docs  # pydoc prose
    assert any("import " in d and "def " in d for d in docs)  # stdlib sources
    root = Path(sysconfig.get_paths()["stdlib"])
    parts = {part for f in stdlib_source_files(root) for part in f.relative_to(root).parts[:-1]}
    assert not parts & {"site-packages", "dist-packages", "test", "__pycache__"}
    # The default cap keeps the default run's first preparation at seconds.
    default = list(iter_documents(DataConfig()))
    assert sum(map(len, default)) <= 10_000_000


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_local_txt_files_are_one_document_each(tmp_path: Path):
    (tmp_path / "a.txt").write_text("first file\n\nwith two paragraphs\n")
    (tmp_path / "b.txt").write_text("second file\n")
    (tmp_path / "skip.md").write_text("not a supported suffix")
    docs = list(iter_documents(DataConfig(source=str(tmp_path / "*.txt"))))
    assert docs == ["first file\n\nwith two paragraphs\n", "second file\n"]
    assert list(iter_documents(DataConfig(source=str(tmp_path)))) == docs  # a directory works too


def test_local_jsonl_and_parquet_read_text_field(tmp_path: Path):
    import pandas as pd

    rows = [{"body": f"document number {i}", "id": i} for i in range(5)]
    write_jsonl(tmp_path / "d.jsonl", rows)
    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    for name in ("d.jsonl", "d.parquet"):
        docs = list(iter_documents(DataConfig(source=str(tmp_path / name), text_field="body")))
        assert docs == [r["body"] for r in rows], name


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_missing_text_field_names_the_field_and_the_columns(tmp_path: Path, suffix: str):
    import pandas as pd

    rows = [{"body": "some text", "id": 1}]
    path = tmp_path / f"d.{suffix}"
    if suffix == "jsonl":
        write_jsonl(path, rows)
    else:
        pd.DataFrame(rows).to_parquet(path)
    with pytest.raises(ConfigError, match=r"data\.text_field") as err:
        list(iter_documents(DataConfig(source=str(path), text_field="text")))
    assert "'body'" in str(err.value) and "'id'" in str(err.value)


def test_bad_local_sources_are_config_errors(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data\.source: no \.txt"):
        iter_documents(DataConfig(source=str(tmp_path / "nothing-*.jsonl")))
    (tmp_path / "a.txt").write_text("x")
    (tmp_path / "b.jsonl").write_text('{"text": "y"}\n')
    with pytest.raises(ConfigError, match="mixes formats"):
        iter_documents(DataConfig(source=str(tmp_path)))


def test_hub_source_offline_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"data\.source: could not load hub dataset.*offline"):
        iter_documents(DataConfig(source="hf:no-such-user/no-such-dataset"))


def test_local_jsonl_end_to_end(tmp_path: Path):
    texts = [d for d in iter_documents(DataConfig(max_chars=60_000))]
    write_jsonl(tmp_path / "corpus.jsonl", [{"text": t} for t in texts])
    data = prepare_tokens(small_cfg(tmp_path / "cache", source=str(tmp_path / "corpus.jsonl"),
                                    val_tokens=1024, max_chars=None))
    assert data.manifest["n_documents"] == len(texts)
    assert data.manifest["source"]["kind"] == "local"
    assert data.val.shape == (1024,)


# --- tokenizer --------------------------------------------------------------------------------


def test_bpe_is_trained_once_then_loaded_from_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    calls = []
    real_train = tokenizer_mod.train_byte_level_bpe

    def counting_train(texts, vocab_size):
        calls.append(vocab_size)
        return real_train(texts, vocab_size)

    monkeypatch.setattr(tokenizer_mod, "train_byte_level_bpe", counting_train)
    cfg = small_cfg(tmp_path)
    texts = list(iter_documents(cfg))
    first = load_tokenizer(cfg, texts)
    files = list((tmp_path / "tokenizers").glob("*/tokenizer.json"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    second = load_tokenizer(cfg, texts)
    assert calls == [SMALL_VOCAB]  # not retrained
    assert files[0].stat().st_mtime_ns == mtime
    assert first.get_vocab() == second.get_vocab()
    assert len(first) == SMALL_VOCAB
    assert first.convert_ids_to_tokens(first.eos_token_id) == "<|endoftext|>"
    sample = texts[0][:500]
    assert first.decode(first.encode(sample)) == sample  # byte-level: lossless round trip
    # A different vocab size is a different tokenizer.
    load_tokenizer(small_cfg(tmp_path, vocab_size=SMALL_VOCAB + 20), texts)
    assert calls == [SMALL_VOCAB, SMALL_VOCAB + 20]
    assert not leftover_tmp_dirs(tmp_path)


def test_tokenizer_exports_and_reloads_as_pretrained(tmp_path: Path, small_data: TokenData):
    export = tmp_path / "export"
    small_data.tokenizer.save_pretrained(export)
    reloaded = load_tokenizer(small_cfg(tmp_path, tokenizer=str(export)), [])
    assert reloaded.eos_token_id == small_data.eos_id
    assert reloaded.encode("def f(x): return x") == small_data.tokenizer.encode("def f(x): return x")


# --- token cache ------------------------------------------------------------------------------


def test_prepare_tokens_writes_memmap_and_manifest(small_data: TokenData):
    m = small_data.manifest
    tokens_file = small_data.cache_path / "tokens.bin"
    assert isinstance(small_data.train, np.memmap) and isinstance(small_data.val, np.memmap)
    assert small_data.train.dtype == np.uint16 and m["dtype"] == "uint16"
    assert tokens_file.stat().st_size == m["n_tokens"] * 2
    assert small_data.train.shape[0] + small_data.val.shape[0] == m["n_tokens"]
    assert small_data.val.shape == (SMALL_VAL,)
    assert m["split"] == {"n_train": m["n_tokens"] - SMALL_VAL, "n_val": SMALL_VAL}
    assert m["n_chars"] == SMALL_CHARS and m["tokenizer"]["vocab_size"] == small_data.vocab_size == SMALL_VOCAB
    for key in ("source", "content_hash", "tokens_sha256", "created", "versions"):
        assert m[key], key
    on_disk = json.loads((small_data.cache_path / "manifest.json").read_text())
    assert on_disk["n_tokens"] == m["n_tokens"]
    # One eos after every document, the last token included.
    stream = np.memmap(tokens_file, dtype=np.uint16, mode="r")
    assert int((stream == small_data.eos_id).sum()) == m["n_documents"]
    assert stream[-1] == small_data.eos_id
    assert not leftover_tmp_dirs(small_data.cache_path.parent.parent)


def test_prepare_tokens_reuses_cache_without_tokenizing(small_data: TokenData, monkeypatch: pytest.MonkeyPatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("retokenized although the cache was valid")

    monkeypatch.setattr(tokens_mod, "write_token_cache", must_not_run)
    monkeypatch.setattr(tokenizer_mod, "train_byte_level_bpe", must_not_run)
    cache_dir = small_data.cache_path.parent.parent
    again = prepare_tokens(small_cfg(cache_dir))
    assert again.cache_path == small_data.cache_path
    assert np.array_equal(again.train, small_data.train)
    # A different val size reuses the same token file: the split is not part of the cache.
    other_split = prepare_tokens(small_cfg(cache_dir, val_tokens=2 * SMALL_VAL))
    assert other_split.cache_path == small_data.cache_path and other_split.val.shape == (2 * SMALL_VAL,)


def test_failed_tokenization_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def failing_encode(*args, **kwargs):
        yield np.zeros(10, dtype=np.uint16)
        raise RuntimeError("disk full")

    monkeypatch.setattr(tokens_mod, "encode_documents", failing_encode)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare_tokens(small_cfg(tmp_path))
    assert list((tmp_path / "tokens").iterdir()) == []
    assert not leftover_tmp_dirs(tmp_path)


def test_atomic_directory_keeps_the_winner_of_a_race(tmp_path: Path):
    final = tmp_path / "entry"
    with cache_mod.atomic_directory(final) as ours:
        (ours / "f").write_text("ours")
        final.mkdir()  # another process finishes first
        (final / "f").write_text("theirs")
    assert (final / "f").read_text() == "theirs"
    assert not leftover_tmp_dirs(tmp_path)


def test_corrupt_cache_is_detected(tmp_path: Path):
    data = prepare_tokens(small_cfg(tmp_path))
    with open(data.cache_path / "tokens.bin", "ab") as f:
        f.write(b"\0\0")
    with pytest.raises(tokens_mod.TokenCacheError, match="delete"):
        prepare_tokens(small_cfg(tmp_path))


def test_too_little_text_for_the_val_split_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"data\.val_tokens: the token stream has"):
        prepare_tokens(small_cfg(tmp_path, max_chars=5_000))


# --- batches ----------------------------------------------------------------------------------


def test_train_batch_is_a_pure_function_of_seed_and_step(small_data: TokenData):
    def batch(seed: int, step: int):
        return train_batch(small_data, seed=seed, step=step, batch_size=8, seq_len=64)

    b5 = batch(0, 5)
    assert b5.shape == (8, 65) and b5.dtype == torch.int64
    later = [batch(0, s) for s in (7, 6, 5)]  # other calls in between, reverse order
    assert all(b5.equal(x) for x in [later[2], batch(0, 5)])
    assert not b5.equal(batch(0, 6))
    assert not b5.equal(batch(1, 5))
    assert not later[0].equal(later[1])


def test_train_windows_are_real_contiguous_windows_of_the_train_split():
    data = synthetic_data(n_train=10_000, n_val=2_000)
    for step in range(20):
        xy = train_batch(data, seed=3, step=step, batch_size=16, seq_len=32).numpy()
        assert (xy < 10_000).all()  # never reads validation tokens
        assert (np.diff(xy, axis=1) == 1).all()  # contiguous windows


def test_val_batches_are_fixed_disjoint_and_inside_the_val_split():
    data = synthetic_data(n_train=10_000, n_val=2_000)
    batches = val_batches(data, batch_size=4, seq_len=31, n_batches=3)
    assert len(batches) == 3 and all(b.shape == (4, 32) for b in batches)
    values = np.concatenate([b.numpy().ravel() for b in batches])
    assert (values >= 10_000).all()  # never overlaps training
    assert len(np.unique(values)) == values.size  # windows never overlap each other
    assert values.max() > 11_500  # spread across the split, not packed at its start
    again = val_batches(data, batch_size=4, seq_len=31, n_batches=3)
    assert all(a.equal(b) for a, b in zip(batches, again))


def test_val_batches_on_real_data_and_too_small_val_split(small_data: TokenData):
    batches = val_batches(small_data, batch_size=4, seq_len=127, n_batches=8)  # exactly 4096 tokens
    assert len(batches) == 8
    with pytest.raises(ConfigError, match=r"data\.val_tokens.*at least 8192"):
        val_batches(small_data, batch_size=8, seq_len=127, n_batches=8)


def test_train_batch_rejects_window_longer_than_train_split():
    with pytest.raises(ConfigError, match=r"train\.seq_len"):
        train_batch(synthetic_data(100, 10), seed=0, step=0, batch_size=1, seq_len=100)
