"""harness.eval (issue 17): the lm-eval adapter on a known tiny model against numbers computed here
from its logits, resumable evals.jsonl (a killed eval does not duplicate rows), collect's join, the
train.eval_tasks hook (same curve with and without it), and the missing-lm-eval message."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

pytest.importorskip("lm_eval")

from harness.checkpoint import save_checkpoint  # noqa: E402
from harness.config import ModelConfig  # noqa: E402
from harness.eval.evals_file import EVALS_FILE, read_evals  # noqa: E402
from harness.eval.runner import TASKS_DIR, EvalSettings, evaluate_run  # noqa: E402
from harness.models import build_model  # noqa: E402

from conftest import ROOT, TINY, read_rows, run_train  # noqa: E402

STEP = 3
# Three items with 2, 3 and 4 choices; the second context ends in a space (moved to the choice).
ITEMS = [
    {"context": "The value of the", "choices": ["module", "class"], "gold": 0},
    {"context": "A function is called with ", "choices": ["arguments", "items", "x"], "gold": 2},
    {"context": "Raise an", "choices": ["exception", "error", "list", "object"], "gold": 1},
]
TASK_YAML = """task: tiny3
custom_dataset: !function local_data.load
dataset_kwargs:
  file: tiny3.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{context}}"
doc_to_choice: "{{choices}}"
doc_to_target: "{{gold}}"
metric_list:
  - metric: acc
metadata:
  version: 1
"""


def make_task_dir(root: Path) -> Path:
    tasks = root / "tasks"
    tasks.mkdir()
    shutil.copy(TASKS_DIR / "local_data.py", tasks / "local_data.py")
    (tasks / "tiny3.yaml").write_text(TASK_YAML)
    (tasks / "tiny3.jsonl").write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    return tasks


def make_run(root: Path, seed: int = 0) -> Path:
    """A run directory as training leaves it: config.yaml, a checkpoint, the tokenizer, a curve row."""
    from transformers import PreTrainedTokenizerFast

    from harness.data.tokenizer import EOS_TOKEN, train_byte_level_bpe

    run = root / "run"
    text = ["The value of the module is a class. A function is called with arguments and raises an exception."] * 20
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=train_byte_level_bpe(text, 300), eos_token=EOS_TOKEN)
    tokenizer.save_pretrained(str(run / "tokenizer"))
    cfg = ModelConfig(arch="llama", d_model=32, n_layers=2, n_heads=2, vocab_size=len(tokenizer), max_seq_len=64)
    torch.manual_seed(seed)
    model = build_model(cfg)
    save_checkpoint(run / "checkpoints", STEP, {"step": STEP, "model": model.state_dict()}, keep_last=2)
    run.joinpath("config.yaml").write_text(OmegaConf.to_yaml({"model": OmegaConf.structured(cfg),
                                                              "train": {"seq_len": 64}}))
    run.joinpath("curve.jsonl").write_text(json.dumps({"step": STEP, "tokens": 384, "flops": 1.5e6, "loss": 5.0}) + "\n")
    return run


def expected_metrics(run: Path) -> dict[str, float]:
    """The MC metrics of ITEMS computed here: each sequence alone through the model, summed log-probs."""
    from transformers import AutoTokenizer

    from harness.eval.adapter import read_run_model_config

    tok = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    model = build_model(read_run_model_config(run))
    model.load_state_dict(torch.load(run / "checkpoints" / f"step_{STEP:08d}.pt", weights_only=True)["model"])
    model.eval()
    sums: dict[str, float] = {k: 0.0 for k in ("acc", "acc_norm", "logprob_correct", "p_correct", "p_correct_raw",
                                               "p_incorrect_raw")}
    for item in ITEMS:
        context = item["context"].rstrip(" ")
        lls = []
        for choice in item["choices"]:
            ctx = tok.encode(context, add_special_tokens=False)
            cont = tok.encode(" " * (len(item["context"]) - len(context)) + " " + choice, add_special_tokens=False)
            ids = torch.tensor([ctx + cont])
            with torch.no_grad():
                logp = F.log_softmax(model(ids[:, :-1])[0].float(), dim=-1)
            lls.append(sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont)))
        g = item["gold"]
        best = max(range(len(lls)), key=lambda c: lls[c])
        best_norm = max(range(len(lls)), key=lambda c: lls[c] / len(item["choices"][c]))
        total = sum(math.exp(v) for v in lls)
        sums["acc"] += best == g
        sums["acc_norm"] += best_norm == g
        sums["logprob_correct"] += lls[g]
        sums["p_correct"] += math.exp(lls[g]) / total
        sums["p_correct_raw"] += math.exp(lls[g])
        sums["p_incorrect_raw"] += total - math.exp(lls[g])
    out = {k: v / len(ITEMS) for k, v in sums.items()}
    out["error"] = 1 - out["acc"]
    out["p_incorrect"] = 1 - out["p_correct"]
    return out


@pytest.fixture
def tiny_run(tmp_path) -> tuple[Path, Path]:
    return make_run(tmp_path), make_task_dir(tmp_path)


def test_three_item_task_matches_numbers_computed_from_the_logits(tiny_run):
    run, tasks = tiny_run
    settings = EvalSettings(task_dirs=(str(tasks),), batch_size=2)  # batches of 2: padding is exercised
    assert evaluate_run(run, ["last"], ["tiny3"], settings, log=lambda _: None) == 1
    rows = read_evals(run / EVALS_FILE)
    got = {r["metric"]: r["value"] for r in rows}
    want = expected_metrics(run)
    assert set(got) == set(want)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-4, abs=1e-7), name
    assert all(r["step"] == STEP and r["tokens"] == 384 and r["flops"] == 1.5e6 and r["n"] == 3 and r["task"] == "tiny3"
               for r in rows)
    # The raw masses are not the normalized ones: these tiny models spread mass over the whole vocabulary.
    assert got["p_correct_raw"] < got["p_correct"]


def test_a_second_eval_of_the_same_step_and_task_writes_nothing(tiny_run):
    run, tasks = tiny_run
    settings = EvalSettings(task_dirs=(str(tasks),))
    evaluate_run(run, ["all"], ["tiny3"], settings, log=lambda _: None)
    before = (run / EVALS_FILE).read_text()
    assert evaluate_run(run, ["all"], ["tiny3"], settings, log=lambda _: None) == 0
    assert (run / EVALS_FILE).read_text() == before


def eval_cmd(run: Path, tasks: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "harness.eval", str(run), "--task-dir", str(tasks), *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def test_a_killed_eval_resumes_without_duplicate_rows(tiny_run):
    """SIGKILL while PassUntil samples word_repeat (after tiny3's block was written), then rerun."""
    run, tasks = tiny_run
    proc = subprocess.Popen(eval_cmd(run, tasks, "--tasks", "tiny3", "word_repeat", "--max-samples", "100000"),
                            cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    try:
        while not any(r["task"] == "tiny3" for r in read_evals(run / EVALS_FILE)):
            assert proc.poll() is None, "the eval ended before it could be killed"
            assert time.time() < deadline, "tiny3's rows never appeared"
            time.sleep(0.2)
        time.sleep(1.0)  # inside PassUntil's sampling now
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    first = read_evals(run / EVALS_FILE)
    assert {r["task"] for r in first} == {"tiny3"}  # no partial word_repeat block
    done = subprocess.run(eval_cmd(run, tasks, "--tasks", "tiny3", "word_repeat", "--max-samples", "2", "--limit", "3"),
                          cwd=ROOT, env=env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = read_evals(run / EVALS_FILE)
    keys = [(r["step"], r["task"], r["metric"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert rows[:len(first)] == first  # tiny3 was not evaluated again
    assert {r["metric"] for r in rows if r["task"] == "word_repeat"} >= {"pass_rate", "pass_rate_lo", "pass_rate_hi"}


def test_bad_task_and_step_are_usage_errors(tiny_run):
    run, tasks = tiny_run
    bad_task = subprocess.run(eval_cmd(run, tasks, "--tasks", "nope"), cwd=ROOT, env=env(), capture_output=True, text=True)
    assert bad_task.returncode == 2 and "unknown task" in bad_task.stderr and "tiny3" in bad_task.stderr
    bad_step = subprocess.run(eval_cmd(run, tasks, "--tasks", "tiny3", "--steps", "7"), cwd=ROOT, env=env(),
                              capture_output=True, text=True)
    assert bad_step.returncode == 2 and "available: [3]" in bad_step.stderr


def test_missing_lm_eval_names_the_install_command(monkeypatch):
    from harness.eval import EvalError, require_lm_eval

    monkeypatch.setitem(sys.modules, "lm_eval", None)  # what an environment without it looks like to import
    with pytest.raises(EvalError, match=r"pip install .*lm-eval==0\.4\.13"):
        require_lm_eval()


def test_collect_joins_the_last_eval(tiny_run):
    from harness.collect import collect_run
    from harness.eval.join import eval_columns

    run, tasks = tiny_run
    evaluate_run(run, ["last"], ["tiny3"], EvalSettings(task_dirs=(str(tasks),)), log=lambda _: None)
    run.joinpath("status.json").write_text(json.dumps({"state": "completed", "step": STEP, "final_val_loss": 4.0,
                                                        "tokens": 384}))
    rows = {r["metric"]: r["value"] for r in read_evals(run / EVALS_FILE)}
    row = collect_run(run)
    assert row["acc/tiny3"] == rows["acc"] and row["error/tiny3"] == rows["error"]
    assert row["p_correct/tiny3"] == rows["p_correct"] and row["eval_step/tiny3"] == STEP
    assert row["error"] == rows["error"] and row["loss"] == 4.0  # the gadre-error law's target and input
    # An eval of an earlier step than the final one: the columns join, `error` stays empty.
    assert "error" not in eval_columns(run, STEP + 10) and "acc/tiny3" in eval_columns(run, STEP + 10)


@pytest.mark.slow
def test_eval_tasks_hook_writes_rows_and_leaves_the_run_unchanged(train_env, tmp_path):
    plain, evald = tmp_path / "plain", tmp_path / "evald"
    assert run_train(train_env, f"run_dir={plain}").returncode == 0
    proc = run_train(train_env, f"run_dir={evald}", "train.eval_tasks=[pydoc_cloze,sequence_next]",
                     "train.eval_tasks_at=[10,20]", "train.eval_tasks_limit=5", "train.eval_tasks_max_samples=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # The evals (lm-eval seeds the global RNGs) leave every loss of the run bit for bit as it was.
    for key in ("loss", "val_loss", "grad_norm"):
        assert [r.get(key) for r in read_rows(plain)] == [r.get(key) for r in read_rows(evald)], key
    rows = read_evals(evald / EVALS_FILE)
    assert {(r["step"], r["task"]) for r in rows} == {(s, t) for s in (10, 20) for t in ("pydoc_cloze", "sequence_next")}
    assert all(r["n"] == 5 for r in rows)
    assert {r["tokens"] for r in rows if r["step"] == 20} == {read_rows(evald)[-1]["tokens"]}
    # Not part of the run's identity: both runs hash the same.
    from harness.identity import changed_fields

    saved = OmegaConf.to_container(OmegaConf.load(evald / "config.yaml"))
    plain_cfg = OmegaConf.to_container(OmegaConf.load(plain / "config.yaml"))
    assert saved["train"]["eval_tasks"] and not plain_cfg["train"]["eval_tasks"]
    from harness.config import RunConfig

    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(RunConfig), plain_cfg))
    assert changed_fields(saved, cfg) == {}


def test_rolling_loglikelihood_scores_every_token_once(tiny_run):
    """loglikelihood_rolling over a text longer than the context (64 tokens) equals the sum of
    per-token log-probs computed window by window here; a short text equals one direct pass."""
    from lm_eval.api.instance import Instance
    from transformers import AutoTokenizer

    from harness.eval.adapter import HarnessLM, read_run_model_config

    run, _ = tiny_run
    tok = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    model = build_model(read_run_model_config(run))
    model.load_state_dict(torch.load(run / "checkpoints" / f"step_{STEP:08d}.pt", weights_only=True)["model"])
    model.eval()
    lm = HarnessLM(model, tok, batch_size=3)
    short = "The value of the module is a class."
    ids = [tok.eos_token_id] + tok.encode(short, add_special_tokens=False)
    with torch.no_grad():
        logp = F.log_softmax(model(torch.tensor([ids[:-1]]))[0], dim=-1)
    direct = sum(float(logp[i, t]) for i, t in enumerate(ids[1:]))
    long_text = " ".join([short] * 12)
    assert len(tok.encode(long_text)) > 64
    req = lambda text: Instance("loglikelihood_rolling", {}, (text,), 0)  # noqa: E731
    got_short, got_long = lm.loglikelihood_rolling([req(short), req(long_text)])
    assert got_short == pytest.approx(direct, rel=1e-5)
    # Windows of 64 predicted tokens, each conditioned on the tokens just before it (at most 64 in context).
    tokens = [tok.eos_token_id] + tok.encode(long_text, add_special_tokens=False)
    total, start = 0.0, 1
    while start < len(tokens):
        end = min(start + 64, len(tokens))
        ctx_start = max(0, end - 65)
        window = tokens[ctx_start:end]
        with torch.no_grad():
            lp = F.log_softmax(model(torch.tensor([window[:-1]]))[0], dim=-1)
        for pos in range(start, end):
            total += float(lp[pos - ctx_start - 1, tokens[pos]])
        start = end
    assert got_long == pytest.approx(total, rel=1e-5)
