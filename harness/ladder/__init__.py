"""Model ladder and isoFLOP planner: sizes -> runs (configs, budgets, LR schedules), without training.

    python -m harness.ladder dry-run [--sizes d64 d128 d256] [--recipe default|step-law]
                                     [--tokens-per-param 20] [--budgets 1e15 3e15 ...]
                                     [--lr-rule power|step-law] [--step-law-json FIT.json]
                                     [--device-tflops 989 --mfu 0.4 | --cpu-tokens-per-s 2e4]
                                     [--out DIR] [--emit-overrides] [--extra OVERRIDE ...]

Modules, one job each:
  sizes.py      size specs: `d<W>`, `<W>x<L>`, named sizes -> width, depth, heads
  rules.py      the rules (batch, LR, weight decay, warmup) as small frozen objects, registered
                by name
  recipe.py     `LadderRecipe`: a named, frozen set of rules (plus tokens per parameter and the
                schedule) and the built-in recipes (`RECIPES`); its docstring states every rule
  plan.py       `LadderConfig`, `plan_ladder` / `plan_isoflop` -> `PlannedRun`s, each with
                `.run_config()` and `.overrides()` (derived from it: one source)
  overrides.py  a RunConfig as the Hydra overrides that compose to it on conf/config.yaml
  render.py     the dry run: table, plan.csv, overrides.txt, lr_schedules.png
  cli.py        the command line (`python -m harness.ladder`)

The dry run prints the plan, writes plan.csv, overrides.txt and lr_schedules.png to --out and
creates no run directory; each line of overrides.txt launches one run with
`python -m harness.train <line>`.
"""

from harness.ladder.errors import LadderError
from harness.ladder.plan import (ALWAYS_STATED, LADDER_ARCHS, LadderConfig, PlannedRun, model_config,
                                 plan_isoflop, plan_ladder, plan_run)
from harness.ladder.recipe import RECIPES, LadderRecipe, get_recipe
from harness.ladder.rules import (BATCH_RULES, LR_RULES, STEP_LAW_BATCH, STEP_LAW_LR, WARMUP_RULES,
                                  WEIGHT_DECAY_RULES, ConstantWeightDecay, ParamTokensWarmup, Power, PowerLawLR,
                                  PowerLinesWeightDecay, StepLawBatch, StepLawLR, make_rule, register_rule)
from harness.ladder.render import dry_run, estimate_seconds, plan_table
from harness.ladder.sizes import NAMED_SIZES, Size, size_spec

__all__ = ["ALWAYS_STATED", "BATCH_RULES", "LADDER_ARCHS", "LR_RULES", "NAMED_SIZES", "RECIPES", "STEP_LAW_BATCH",
           "STEP_LAW_LR", "WARMUP_RULES", "WEIGHT_DECAY_RULES", "ConstantWeightDecay", "LadderConfig", "LadderError",
           "LadderRecipe", "ParamTokensWarmup", "PlannedRun", "Power", "PowerLawLR", "PowerLinesWeightDecay", "Size",
           "StepLawBatch", "StepLawLR", "dry_run", "estimate_seconds", "get_recipe", "make_rule", "model_config", "register_rule",
           "plan_isoflop", "plan_ladder", "plan_run", "plan_table", "size_spec"]
