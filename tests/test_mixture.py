"""Data mixtures (harness/data/mixture.py): sampling as a pure function of (seed, step), tokens per
source within sampling error of the weights, the weight schedule, per-source val sets and the
val_loss/<name> rows of a run, collected."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, read_rows
from harness.config import ConfigError, to_run_config
from harness.identity import config_hash

SOURCES = [{"name": "prose", "source": "embedded:prose", "weight": 0.7},
           {"name": "code", "source": "embedded:code", "weight": 0.3, "max_chars": 400000}]


def mixture_cfg(harness_cache, **data):
    return to_run_config({"run_dir": "x", "data": {"vocab_size": 300, "val_tokens": 4096, "tokenizer_chars": 300000,
                                                   "cache_dir": str(harness_cache), "sources": SOURCES, **data}})


@pytest.fixture(scope="module")
def mixture(harness_cache):
    from harness.data import prepare_tokens

    return prepare_tokens(mixture_cfg(harness_cache, weight_schedule=[{"step": 101, "weights": {"prose": 0.0,
                                                                                             "code": 1.0}}]).data)


def test_batches_are_a_pure_function_of_seed_and_step(mixture):
    from harness.data import train_batch

    a = train_batch(mixture, seed=3, step=17, batch_size=16, seq_len=32)
    assert torch.equal(a, train_batch(mixture, seed=3, step=17, batch_size=16, seq_len=32))
    assert not torch.equal(a, train_batch(mixture, seed=3, step=18, batch_size=16, seq_len=32))
    assert not torch.equal(a, train_batch(mixture, seed=4, step=17, batch_size=16, seq_len=32))


def test_each_row_comes_from_the_source_it_was_drawn_from(mixture):
    from harness.data import train_batch
    from harness.data.mixture import source_rows

    batch = train_batch(mixture, seed=0, step=5, batch_size=32, seq_len=16).numpy()
    rows = source_rows(mixture, seed=0, step=5, batch_size=32)
    for row, k in zip(batch, rows):
        train = np.asarray(mixture.parts[k].train)
        # the window occurs in its source's train split (a 17-token match is no accident)
        hits = np.flatnonzero(train[:-16] == row[0])
        assert any(np.array_equal(train[i:i + 17], row) for i in hits)


def test_tokens_per_source_match_the_weights_within_sampling_error(mixture):
    from harness.data.mixture import tokens_per_source

    steps, batch, seq = 100, 16, 8
    counts = tokens_per_source(mixture, seed=0, first_step=1, last_step=steps, batch_size=batch, seq_len=seq)
    rows = steps * batch
    assert counts.sum() == rows * seq
    share = counts[0] / counts.sum()
    sigma = math.sqrt(0.7 * 0.3 / rows)  # binomial standard error of the prose share
    assert abs(share - 0.7) < 4 * sigma
    # after the switch at step 101 every row is code
    after = tokens_per_source(mixture, seed=0, first_step=101, last_step=120, batch_size=batch, seq_len=seq)
    assert after[0] == 0 and after[1] == 20 * batch * seq
    assert mixture.weights_at(100).tolist() == pytest.approx([0.7, 0.3])
    assert mixture.weights_at(101).tolist() == [0.0, 1.0]


def test_one_tokenizer_whatever_the_schedule_and_fixed_val_sets(mixture, harness_cache):
    from harness.data import prepare_tokens
    from harness.data.mixture import val_sets
    from harness.data.tokenizer import tokenizer_id

    other = prepare_tokens(mixture_cfg(harness_cache, weight_schedule=[{"step": 2, "weights": {"prose": 1.0,
                                                                                            "code": 0.0}}]).data)
    assert tokenizer_id(other.tokenizer) == tokenizer_id(mixture.tokenizer)  # a continued run reads the same ids
    a, b = val_sets(mixture, n_sequences=8, seq_len=32), val_sets(other, n_sequences=8, seq_len=32)
    assert a.keys() == {"prose", "code"} and all(torch.equal(a[k], b[k]) for k in a)
    assert mixture.manifest["mixture"][0]["name"] == "prose"


def test_single_source_configs_and_bad_mixtures():
    plain = to_run_config({"run_dir": "x", "train": {"device": "cpu"}})
    assert config_hash(plain) == "2620581fa350"  # the pinned hash: unchanged by the new fields
    mix = dataclasses.replace(plain, data=dataclasses.replace(plain.data, sources=to_run_config(
        {"data": {"sources": SOURCES}}).data.sources))
    assert config_hash(mix) != config_hash(plain)
    with pytest.raises(ConfigError, match=r"data.sources: names must be unique"):
        to_run_config({"data": {"sources": [SOURCES[0], SOURCES[0]]}})
    with pytest.raises(ConfigError, match=r"data.weight_schedule\[0\].weights"):
        to_run_config({"data": {"sources": SOURCES, "weight_schedule": [{"step": 3, "weights": {"prose": 1.0}}]}})
    with pytest.raises(ConfigError, match=r"data.weight_schedule\[1\].step"):
        w = {"prose": 1.0, "code": 1.0}
        to_run_config({"data": {"sources": SOURCES, "weight_schedule": [{"step": 3, "weights": w},
                                                                        {"step": 3, "weights": w}]}})
    with pytest.raises(ConfigError, match=r"data.weight_schedule"):
        to_run_config({"data": {"weight_schedule": [{"step": 3, "weights": {}}]}})


def test_a_mixture_run_writes_per_source_val_rows_and_token_counts(train_env, tmp_path):
    run_dir = tmp_path / "mix"
    overrides = [o for o in TINY if not o.startswith("data.")] + [
        "data=prose_code", "data.vocab_size=300", "data.val_tokens=4096", "data.tokenizer_chars=300000",
        "data.sources.1.max_chars=400000", "train.steps=10",
        "+data.weight_schedule=[{step: 6, weights: {prose: 0.0, code: 1.0}}]", f"run_dir={run_dir}"]
    proc = subprocess.run([sys.executable, "-m", "harness.train", *overrides], cwd=ROOT, env=train_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = read_rows(run_dir)
    evals = [r for r in rows if "val_loss" in r]
    assert evals and all({"val_loss/prose", "val_loss/code"} <= r.keys() for r in evals)
    last = rows[-1]
    # after the switch val_loss is the code loss (the weights of the step), before it the 0.5/0.5 mean
    assert last["val_loss"] == pytest.approx(last["val_loss/code"])
    early = next(r for r in evals if r["step"] == 4)
    assert early["val_loss"] == pytest.approx(0.5 * early["val_loss/prose"] + 0.5 * early["val_loss/code"])
    assert last["tokens/prose"] + last["tokens/code"] == last["tokens"]
    assert rows[4]["tokens/prose"] == last["tokens/prose"]  # steps 6..10 drew code only
    done = json.loads((run_dir / "status.json").read_text())
    assert done["final_val_loss/code"] == last["val_loss/code"]

    from harness.collect import collect

    table = collect(tmp_path)
    assert table.loc[0, "val_loss/code"] == pytest.approx(last["val_loss/code"])
    assert table.loc[0, "tokens/prose"] == last["tokens/prose"]
