"""Shared fixtures: a tiny, fast training config and a helper to launch real training processes."""

from __future__ import annotations

import os

# numpy's BLAS threads fight each other (and the training subprocesses) on a 2-core machine; the
# fitting tests run 7x faster single-threaded. Must be set before numpy is first imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import subprocess
import time
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A run that takes about a second of compute: tiny LLaMA, small BPE, a slice of the embedded text.
TINY = [
    "model=llama_tiny",
    "train=tiny",
    "schedule=cosine",
    "schedule.warmup_steps=2",
    "data.max_chars=300000",
    "data.vocab_size=300",
    "data.val_tokens=4096",
    "logging.progress=false",
    "logging.plot=false",
]


@pytest.fixture(scope="session")
def harness_cache(tmp_path_factory) -> Path:
    """One token/tokenizer cache for the whole session, so the BPE is trained once."""
    return tmp_path_factory.mktemp("harness_cache")


@pytest.fixture
def train_env(harness_cache, tmp_path) -> dict[str, str]:
    return training_env(harness_cache, tmp_path / "hf_home")


def training_env(harness_cache: Path, hf_home: Path) -> dict[str, str]:
    """The environment of a training subprocess: the session's token cache, offline, a private HF home."""
    env = dict(os.environ)
    env.update({
        "HARNESS_CACHE": str(harness_cache),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(hf_home),
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def train_cmd(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "harness.train", *TINY, *overrides]


def run_train(env: dict[str, str], *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(train_cmd(*overrides), cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def read_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "curve.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def wait_for_rows(path: Path, n: int, proc: subprocess.Popen, timeout: float = 240.0) -> None:
    """Poll until the curve file holds n rows (the run is then past its first steps)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"training ended before it could be killed:\n{proc.stderr.read()}")
        if path.exists() and sum(1 for _ in open(path)) >= n:
            return
        time.sleep(0.005)
    raise AssertionError("training did not reach the kill point in time")


def logits_vs_transformers(cfg, vocab: int, seq: int):
    """Build our model from `cfg` (seed 0), convert it to its transformers class, and return
    (model, input_ids, our logits, transformers' logits) on random tokens."""
    import torch

    from harness.models import build_model
    from harness.models.hf_convert import to_hf_model

    torch.manual_seed(0)
    model = build_model(cfg).eval()
    hf_model = to_hf_model(model, attn_implementation="eager").eval()
    input_ids = torch.randint(0, vocab, (3, seq))
    with torch.no_grad():
        return model, input_ids, model(input_ids), hf_model(input_ids=input_ids).logits



# ---- public data from other projects (not committed; docs/DATA.md) -----------------------------
# Looked up by harness/fit/data_dir.py: $HARNESS_DATA, else <repo root>/../shared/data. A test that
# needs a dataset carries `@needs_data(NAME)` (or `pytestmark = needs_data(NAME)`) and is skipped,
# with a reason naming the missing directory and where the files come from, when it is absent.


def load_script(name: str):
    """scripts/<name>.py as a module (the scripts folder is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def needs_data(*names: str) -> pytest.MarkDecorator:
    from harness.fit.data_dir import DataMissing, dataset

    missing = []
    for name in names:
        try:
            dataset(name)
        except DataMissing as e:
            missing.append(str(e))
    return pytest.mark.skipif(bool(missing), reason=" ".join(missing))


# ---- the session's single-node Slurm cluster (tests/slurm_helpers.py), for every test module ----
from slurm_helpers import slurm_conf, slurm_env  # noqa: E402,F401  (fixtures, session-scoped)


# `python -m harness.experiment` commands that train nothing. They run in this process by default, through
# the `main(argv)` that the module's __main__ exits with: a fresh interpreter costs ~4 s of CPU (torch,
# transformers, Hydra) and these commands are called ~100 times. `run` and `launch` keep the real
# subprocess: the jobs they start write to the launcher's file descriptors, which the tests read.
IN_PROCESS_COMMANDS = frozenset({"plan", "status", "report"})


def run_experiment(env: dict[str, str], *args: str, timeout: float = 900,
                   in_process: bool | None = None) -> subprocess.CompletedProcess:
    """`python -m harness.experiment ARGS` from the repository root, output captured. In this process
    (`in_process`, default: the command trains nothing) or in a subprocess (with `timeout`)."""
    if in_process is None:
        in_process = args[0] in IN_PROCESS_COMMANDS
    if in_process:
        return _experiment_in_process(env, args)
    return subprocess.run([sys.executable, "-m", "harness.experiment", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _experiment_in_process(env: dict[str, str], args: tuple[str, ...]) -> subprocess.CompletedProcess:
    """What the subprocess would give: its exit code, stdout and stderr, under `env` and cwd ROOT
    (the environment is swapped wholesale, as a subprocess gets it, and restored after)."""
    import contextlib
    import io
    import traceback

    from harness.experiment.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exit_:  # argparse; sys.exit("message")
                code = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
                if isinstance(exit_.code, str):
                    print(exit_.code, file=sys.stderr)
            except Exception:  # what the interpreter does with an uncaught exception
                traceback.print_exc()
                code = 1
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        os.chdir(saved_cwd)
    return subprocess.CompletedProcess(["harness.experiment", *args], code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def module_env(harness_cache, tmp_path_factory) -> dict[str, str]:
    """An environment for experiment subprocesses: the session's token cache (each BPE is trained once
    per session, not per module; the cache's directories are written atomically), a private HF home,
    offline."""
    env = dict(os.environ)
    env.update({"HARNESS_CACHE": str(harness_cache), "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path_factory.mktemp("hf_home")),
                "TOKENIZERS_PARALLELISM": "false", "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"})
    return env


# ---- parallel runs (pytest-xdist, `-n 2 --dist loadgroup` in scripts/test.sh) --------------------
# loadgroup sends the tests of one xdist_group to one worker and spreads the rest one by one. Two kinds
# of tests must stay together, so they are grouped here rather than marked by hand (new test files get
# the same treatment):
#   - the Slurm tests share ONE cluster per session (tests/slurm_helpers.py): a second worker would
#     start it too and stop it under the first one's jobs when its session ends;
#   - tests sharing an expensive module-scoped fixture of their module (a trained grid, a sweep):
#     split over two workers, each would train it.


def xdist_group_of(item: pytest.Item) -> str | None:
    if item.get_closest_marker("slurm") is not None or "slurm_conf" in item.fixturenames:
        return "slurm"
    module_file = item.nodeid.split("::")[0]
    for name in item.fixturenames:  # the whole closure: fixtures of fixtures too
        defs = item._fixtureinfo.name2fixturedefs.get(name, ())
        # Cheap module fixtures (conftest's module_env, an autouse environment patch) need no group.
        if defs and defs[-1].scope == "module" and defs[-1].baseid == module_file and not defs[-1]._autouse:
            return Path(module_file).stem
    return None


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    loadgroup = getattr(config.option, "loadgroup", False)  # set on xdist's workers under --dist loadgroup
    for item in items:
        group = xdist_group_of(item)
        if group is None:
            continue
        item.add_marker(pytest.mark.xdist_group(group))
        if loadgroup and hasattr(item, "_id"):
            # xdist 3.8 tells the scheduler an item's group by renaming it `<nodeid>@<group>` through
            # `item._nodeid`, which pytest 9 no longer reads (it keeps a NodeId in `item._id`): without
            # this every test is its own group. Same rename, where pytest 9 reads it.
            from _pytest.nodeid import NodeId

            item._id = NodeId.parse(f"{item.nodeid}@{group}")
