"""Export a run's checkpoint as a Hugging Face transformers model plus its tokenizer.

    python -m harness.export RUN_DIR OUT_DIR [--step N] [--overwrite]

Reads RUN_DIR/config.yaml (the model section), the newest checkpoint in RUN_DIR/checkpoints (or
step N), loaded with `weights_only=True`, and RUN_DIR/tokenizer. Writes OUT_DIR with
`save_pretrained` (the class harness/models/hf_convert.py maps the arch to: LlamaForCausalLM for
llama, GPT2LMHeadModel for gpt2, MixtralForCausalLM for moe where it can represent it; fp32), the
tokenizer, and `harness_export.json` (source run, step, arch). The directory is assembled under a
temporary name beside OUT_DIR and renamed into place, so OUT_DIR is either complete or absent.

Load it with `AutoModelForCausalLM.from_pretrained(OUT_DIR)` and `AutoTokenizer.from_pretrained(OUT_DIR)`.
Exit codes: 0 exported, 2 a usage error (the message names the path and the fix).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from harness.archs import ARCHS
from harness.checkpoint import list_checkpoints, load_checkpoint
from harness.config import ModelConfig

EXIT_USAGE = 2


class ExportError(ValueError):
    """The run directory or the request cannot be exported; the message names the path and fix."""


def exportable_archs() -> tuple[str, ...]:
    return tuple(name for name in ARCHS.names() if ARCHS.get(name).hf_export is not None)


def read_model_config(run_dir: Path) -> ModelConfig:
    config_file = run_dir / "config.yaml"
    if not run_dir.is_dir() or not config_file.is_file():
        raise ExportError(f"{run_dir} is not a run directory (no {config_file.name}); pass the run_dir a "
                          "training run wrote, e.g. runs/<name>")
    saved = OmegaConf.load(config_file)
    if "model" not in saved:
        raise ExportError(f"{config_file} has no model section; is {run_dir} a harness run directory?")
    try:
        model_cfg: ModelConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), saved.model))
    except OmegaConfBaseException as err:  # e.g. a config written by an older harness with fields since renamed
        raise ExportError(f"{config_file}: the model section does not fit this harness's ModelConfig ({err})") from None
    if model_cfg.arch not in exportable_archs():
        raise ExportError(f"{run_dir}: model.arch={model_cfg.arch!r} has no transformers export yet "
                          f"(supported: {', '.join(exportable_archs())}); add a mapping in "
                          "harness/models/hf_convert.py and name it in the arch's class in harness/archs.py")
    if model_cfg.vocab_size is None:
        raise ExportError(f"{config_file}: model.vocab_size is null; the run never started training")
    return model_cfg


def pick_checkpoint(run_dir: Path, step: int | None) -> tuple[int, Path]:
    directory = run_dir / "checkpoints"
    found = list_checkpoints(directory)
    if not found:
        raise ExportError(f"no checkpoint in {directory}; train the run first (checkpoints are written "
                          "every train.checkpoint_every steps and at the end)")
    if step is None:
        return found[-1]
    for s, path in found:
        if s == step:
            return s, path
    raise ExportError(f"no checkpoint for step {step} in {directory}; available steps: "
                      f"{', '.join(str(s) for s, _ in found)} (omit --step for the newest)")


def export(run_dir: Path, out_dir: Path, step: int | None = None, overwrite: bool = False) -> Path:
    """Write the transformers model and tokenizer of `run_dir`'s checkpoint to `out_dir`; returns it."""
    from transformers import AutoTokenizer

    from harness.models import build_model
    from harness.models.hf_convert import to_hf_model

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    model_cfg = read_model_config(run_dir)
    tokenizer_dir = run_dir / "tokenizer"
    if not tokenizer_dir.is_dir():
        raise ExportError(f"{tokenizer_dir} is missing; the run's tokenizer is saved there when training "
                          "starts (relaunch the run to write it)")
    if out_dir.exists() and not overwrite and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} already exists; choose a new OUT_DIR or pass --overwrite")
    step, path = pick_checkpoint(run_dir, step)

    state = load_checkpoint(path)  # weights_only=True
    model = build_model(model_cfg)
    model.load_state_dict(state["model"])
    try:
        hf_model = to_hf_model(model).eval()
    except ValueError as err:  # a configuration the transformers class cannot represent
        raise ExportError(f"{run_dir} (step {step}) cannot be exported: {err}") from None
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        hf_model.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / "harness_export.json").write_text(json.dumps({
            "run_dir": str(run_dir.resolve()), "step": step, "checkpoint": path.name, "arch": model_cfg.arch,
            "class": type(hf_model).__name__}, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
            os.replace(out_dir, old)
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.export",
                                     description="Export a run's checkpoint as a transformers model + tokenizer.")
    parser.add_argument("run_dir", type=Path, help="the run directory (holds config.yaml, checkpoints/, tokenizer/)")
    parser.add_argument("out_dir", type=Path, help="where to write the transformers checkpoint")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step to export (default: newest)")
    parser.add_argument("--overwrite", action="store_true", help="replace OUT_DIR if it exists")
    args = parser.parse_args(argv)
    try:
        out = export(args.run_dir, args.out_dir, step=args.step, overwrite=args.overwrite)
    except ExportError as err:
        print(f"export error: {err}", file=sys.stderr)
        return EXIT_USAGE
    info = json.loads((out / "harness_export.json").read_text())
    print(f"[harness] exported step {info['step']} of {args.run_dir} to {out} ({info['class']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
