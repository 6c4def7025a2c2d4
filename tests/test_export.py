"""`python -m harness.export`: a trained run becomes a transformers checkpoint that reproduces our
logits, loads its tokenizer, and refuses bad requests with a clear error.

The two training runs also exercise the shipped optimizer configs end to end (llama with
optim=muon, tied gpt2 with optim=lion).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_train


def export_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.export", *map(str, args)]


@pytest.mark.parametrize("arch, overrides", [
    ("llama", ["optim=muon"]),
    ("gpt2", ["model.arch=gpt2", "model.n_kv_heads=null", "model.tie_embeddings=true", "optim=lion"]),
    ("moe", ["model=moe_tiny"]),
])
def test_export_reproduces_logits(train_env, tmp_path, capsys, arch, overrides):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness.checkpoint import load_checkpoint
    from harness.export import read_model_config
    from harness.models import build_model

    run_dir, out = tmp_path / "run", tmp_path / "hf"
    proc = run_train(train_env, f"run_dir={run_dir}", *overrides)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((run_dir / "status.json").read_text())
    vocab = read_model_config(run_dir).vocab_size
    # ln(vocab) is the loss of a uniform guess: below it, the model has learned something.
    assert status["state"] == "completed" and status["final_loss"] < math.log(vocab)

    proc = subprocess.run(export_cmd(run_dir, out, "--step", 15), cwd=ROOT, env=train_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    info = json.loads((out / "harness_export.json").read_text())
    assert info["step"] == 15 and info["arch"] == arch
    assert not list(tmp_path.glob(".hf.*"))  # no temp dir left behind

    ours = build_model(read_model_config(run_dir))
    ours.load_state_dict(load_checkpoint(run_dir / "checkpoints" / "step_00000015.pt")["model"])
    ours.eval()
    hf_model = AutoModelForCausalLM.from_pretrained(str(out)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    assert type(hf_model).__name__ == {"llama": "LlamaForCausalLM", "gpt2": "GPT2LMHeadModel",
                                       "moe": "MixtralForCausalLM"}[arch]
    assert hf_model.dtype == torch.float32
    text = ["def main(argv):\n    return parse(argv)", "The quick brown fox jumps over the lazy dog."]
    ids = [tokenizer(t)["input_ids"][:32] for t in text]
    assert min(len(i) for i in ids) >= 8 and max(max(i) for i in ids) < ours.config.vocab_size
    for input_ids in ids:
        x = torch.tensor([input_ids])
        with torch.no_grad():
            expected = ours(x)
            got = hf_model(input_ids=x).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)

    # The newest checkpoint by default; an existing OUT_DIR is refused unless --overwrite. In process,
    # through the `main(argv)` that `python -m harness.export` exits with (the run above was its subprocess).
    from harness.export import main

    capsys.readouterr()
    assert main([str(run_dir), str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "--overwrite" in err
    assert main([str(run_dir), str(out), "--overwrite"]) == 0, capsys.readouterr().err
    assert json.loads((out / "harness_export.json").read_text())["step"] == 20


def test_export_errors_name_the_path_and_fix(tmp_path):
    from harness.export import ExportError, export, main

    not_a_run = tmp_path / "nothing"
    not_a_run.mkdir()
    assert main([str(not_a_run), str(tmp_path / "out")]) == 2
    with pytest.raises(ExportError, match="not a run directory"):
        export(not_a_run, tmp_path / "out")

    run_dir = tmp_path / "run"
    (run_dir / "tokenizer").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("model:\n  arch: llama\n  d_model: 32\n  n_layers: 1\n  n_heads: 2\n"
                                         "  vocab_size: 300\n  max_seq_len: 16\n")
    with pytest.raises(ExportError, match=r"no checkpoint in .*checkpoints; train the run first"):
        export(run_dir, tmp_path / "out")

    from harness.checkpoint import save_checkpoint

    save_checkpoint(run_dir / "checkpoints", 5, {"step": 5}, keep_last=2)
    save_checkpoint(run_dir / "checkpoints", 10, {"step": 10}, keep_last=2)
    with pytest.raises(ExportError, match="no checkpoint for step 7 .*available steps: 5, 10"):
        export(run_dir, tmp_path / "out", step=7)

    (run_dir / "config.yaml").write_text("model:\n  arch: gpt3\n")
    with pytest.raises(ExportError, match="model.arch='gpt3' has no transformers export"):
        export(run_dir, tmp_path / "out")
    assert not (tmp_path / "out").exists()
