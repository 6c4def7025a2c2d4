"""train.fused_ce=liger against the torch loss: the same loss and gradients, within a stated tolerance.

Copies of one small LLaMA with the same weights and batch: the reference computes the loss from its
whole logits (loss_chunk 0, fused_ce none: the loop's default path), the candidate with liger-kernel's
fused linear cross-entropy in chunks of --loss-chunk rows (harness/models/fused_ce.py). Each runs
forward and backward of loss / 2 (a grad_output != 1, as micro-batch accumulation gives), untied and
tied readout. Passes when, for both, |loss difference| / loss and, for every parameter,
||grad difference|| / ||reference grad|| are <= --tol; exit status 1 otherwise.

CUDA (when present): bf16 autocast, tolerance 1e-2 (both paths round the logits and their gradient
to bf16; a wrong scale or a missing chunk is off by O(1)). The torch path in fp32 is printed too,
as the scale of bf16's own error. `--compile` adds the untied candidate under torch.compile (the
fused loss outside the graph: one graph break, at the readout). CPU: the kernels run in Triton's interpreter, fp32, tolerance 1e-5; set
TRITON_INTERPRET=1 in the environment (it must be set before triton is imported).

    python scripts/check_fused_ce.py [--compile]                      # CUDA
    TRITON_INTERPRET=1 python scripts/check_fused_ce.py --device cpu  # CPU, slow kernels, tiny model
"""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Optional

import torch

from harness.config import ModelConfig
from harness.models import build_model

SHAPES = {  # (model, batch, loss_chunk): several chunks of rows, a vocabulary no power of 2
    "cuda": (ModelConfig(arch="llama", d_model=256, n_layers=2, n_heads=4, vocab_size=8000, max_seq_len=512), 8, 1024),
    "cpu": (ModelConfig(arch="llama", d_model=32, n_layers=1, n_heads=2, vocab_size=300, max_seq_len=16), 4, 16),
}


def loss_and_grads(model: torch.nn.Module, runner: torch.nn.Module, ids: torch.Tensor, targets: torch.Tensor,
                   autocast_dtype: Optional[torch.dtype]) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast(ids.device.type, dtype=autocast_dtype or torch.float32, enabled=autocast_dtype is not None):
        loss = runner(ids, targets=targets)
    (loss / 2).backward()
    return loss.item(), {name: p.grad.detach().float().clone() for name, p in model.named_parameters()}


def relative_errors(candidate: tuple[float, dict[str, torch.Tensor]],
                    reference: tuple[float, dict[str, torch.Tensor]]) -> tuple[float, float, str]:
    """|loss difference| / loss, and the worst parameter's ||grad difference|| / ||grad|| with its name."""
    loss_err = abs(candidate[0] - reference[0]) / abs(reference[0])
    worst = max(((torch.linalg.vector_norm(candidate[1][n] - g) / torch.linalg.vector_norm(g).clamp_min(1e-30)).item(), n)
                for n, g in reference[1].items())
    return loss_err, worst[0], worst[1]


def check(device: torch.device, tied: bool, compile_candidate: bool, tol: float) -> bool:
    cfg, batch, loss_chunk = SHAPES[device.type]
    cfg = copy.deepcopy(cfg)
    cfg.tie_embeddings = tied
    autocast_dtype = torch.bfloat16 if device.type == "cuda" else None
    torch.manual_seed(0)
    reference = build_model(cfg).to(device)
    candidate = copy.deepcopy(reference)
    candidate.fused_ce, candidate.loss_chunk = "liger", loss_chunk
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.vocab_size, (batch, cfg.max_seq_len + 1), generator=gen).to(device)
    ids, targets = tokens[:, :-1], tokens[:, 1:]

    ref = loss_and_grads(reference, reference, ids, targets, autocast_dtype)
    runner = torch.compile(candidate) if compile_candidate else candidate
    got = loss_and_grads(candidate, runner, ids, targets, autocast_dtype)
    loss_err, grad_err, worst = relative_errors(got, ref)
    ok = loss_err <= tol and grad_err <= tol
    name = f"{'tied' if tied else 'untied'}{', compiled' if compile_candidate else ''}"
    print(f"liger vs torch ({name}, {autocast_dtype or torch.float32}, {batch * cfg.max_seq_len} rows in chunks "
          f"of {loss_chunk}): loss {got[0]:.6f} vs {ref[0]:.6f}, rel. loss error {loss_err:.2e}, worst rel. "
          f"grad error {grad_err:.2e} ({worst}); tolerance {tol:g}: {'ok' if ok else 'FAILED'}")
    if autocast_dtype is not None:  # the scale of bf16's own error: the torch path against itself in fp32
        fp32_err = relative_errors(ref, loss_and_grads(reference, reference, ids, targets, None))
        print(f"  (torch bf16 vs torch fp32: rel. loss error {fp32_err[0]:.2e}, worst rel. grad error "
              f"{fp32_err[1]:.2e} ({fp32_err[2]}))")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also run the untied liger model under torch.compile")
    parser.add_argument("--tol", type=float, default=None, help="override the tolerance (1e-2 CUDA bf16, 1e-5 CPU fp32)")
    args = parser.parse_args()
    device = torch.device(args.device)
    tol = args.tol if args.tol is not None else (1e-2 if device.type == "cuda" else 1e-5)
    cases = [(False, False), (True, False)] + ([(False, True)] if args.compile else [])  # (tied, compiled)
    results = [check(device, tied, compiled, tol) for tied, compiled in cases]
    print("fused_ce check:", "ok" if all(results) else "FAILED")
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
