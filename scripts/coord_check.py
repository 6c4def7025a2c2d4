"""Coord check for muP: mean |x| of the embedding output, each block's attention and MLP output and
the logits over the first steps of Adam, across widths, with and without muP.

Under muP every curve is roughly flat in width; under the standard parameterization (SP) the block
outputs and logits grow with width after the first update (microsoft/mup, nanoGPT-mup). Writes
coord_check.json (every value: parameterization -> width -> quantity -> per step) and
coord_check.png (rows SP / muP, one panel per quantity, x = width, one line per step).

    python scripts/coord_check.py                                  # widths 64..1024, 10 steps
    python scripts/coord_check.py --widths 32 64 128 256 --seeds 2 # CPU-friendly
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from harness.archs import ARCHS
from harness.config import ModelConfig, MupConfig, optim_config
from harness.models.coord_check import coord_check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024],
                    help="d_model values; the first is muP's base width")
    ap.add_argument("--arch", default="llama", choices=ARCHS.names())
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4, help="fixed, so head_dim grows with width")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=32,
                    help="keep it small next to the widths: with V >~ width the mean |logit| is dominated by "
                         "the part of the readout update not aligned with h, which falls as 1/sqrt(width) "
                         "under muP until width >> V")
    ap.add_argument("--readout", default="multiplier", choices=["multiplier", "zero_init"], help="muP readout rule")
    ap.add_argument("--seeds", type=int, default=1, help="values are averaged over this many seeds")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out-dir", default="coord_check")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    data: dict[str, dict[int, dict[str, list[float]]]] = {}
    for name, enabled in (("SP", False), ("muP", True)):
        data[name] = {}
        for width in args.widths:
            runs = []
            for seed in range(args.seeds):
                tokens = torch.randint(0, args.vocab, (args.batch_size, args.seq_len + 1),
                                       generator=torch.Generator().manual_seed(seed))
                torch.manual_seed(seed)
                model_cfg = ModelConfig(arch=args.arch, d_model=width, n_layers=args.layers, n_heads=args.heads,
                                        vocab_size=args.vocab, max_seq_len=args.seq_len,
                                        mup=MupConfig(enabled=enabled, base_width=args.widths[0],
                                                        readout=args.readout))
                optim_cfg = optim_config("adamw", lr=args.lr, weight_decay=0.0)
                runs.append(coord_check(model_cfg, optim_cfg, tokens, args.steps))
            data[name][width] = {k: [sum(r[k][s] for r in runs) / len(runs) for s in range(args.steps)]
                                 for k in runs[0]}
            print(f"{name:4s} width {width:5d}: " + "  ".join(
                f"{k} {v[-1]:.3g}" for k, v in data[name][width].items()), flush=True)

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "coord_check.json").write_text(json.dumps({"args": vars(args), "mean_abs": data}, indent=1))
    lo, hi = args.widths[0], args.widths[-1]
    print(f"\nmean |x| at step {args.steps}, width {hi} over width {lo}:")
    for name, by_width in data.items():
        print(f"  {name:4s} " + "  ".join(f"{k} {by_width[hi][k][-1] / by_width[lo][k][-1]:.3g}"
                                         for k in by_width[lo]))
    plot(data, args, out / "coord_check.png")
    print(f"wrote {out / 'coord_check.json'} and {out / 'coord_check.png'}")


def plot(data: dict, args: argparse.Namespace, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    quantities = list(next(iter(data["SP"].values())))
    fig, axes = plt.subplots(2, len(quantities), figsize=(2.6 * len(quantities), 5.2), squeeze=False)
    colors = plt.cm.viridis([s / max(1, args.steps - 1) for s in range(args.steps)])
    for row, name in enumerate(("SP", "muP")):
        for col, q in enumerate(quantities):
            ax = axes[row][col]
            for s in range(args.steps):
                ax.plot(args.widths, [data[name][w][q][s] for w in args.widths], color=colors[s],
                        marker=".", label=f"step {s + 1}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{name}: {q}", fontsize=9)
            if row == 1:
                ax.set_xlabel("width (d_model)")
            if col == 0:
                ax.set_ylabel("mean |x|")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(f"coord check: {args.arch}, {args.layers} layers, Adam lr {args.lr}, muP base width {args.widths[0]}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
