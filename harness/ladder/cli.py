"""`python -m harness.ladder dry-run`: flags -> a recipe and a LadderConfig -> a plan -> the dry run.

`--recipe NAME` picks a built-in recipe (harness/ladder/recipe.py); the other rule flags change
one part of it (`--lr-rule`, `--lr-ref/--n-ref/--lr-exponent`, `--step-law-json`, `--power-scheduler-json`,
`--tokens-per-param`, `--param-count`, `--max-batch`, `--schedule`). A flag left out keeps the
recipe's value.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

from harness.config import ConfigError
from harness.ladder import __doc__ as PACKAGE_DOC
from harness.ladder.errors import LadderError
from harness.ladder.plan import LADDER_ARCHS, LadderConfig, plan_isoflop, plan_ladder
from harness.ladder.recipe import PARAM_COUNTS, RECIPES, LadderRecipe, get_recipe
from harness.ladder.recipe import __doc__ as RECIPE_DOC
from harness.ladder.rules import LR_RULES, PowerLawLR, make_rule
from harness.ladder.render import dry_run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.ladder", description=PACKAGE_DOC, epilog=RECIPE_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("dry-run", help="print the plan and plot the LR schedules; trains nothing",
                       epilog=RECIPE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", nargs="+", default=["d64", "d128", "d256"], help="d<W>, <W>x<L> or a named size")
    p.add_argument("--budgets", nargs="+", type=float, default=None,
                   help="isoFLOP budgets (training FLOPs); each size gets D = C / FLOPs-per-token")
    p.add_argument("--recipe", default="default", choices=tuple(RECIPES), help="the named rules to plan with")
    # Rule flags: None keeps the recipe's value.
    p.add_argument("--tokens-per-param", type=float, default=None, help="D = this x N (default recipe: 20)")
    p.add_argument("--param-count", choices=PARAM_COUNTS, default=None, help="the N of the rules")
    p.add_argument("--schedule", default=None, help="LR schedule name (default recipe: cosine)")
    p.add_argument("--lr-rule", choices=tuple(LR_RULES), default=None)
    p.add_argument("--lr-ref", type=float, default=None, help="power rule: LR at --n-ref parameters (3e-3)")
    p.add_argument("--n-ref", type=float, default=None, help="power rule: reference N (1e6)")
    p.add_argument("--lr-exponent", type=float, default=None, help="power rule: lr ∝ N^-exponent (1/3)")
    p.add_argument("--power-scheduler-json", type=Path, default=None,
                   help="a fitted Power Scheduler (`python -m harness.fit powersched --out FILE`: a, b, with "
                        "batch_unit sequences, tokens_unit tokens): schedule=power with those power_a / power_b and "
                        "a final 10%% cooldown; the LR rule's peak becomes the cap lr_max")
    p.add_argument("--step-law-json", type=Path, default=None,
                   help="a fitted Step Law: JSON {'lr': {coefficient, exponent_N, exponent_D}, "
                        "'batch': {coefficient, exponent_D}, 'batch_unit': 'tokens'} (what `python -m harness.fit "
                        "steplaw --out FILE` writes); sets the LR and batch rules. N is the recipe's param count "
                        "(non-embedding by default), D and B in tokens")
    p.add_argument("--max-batch", type=int, default=None, help="batch rule: most sequences per step (1024)")
    # What to plan.
    p.add_argument("--arch", default="llama", help=f"one of {', '.join(LADDER_ARCHS)}")
    p.add_argument("--vocab-size", type=int, default=512)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--min-steps", type=int, default=50, help="isoFLOP: skip sizes with fewer steps")
    p.add_argument("--run-root", default="runs/ladder", help="run_dir of each run is RUN_ROOT/<name>")
    p.add_argument("--prefix", default="ladder")
    # The dry run.
    p.add_argument("--device-tflops", type=float, default=None, help="peak TFLOP/s of the device (H100 bf16: 989)")
    p.add_argument("--mfu", type=float, default=0.4)
    p.add_argument("--cpu-tokens-per-s", type=float, default=None, help="measured training tokens/s (CPU)")
    p.add_argument("--out", type=Path, default=Path("ladder_plan"))
    p.add_argument("--emit-overrides", action="store_true", help="print one Hydra override line per run")
    p.add_argument("--extra", nargs="*", default=[], help="overrides appended to every run (e.g. data=tinystories)")
    p.add_argument("--no-data-check", action="store_true",
                   help="do not prepare the data to count its unique tokens (no repetition warning)")
    return parser


def recipe_from_args(args: argparse.Namespace) -> LadderRecipe:
    """The --recipe with each given rule flag applied: a built-in recipe if the rules are one, else
    '<name> (modified)'."""
    base = get_recipe(args.recipe)
    recipe = base
    if args.step_law_json is not None:
        if args.lr_rule not in (None, "step-law"):
            raise LadderError(f"--step-law-json sets the step-law LR rule; drop --lr-rule {args.lr_rule}")
        recipe = recipe.with_step_law(json.loads(args.step_law_json.read_text()))
    elif args.lr_rule is not None and args.lr_rule != recipe.lr.name:
        recipe = replace(recipe, lr=make_rule("lr", args.lr_rule))
    power = {k: v for k, v in (("lr_ref", args.lr_ref), ("n_ref", args.n_ref), ("exponent", args.lr_exponent))
             if v is not None}
    if power:
        if not isinstance(recipe.lr, PowerLawLR):
            raise LadderError(f"--lr-ref/--n-ref/--lr-exponent: only for the power LR rule; this plan uses "
                              f"{recipe.lr.name}. Add --lr-rule power or drop them")
        recipe = replace(recipe, lr=replace(recipe.lr, **power))
    if args.max_batch is not None:
        if not hasattr(recipe.batch, "max_batch"):
            raise LadderError(f"--max-batch: the {recipe.batch.name} batch rule has no max_batch")
        recipe = replace(recipe, batch=replace(recipe.batch, max_batch=args.max_batch))
    changes: dict[str, Any] = {k: v for k, v in (("tokens_per_param", args.tokens_per_param),
                                                  ("param_count", args.param_count), ("schedule", args.schedule))
                               if v is not None}
    recipe = replace(recipe, **changes)
    if getattr(args, "power_scheduler_json", None) is not None:
        if args.schedule not in (None, "power"):
            raise LadderError(f"--power-scheduler-json sets schedule=power; drop --schedule {args.schedule}")
        recipe = recipe.with_power_scheduler(json.loads(args.power_scheduler_json.read_text()))
    for named in RECIPES.values():  # e.g. --lr-rule step-law is the step-law recipe
        if replace(recipe, name=named.name) == named:
            return named
    return replace(recipe, name=f"{base.name} (modified)")


def main(argv: Sequence[str] | None = None) -> int:
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    args = build_parser().parse_args(argv)
    try:
        recipe = recipe_from_args(args)
        cfg = LadderConfig(recipe=recipe, arch=args.arch, vocab_size=args.vocab_size, seq_len=args.seq_len,
                           min_steps=args.min_steps, run_root=args.run_root, prefix=args.prefix)
        if args.budgets:
            runs, skipped = plan_isoflop(args.budgets, args.sizes, cfg)
            title = f"isoFLOP plan: budgets {', '.join(f'{b:.1e}' for b in args.budgets)}"
        else:
            runs, skipped = plan_ladder(args.sizes, cfg), []
            title = f"ladder plan: D = {recipe.tokens_per_param:g} x N ({recipe.param_count})"
    except (LadderError, ValueError, KeyError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in skipped:
        print(f"skipped {note}")
    if not runs:
        print("error: no run left in the plan. Fix: lower --min-steps or raise --budgets.", file=sys.stderr)
        return 2
    print(recipe.describe())
    try:
        dry_run(runs, args.out, title=title, device_tflops=args.device_tflops, mfu=args.mfu,
                cpu_tokens_per_s=args.cpu_tokens_per_s, extra=args.extra, emit_overrides=args.emit_overrides,
                check_data=not args.no_data_check)
    except (ConfigError, HydraException, OmegaConfBaseException) as e:  # --extra that does not compose, bad data
        print(f"error: {e}. Fix: check the --extra overrides", file=sys.stderr)
        return 2
    return 0
