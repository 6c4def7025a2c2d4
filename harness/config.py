"""Typed configuration: the schema of every run.

A run is six sections of typed dataclasses. `optim` and `schedule` are each one registered class
per variant (harness/optimizers.py, harness/schedules.py), chosen by their `name`; `model.arch`
names a registered arch (harness/archs.py). `to_run_config` types every section by its class, so a
YAML file in `conf/` or a command-line override that names an unknown key (or a field of another
schedule), or gives a value of the wrong type, fails before any compute with a `ConfigError` naming
the field. Semantic checks (ranges, choices, combinations) live in `validate()` methods, which raise
`ConfigError` naming the field and the fix.

This module imports no torch and nothing of harness.optim, harness.models or harness.fit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

from harness.archs import ARCHS, arch_of
from harness.checkpoint import checkpoint_step
from harness.checks import ConfigError
from harness.checks import one_of as _one_of
from harness.checks import require as _require
from harness.optimizers import OPTIMIZERS, AdamWConfig, OptimConfig
from harness.schedules import SCHEDULES, CosineSchedule, ScheduleConfig


@dataclass
class MupConfig:
    """Maximal-update parameterization (muP), applied by harness/models/mup.py; off by default.

    width_mult = model.d_model / base_width. With enabled=true (Adam rules of Tensor Programs V,
    table 8, as microsoft/mup implements them): hidden matrices start with std init_std/sqrt(width_mult)
    and train with LR lr/width_mult; the readout is scaled by output_mult/width_mult in the forward
    (readout="multiplier") or starts at zero with LR lr/width_mult (readout="zero_init"); attention
    logits use 1/head_dim (attn_scale="1/d") instead of 1/sqrt(head_dim); embeddings and vectors are
    unchanged (the embedding output is scaled by input_mult). weight_decay="width_scaled" multiplies the
    hidden matrices' weight decay by width_mult so lr*wd, the AdamW timescale, stays width-independent.
    """

    enabled: bool = False
    # d_model of the base model, at which muP and the standard parameterization coincide (up to
    # attn_scale and the multipliers); None is an error when enabled.
    base_width: Optional[int] = None
    readout: str = "multiplier"  # multiplier | zero_init
    attn_scale: str = "1/d"  # 1/d (muP) | 1/sqrt(d) (standard)
    input_mult: float = 1.0
    output_mult: float = 1.0
    weight_decay: str = "width_scaled"  # width_scaled | unchanged

    def validate(self, d_model: int, tie_embeddings: bool) -> None:
        _one_of(self.readout, "model.mup.readout", ("multiplier", "zero_init"))
        _one_of(self.attn_scale, "model.mup.attn_scale", ("1/d", "1/sqrt(d)"))
        _one_of(self.weight_decay, "model.mup.weight_decay", ("width_scaled", "unchanged"))
        _require(self.input_mult > 0, "model.mup.input_mult", "must be positive (1 is neutral)")
        _require(self.output_mult > 0, "model.mup.output_mult", "must be positive (1 is neutral)")
        if self.base_width is not None:
            _require(self.base_width > 0, "model.mup.base_width", "must be a positive integer (a d_model)")
        if not self.enabled:
            return
        _require(self.base_width is not None, "model.mup.base_width",
                 f"muP is enabled but has no base width; set it to the base model's d_model (e.g. {d_model})")
        _require(not (self.readout == "zero_init" and tie_embeddings), "model.mup.readout",
                 "zero_init would zero the tied token embedding; use readout=multiplier or "
                 "model.tie_embeddings=false")


@dataclass
class MoeConfig:
    """The routed experts of arch=moe (harness/models/moe.py): `model.moe.*`."""

    # Routed experts per layer, and how many each token uses.
    n_experts: int = 8
    top_k: int = 2
    # Hidden width of each (routed and shared) expert; None means model.ffn_dim. Fine-grained
    # experts: divide it by g and multiply n_experts and top_k by g (same active FLOPs).
    expert_ffn: Optional[int] = None
    # One always-on expert (DeepSeek-style) added to the routed output.
    shared_expert: bool = False
    # Router scores: softmax (Mixtral) or sigmoid (DeepSeek-V3); the top-k scores are renormalised
    # to sum to 1 and weight the experts' outputs.
    router_score: str = "softmax"
    # aux_loss: Switch load-balancing loss (x aux_loss_coef); aux_free: a per-expert bias added to
    # the scores for selection only, nudged after each step toward equal load (DeepSeek-V3); none:
    # neither. The router z-loss (x z_loss_coef, 0 disables) is independent of this.
    balance: str = "aux_loss"
    aux_loss_coef: float = 0.01
    z_loss_coef: float = 0.001
    # aux_free: bias step per optimizer step (bias += rate * sign(mean load - load)).
    bias_update_rate: float = 0.001

    def validate(self) -> None:
        _require(self.n_experts > 0, "model.moe.n_experts", "must be a positive integer")
        _require(0 < self.top_k <= self.n_experts, "model.moe.top_k",
                 f"must be in [1, model.moe.n_experts={self.n_experts}]")
        if self.expert_ffn is not None:
            _require(self.expert_ffn > 0, "model.moe.expert_ffn", "must be positive, or null for model.ffn_dim")
        _one_of(self.router_score, "model.moe.router_score", ("softmax", "sigmoid"))
        _one_of(self.balance, "model.moe.balance", ("aux_loss", "aux_free", "none"))
        for name in ("aux_loss_coef", "z_loss_coef", "bias_update_rate"):
            _require(getattr(self, name) >= 0, f"model.moe.{name}", "must be >= 0")


@dataclass
class ModelConfig:
    """Architecture of a decoder-only proxy; `arch` names a registered class in harness/archs.py
    (llama, gpt2, moe), which holds everything that differs between archs."""

    arch: str = "llama"
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    # Key/value heads for grouped-query attention (llama, moe); None means n_heads (plain MHA).
    n_kv_heads: Optional[int] = None
    # Hidden width of the MLP; None means the arch's default (4*d_model for gpt2, 8/3*d_model
    # rounded up to a multiple of `ffn_multiple_of` for SwiGLU archs).
    d_ff: Optional[int] = None
    ffn_multiple_of: int = 8
    # None: taken from the tokenizer when the run starts.
    vocab_size: Optional[int] = None
    # Context length (RoPE table / learned positions); null in a run config means train.seq_len.
    max_seq_len: Optional[int] = 256
    tie_embeddings: bool = False
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    # ---- mixture of experts (arch=moe only; null otherwise) ----
    moe: Optional[MoeConfig] = None
    # ---- muP (off by default): harness/models/mup.py ----
    mup: MupConfig = field(default_factory=MupConfig)

    def __post_init__(self) -> None:
        # An arch that needs the moe block and was given none takes MoeConfig's defaults, written
        # out so the saved config shows them.
        if self.moe is None and self.arch in ARCHS.names() and ARCHS.get(self.arch).uses_moe:
            self.moe = MoeConfig()

    def validate(self) -> None:
        arch = arch_of(self)  # an unknown arch fails here, listing the known ones
        _require(self.max_seq_len is not None, "model.max_seq_len",
                 "is null; in a run it is taken from train.seq_len, elsewhere set it")
        for name in ("d_model", "n_layers", "n_heads", "max_seq_len", "ffn_multiple_of"):
            _require(getattr(self, name) > 0, f"model.{name}", "must be a positive integer")
        _require(self.d_model % self.n_heads == 0, "model.d_model",
                 f"{self.d_model} is not divisible by model.n_heads={self.n_heads}; pick a multiple")
        if self.n_kv_heads is not None:
            _require(self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads == 0, "model.n_kv_heads",
                     f"must divide model.n_heads={self.n_heads}")
        if self.d_ff is not None:
            _require(self.d_ff > 0, "model.d_ff", "must be positive, or null for the default")
        if self.vocab_size is not None:
            _require(self.vocab_size > 0, "model.vocab_size", "must be positive, or null for the tokenizer's")
        arch.validate(self)
        self.mup.validate(self.d_model, self.tie_embeddings)

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_dim(self) -> int:
        return self.d_ff if self.d_ff is not None else arch_of(self).default_ffn_dim(self)

    @property
    def expert_ffn_dim(self) -> int:
        """Hidden width of each MoE expert (arch=moe)."""
        if self.moe is not None and self.moe.expert_ffn is not None:
            return self.moe.expert_ffn
        return self.ffn_dim


@dataclass
class SourceConfig:
    """One source of a data mixture (`data.sources[i]`): any kind `data.source` takes."""

    name: str = ""  # the key of its val_loss/<name> and tokens/<name> columns and of weight_schedule
    source: str = "embedded"
    # Sampling weight before the first weight_schedule switch (normalised over the sources); also
    # the share of this source in the tokenizer's training sample.
    weight: float = 1.0
    max_chars: Optional[int] = None
    hf_config: Optional[str] = None
    split: str = "train"
    text_field: str = "text"


@dataclass
class WeightPhase:
    """From optimizer step `step` on (inclusive), sample the sources with `weights` ({name: weight})."""

    step: int = 1
    weights: dict[str, float] = field(default_factory=dict)


@dataclass
class DataConfig:
    """Where text comes from and how it becomes tokens.

    `source`:
      - "embedded": English/technical text that ships with every Python install (pydoc topics and
        the standard library's sources); works offline with no download. "embedded:prose" is the
        pydoc topics alone (English), "embedded:code" the stdlib's .py files alone (Python).
      - "hf:<name>" (optionally with `hf_config`): a dataset from the Hugging Face hub.
      - "deb:<package>": text from an installed Debian package, e.g. "deb:dict-gcide" (harness/data/debian_text.py).
      - a local path or glob of .txt / .jsonl / .json / .parquet files.
    `tokenizer`: "bpe" trains a byte-level BPE of `vocab_size` on the training text (cached);
      anything else is a pretrained tokenizer name or path for `AutoTokenizer.from_pretrained`.
    `sources` (a mixture, harness/data/mixture.py): a list of {name, source, weight, ...}; when given,
      `source`/`max_chars`/`hf_config`/`split`/`text_field` above are unused, each source is tokenized
      with ONE tokenizer (a BPE trained on `tokenizer_chars` characters drawn from the sources by
      weight, or the pretrained `tokenizer`), holds out its own `val_tokens`, and each training row
      comes from one source drawn by weight, as a pure function of (seed, step). `weight_schedule`
      switches the weights at given steps (continued pre-training on another mix).
    """

    source: str = "embedded"
    hf_config: Optional[str] = None
    split: str = "train"
    text_field: str = "text"
    tokenizer: str = "bpe"
    vocab_size: int = 512
    # Cap on characters read from the source (None = all); keeps tiny runs tiny.
    max_chars: Optional[int] = None
    # Tokens held out as the fixed validation split (taken from the end of the token stream,
    # never trained on); per source for a mixture.
    val_tokens: int = 65536
    # Where token caches (memmap + manifest) and trained tokenizers live.
    cache_dir: str = "${oc.env:HARNESS_CACHE,${oc.env:HOME}/.cache/harness}"
    # ---- mixtures (empty: one source, as above; not part of the identity then) ----
    sources: list[SourceConfig] = field(default_factory=list)
    weight_schedule: list[WeightPhase] = field(default_factory=list)
    tokenizer_chars: int = 2_000_000

    def validate(self) -> None:
        _require(bool(self.source), "data.source", "must be 'embedded', 'hf:<name>' or a path/glob")
        _require(self.vocab_size >= 260, "data.vocab_size",
                 "a byte-level BPE needs at least 256 byte tokens plus specials; use >= 260")
        _require(self.val_tokens > 0, "data.val_tokens", "must be positive")
        if self.max_chars is not None:
            _require(self.max_chars > 0, "data.max_chars", "must be positive, or null for all text")
        self._validate_mixture()

    def _validate_mixture(self) -> None:
        names = [s.name for s in self.sources]
        for i, s in enumerate(self.sources):
            where = f"data.sources[{i}]"
            _require(bool(s.name) and "/" not in s.name, f"{where}.name",
                     "give each source a short name without '/' (it names the val_loss/<name> column)")
            _require(bool(s.source), f"{where}.source", "must be 'embedded', 'hf:<name>', 'deb:<pkg>' or a path")
            _require(s.weight >= 0, f"{where}.weight", "must be >= 0")
            if s.max_chars is not None:
                _require(s.max_chars > 0, f"{where}.max_chars", "must be positive, or null for all text")
        _require(len(set(names)) == len(names), "data.sources", f"names must be unique, got {names}")
        if self.sources:
            _require(sum(s.weight for s in self.sources) > 0, "data.sources",
                     "the weights sum to 0; give at least one source a positive weight")
            _require(self.tokenizer_chars > 0, "data.tokenizer_chars", "must be positive")
        _require(not self.weight_schedule or bool(self.sources), "data.weight_schedule",
                 "switches the weights of data.sources, which is empty; give data.sources")
        last = 0
        for i, phase in enumerate(self.weight_schedule):
            where = f"data.weight_schedule[{i}]"
            _require(phase.step > last, f"{where}.step",
                     f"must be >= 1 and increasing (previous {last}), got {phase.step}")
            last = phase.step
            _require(set(phase.weights) == set(names), f"{where}.weights",
                     f"give a weight for each source {names}, got {sorted(phase.weights)}")
            _require(all(w >= 0 for w in phase.weights.values()) and sum(phase.weights.values()) > 0,
                     f"{where}.weights", "must be >= 0 with a positive sum")


@dataclass
class DilocoConfig:
    """DiLoCo (Douillard et al. 2023; Charles et al. 2025), train.parallel=diloco (harness/diloco.py):
    `replicas` model copies each take `inner_steps` steps of the run's optimizer (optim.*, on the
    run's schedule) on their own share of the batch, then one outer step applies the averaged
    pseudo-gradient theta_outer - mean(theta_replica) to the outer model and every replica restarts
    from it. train.batch_size stays the GLOBAL batch (all replicas): each replica takes
    batch_size / replicas sequences per inner step, so tokens per step match data-parallel training."""

    replicas: int = 2
    inner_steps: int = 8  # H: inner steps between outer steps (also an outer step at the last step)
    outer_optimizer: str = "nesterov"  # nesterov (SGD with Nesterov momentum: the papers') | sgd
    outer_lr: float = 0.7  # Douillard et al.'s value; Charles et al. tune it per (M, N)
    outer_momentum: float = 0.9

    def validate(self, batch_size: int, micro_batch_size: Optional[int]) -> None:
        _require(self.replicas >= 1, "train.diloco.replicas", "must be a positive integer (M model replicas)")
        _require(self.inner_steps >= 1, "train.diloco.inner_steps", "must be a positive integer (H inner steps)")
        _one_of(self.outer_optimizer, "train.diloco.outer_optimizer", ("nesterov", "sgd"))
        _require(self.outer_lr > 0, "train.diloco.outer_lr", "must be positive (0.7 in DiLoCo; 1 with sgd and "
                 "momentum 0 is plain parameter averaging)")
        _require(0 <= self.outer_momentum < 1, "train.diloco.outer_momentum", "must be in [0, 1) (0.9 in DiLoCo)")
        _require(self.outer_optimizer != "nesterov" or self.outer_momentum > 0, "train.diloco.outer_momentum",
                 "nesterov needs momentum > 0; use outer_optimizer=sgd for an outer step without momentum")
        _require(batch_size % self.replicas == 0, "train.batch_size",
                 f"{batch_size} is not divisible by train.diloco.replicas={self.replicas}; under DiLoCo the "
                 "batch is global (replicas x per-replica batch): give a multiple of the replicas")
        if micro_batch_size is not None:
            per_replica = batch_size // self.replicas
            _require(per_replica % micro_batch_size == 0, "train.micro_batch_size",
                     f"{micro_batch_size} must divide the per-replica batch {per_replica} "
                     f"(train.batch_size / train.diloco.replicas)")


FUSED_CE_FIX = ("use train.fused_ce=none (with train.loss_chunk for a chunked loss), or install the gpu extra "
                "(pip install '.[gpu]') on a CUDA machine")


@dataclass
class PruneConfig:
    """Gradual magnitude pruning during pre-training, train.prune (harness/prune.py; off by default and
    then not part of the run's identity). The block linear weights (attention and MLP matrices; not the
    embedding, readout or norms) go from dense to `final_sparsity` between `start_frac` and `end_frac`
    of train.steps on Zhu & Gupta's (2017) cubic schedule, s(t) = final_sparsity * (1 - (1 - p)^3), p the
    fraction of the pruning window done; the masks are recomputed every `every` steps inside the window
    (and at its end), per matrix by magnitude, and the pruned weights are held at zero (their gradients
    masked before clipping, the weights zeroed after every optimizer step). Jin et al. 2025 ("The
    Journey Matters") find start 25% / end 75% of training near-optimal: the defaults."""

    enabled: bool = False
    final_sparsity: float = 0.5
    start_frac: float = 0.25
    end_frac: float = 0.75
    every: int = 10

    def window(self, steps: int) -> tuple[int, int]:
        """(first, last) step of the pruning window: dense up to `first`, at final_sparsity from `last` on."""
        return round(self.start_frac * steps), round(self.end_frac * steps)

    def validate(self, steps: int) -> None:
        if not self.enabled:
            return
        _require(0 < self.final_sparsity < 1, "train.prune.final_sparsity",
                 f"got {self.final_sparsity}; give the fraction of block weights pruned at the end, in (0, 1)")
        _require(0 <= self.start_frac < self.end_frac <= 1, "train.prune.start_frac",
                 f"start_frac={self.start_frac}, end_frac={self.end_frac}: need 0 <= start_frac < end_frac <= 1 "
                 "(fractions of train.steps; 0.25 and 0.75 in Jin et al. 2025)")
        _require(self.every >= 1, "train.prune.every", "must be a positive number of steps between mask updates")
        first, last = self.window(steps)
        _require(last > first, "train.prune.end_frac",
                 f"the pruning window (steps {first}..{last} of train.steps={steps}) is empty; widen "
                 "start_frac..end_frac or train more steps")


@dataclass
class TrainConfig:
    steps: int = 300
    seq_len: int = 128
    # Sequences per optimizer step (global, across data-parallel ranks).
    batch_size: int = 16
    # Sequences per forward/backward; batch_size must be a multiple of micro_batch_size * world size.
    # None means batch_size / world size (no accumulation).
    micro_batch_size: Optional[int] = None
    seed: int = 0
    grad_clip: float = 1.0
    device: str = "auto"  # auto | cpu | cuda
    # auto: bf16 autocast on CUDA, fp32 on CPU (no bf16 hardware there; it is 3x slower).
    precision: str = "auto"  # auto | fp32 | bf16
    compile: bool = False
    # Tokens per chunk of the readout + cross-entropy (harness/models/chunked_ce.py: the full fp32
    # logits never exist; the loss runs inside the model's forward, so inside torch.compile); 0:
    # the whole logits, the loss outside the model. Not part of the run's identity (same numbers).
    loss_chunk: int = 0
    # The readout + cross-entropy as one fused kernel that never writes the logits: "liger"
    # (liger-kernel's fused linear cross-entropy, CUDA + triton; harness/models/fused_ce.py, the loss
    # inside the forward, loss_chunk rows per chunk when set) or "none" (torch). A way of computing,
    # not part of the run's identity.
    fused_ce: str = "none"  # none | liger
    # Fetch each step's loss and gradient norm to the host (and check them) every this many steps,
    # all at once, and at checkpoint / eval / last steps: the GPU is not stalled by a sync every step.
    # Every step still gets its curve row. Not part of the run's identity.
    fetch_every: int = 1
    # Deterministic kernels and no TF32, for bit-identical reruns and resumes.
    deterministic: bool = False
    # CPU threads for torch (0: leave torch's default).
    num_threads: int = 0
    # Evaluate val loss at steps 1, 2, 4, 8, ... (log-spaced), every `eval_every` steps, around
    # schedule phase boundaries, and at the last step.
    eval_every: int = 100
    # The fixed validation set: this many windows of seq_len tokens, the same for every run on the
    # same data and seq_len (independent of batch size and world size, so runs compare).
    eval_sequences: int = 64
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    # Parallelism: "none" (single process), "ddp" / "fsdp" (under torchrun), or "diloco" (train.diloco:
    # replicas as torchrun ranks, or simulated in one process when there are fewer ranks than replicas).
    parallel: str = "none"
    diloco: DilocoConfig = field(default_factory=DilocoConfig)
    # Gradual magnitude pruning (sparse pre-training, harness/prune.py); off: not part of the identity.
    prune: PruneConfig = field(default_factory=PruneConfig)
    # Signals that make the run checkpoint at the end of the current step and exit (preemption).
    preempt_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    # After such a stop inside a Slurm job, requeue it with `scontrol requeue` (it then resumes).
    requeue: bool = False
    # Steps at which a checkpoint is saved and kept forever (never rotated out by keep_checkpoints),
    # e.g. the branch points of a cooldown study. They are also eval steps.
    checkpoint_at: list[int] = field(default_factory=list)
    # Start from another run's checkpoint file, `<parent run dir>/checkpoints/step_XXXXXXXX.pt`, or
    # `<parent run dir>@<step>` (that step's checkpoint) or `<parent run dir>` (its newest checkpoint),
    # both rewritten to the file form when the config is built (harness/branch.py), when this run has
    # no checkpoint of its own. init_mode "resume": a branch, continuing the parent's model, optimizer,
    # RNG and step (< train.steps) under this run's schedule, its curve starting with the parent's rows;
    # "weights": the model weights only, from step 0 with this run's schedule and data;
    # init_optimizer=true with it also takes the parent's optimizer state (Adam moments and step
    # counts; this run's LR and hyperparameters).
    init_from: Optional[str] = None
    init_mode: str = "resume"  # resume | weights
    init_optimizer: bool = False
    # Downstream evals during training (harness/eval, issue 17): task names of harness/eval/tasks,
    # run on the model at the steps `eval_tasks_at` (empty: the last step) into RUN_DIR/evals.jsonl,
    # on the first `eval_tasks_limit` items of each task (null: all), PassUntil drawing at most
    # `eval_tasks_max_samples` samples per item. Off by default; none of these is part of the run's
    # identity (evals read the model, never change it).
    eval_tasks: list[str] = field(default_factory=list)
    eval_tasks_at: list[int] = field(default_factory=list)
    eval_tasks_limit: Optional[int] = None
    eval_tasks_max_samples: int = 256

    def __post_init__(self) -> None:
        if self.init_from is not None:
            self.init_from = checkpoint_file_of(self.init_from)

    def validate(self) -> None:
        for name in ("steps", "seq_len", "batch_size", "eval_every", "eval_sequences", "checkpoint_every",
                     "keep_checkpoints"):
            _require(getattr(self, name) > 0, f"train.{name}", "must be a positive integer")
        if self.micro_batch_size is not None:
            _require(self.micro_batch_size > 0 and self.batch_size % self.micro_batch_size == 0,
                     "train.micro_batch_size", f"must divide train.batch_size={self.batch_size}")
        _require(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables clipping)")
        _require(self.fetch_every >= 1, "train.fetch_every", "must be >= 1 (1: every step)")
        _require(self.loss_chunk >= 0, "train.loss_chunk", "must be >= 0 (tokens per chunk; 0: whole logits)")
        _one_of(self.fused_ce, "train.fused_ce", ("none", "liger"))
        # An explicit CPU run is refused here; whether `auto` finds a GPU and the kernels import is checked
        # where the run starts (harness/runtime.py), so a sweep can be planned on a login node without one.
        _require(self.fused_ce != "liger" or self.device != "cpu", "train.fused_ce",
                 f"liger needs a CUDA GPU but train.device=cpu; {FUSED_CE_FIX}")
        _one_of(self.device, "train.device", ("auto", "cpu", "cuda"))
        _one_of(self.precision, "train.precision", ("auto", "fp32", "bf16"))
        _one_of(self.parallel, "train.parallel", ("none", "ddp", "fsdp", "diloco"))
        if self.parallel == "diloco":
            self.diloco.validate(self.batch_size, self.micro_batch_size)
        self.prune.validate(self.steps)
        _require(not self.prune.enabled or self.parallel == "none", "train.prune.enabled",
                 f"pruning runs single-process only (train.parallel=none), not under train.parallel={self.parallel}; "
                 "set train.parallel=none or train.prune.enabled=false")
        _require(self.num_threads >= 0, "train.num_threads", "must be >= 0")
        import signal

        for name in self.preempt_signals:
            _require(name in signal.Signals.__members__, "train.preempt_signals",
                     f"{name!r} is not a signal name; use names like SIGTERM, SIGUSR1")
        for step in self.checkpoint_at:
            _require(1 <= step <= self.steps, "train.checkpoint_at",
                     f"step {step} is outside the run; give steps in [1, train.steps={self.steps}]")
        self._validate_init_from()
        for step in self.eval_tasks_at:
            _require(1 <= step <= self.steps, "train.eval_tasks_at",
                     f"step {step} is outside the run; give steps in [1, train.steps={self.steps}]")
        _require(self.eval_tasks_limit is None or self.eval_tasks_limit > 0, "train.eval_tasks_limit",
                 "must be a positive number of items, or null for all")
        _require(self.eval_tasks_max_samples > 0, "train.eval_tasks_max_samples", "must be >= 1")
        _require(not self.eval_tasks or self.parallel != "fsdp", "train.eval_tasks",
                 "runs on rank 0's whole model, which FSDP shards; evaluate the checkpoints afterwards "
                 "(python -m harness.eval RUN_DIR --steps all --tasks ...)")

    def _validate_init_from(self) -> None:
        _one_of(self.init_mode, "train.init_mode", ("resume", "weights"))
        if self.init_from is None:
            return
        step = checkpoint_step(self.init_from)
        _require(step is not None, "train.init_from",
                 f"{self.init_from!r} is not a checkpoint file, nor a run directory with checkpoints; give "
                 "<parent run dir>/checkpoints/step_XXXXXXXX.pt, <parent run dir>@<step> or <parent run dir>")
        _require(not self.init_optimizer or self.init_mode == "weights", "train.init_optimizer",
                 "applies to init_mode=weights (init_mode=resume always takes the optimizer state)")
        _require(not (self.init_optimizer and self.parallel == "diloco"), "train.init_optimizer",
                 "is not supported under train.parallel=diloco (the run's optimizer there is the outer one); "
                 "start a DiLoCo run from the parent's weights with init_optimizer=false")
        if self.init_mode == "resume":
            _require(step < self.steps, "train.init_from",
                     f"branches at step {step}, which must be smaller than train.steps={self.steps}; "
                     "raise train.steps or branch from an earlier checkpoint")


def checkpoint_file_of(init_from: str) -> str:
    """`train.init_from` in its file form: `<dir>@<step>` -> `<dir>/checkpoints/step_<step>.pt`; a run
    directory -> its newest checkpoint file; a checkpoint file (or anything else) unchanged (validate()
    then names what is wrong)."""
    import os
    import re

    from harness.checkpoint import checkpoint_path, latest_checkpoint

    if checkpoint_step(init_from) is not None:
        return init_from
    at = re.fullmatch(r"(.+)@(\d+)", init_from)
    if at:
        from pathlib import Path

        return str(checkpoint_path(Path(at.group(1)) / "checkpoints", int(at.group(2))))
    if os.path.isdir(init_from):
        from pathlib import Path

        newest = latest_checkpoint(Path(init_from) / "checkpoints")
        return str(newest) if newest is not None else init_from
    return init_from


@dataclass
class LoggingConfig:
    wandb: bool = False
    wandb_project: str = "harness"
    wandb_entity: Optional[str] = None
    # offline writes the run under the run directory and syncs later with `wandb sync`.
    wandb_mode: str = "offline"  # online | offline
    progress: bool = True
    # Render a PNG of the curve at the end of the run.
    plot: bool = True

    def validate(self) -> None:
        _one_of(self.wandb_mode, "logging.wandb_mode", ("online", "offline"))


@dataclass
class RunConfig:
    """Top-level config: one training run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    # One registered class per optimizer / schedule (harness/optimizers.py, harness/schedules.py),
    # chosen by optim.name / schedule.name.
    optim: OptimConfig = field(default_factory=AdamWConfig)
    schedule: ScheduleConfig = field(default_factory=CosineSchedule)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # The run directory. Relaunching with the same directory resumes the run. A `{hash}` token is
    # replaced by the hash of the fields that change the run's numbers (harness/identity.py).
    run_dir: str = "runs/${name}"
    name: str = "default"

    def __post_init__(self) -> None:
        if self.model.max_seq_len is None:  # the model presets for CPU-sized runs leave it to the train preset
            self.model.max_seq_len = self.train.seq_len

    def validate(self) -> None:
        for part in (self.model, self.data, self.optim, self.schedule, self.train, self.logging):
            part.validate()
        _require(self.train.seq_len <= self.model.max_seq_len, "train.seq_len",
                 f"{self.train.seq_len} exceeds model.max_seq_len={self.model.max_seq_len}; "
                 "raise model.max_seq_len or shorten train.seq_len")
        self.schedule.check_run(self.train.steps)
        _require(not self.train.prune.enabled or not arch_of(self.model).uses_moe, "train.prune.enabled",
                 f"pruning supports dense archs only, not model.arch={self.model.arch} (its experts' live count "
                 "per token is not defined here); use a dense arch or set train.prune.enabled=false")


# The sections of a run and their classes; optim and schedule pick theirs by name.
SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
    "logging": LoggingConfig,
}
NAMED_SECTIONS = {"optim": (OPTIMIZERS, AdamWConfig), "schedule": (SCHEDULES, CosineSchedule)}


def schedule_config(name: str, **fields: Any) -> ScheduleConfig:
    """A validated schedule config: `schedule_config("cosine", warmup_steps=10, min_lr_ratio=0.1)`.
    A field the schedule does not have is a ConfigError naming it."""
    cfg = SCHEDULES.create(name, **fields)
    cfg.validate()
    return cfg


def optim_config(name: str, **fields: Any) -> OptimConfig:
    """A validated optimizer config: `optim_config("muon", lr=1e-2, momentum=0.95)`."""
    cfg = OPTIMIZERS.create(name, **fields)
    cfg.validate()
    return cfg


RUN_DIR_RESOLVER = "harness_run_dir"


def default_run_dir(single_run_dir: str) -> str:
    """The run directory when the user gives none: `single_run_dir` (conf/config.yaml: runs/<name>)
    for a single run, and `<hydra.sweep.dir>/{hash}` for each job of a Hydra multirun, so the jobs of
    a sweep get one directory each (named by the identity hash, harness/identity.py) and a relaunch
    into the same sweep dir finds, and skips, the runs that finished. An explicit `run_dir=...`
    replaces this interpolation and always wins."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():  # composed outside a Hydra app (e.g. the ladder's compose)
        return single_run_dir
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return single_run_dir
    return f"{hydra_cfg.sweep.dir}/{{hash}}"


def register_configs() -> None:
    """Give Hydra the run's skeleton as `base_run` (conf/config.yaml lists it first).

    Each section is an open node, so Hydra passes every key and value of conf/<group>/*.yaml and of
    the command line through; `to_run_config` then types each section by its class (for optim and
    schedule the class its `name` selects) and turns an unknown field or a wrong type into a
    ConfigError naming it, before any compute, the same way for Hydra and for plain dicts.
    """
    from hydra.core.config_store import ConfigStore
    from omegaconf import OmegaConf

    # conf/config.yaml's `run_dir: ${harness_run_dir:runs/${name}}`; replace=True: registering twice is fine.
    OmegaConf.register_new_resolver(RUN_DIR_RESOLVER, default_run_dir, replace=True)
    skeleton = OmegaConf.create({**{group: {} for group in SECTIONS}, "run_dir": RunConfig.run_dir,
                                 "name": RunConfig.name})
    for group in SECTIONS:
        OmegaConf.set_struct(skeleton[group], False)
    ConfigStore.instance().store(name="base_run", node=skeleton)


def _section_class(group: str, node: Any) -> type:
    if group not in NAMED_SECTIONS:
        return SECTIONS[group]
    registry, default = NAMED_SECTIONS[group]
    name = node.get("name") if node is not None and hasattr(node, "get") else None
    return registry.get(name if name is not None else default().name)


def _describe(err: Exception, group_classes: dict[str, type]) -> str:
    """An OmegaConf merge/conversion error as `<full key>: <what is wrong>`."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = getattr(err, "full_key", None) or "config"
    message = str(getattr(err, "msg", None) or err).splitlines()[0]
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        group = key.split(".")[0]
        cls = group_classes.get(group)
        if cls is not None:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            hint = NAMED_SECTIONS[group][0].owners_hint(key.split(".")[-1]) if group in NAMED_SECTIONS \
                else "check the spelling"
            return f"{key}: not a field of {cls.__name__} (its fields: {known}); {hint}"
        return f"{key}: unknown key; the top-level keys are {', '.join([*SECTIONS, 'run_dir', 'name'])}"
    return f"{key}: {message}"


def to_run_config(cfg: Any) -> RunConfig:
    """Turn a composed Hydra config, a dict or a RunConfig into a validated RunConfig.

    Merges `cfg` over the defaults of each section's class and validates; does nothing else (the
    run directory's `{hash}` is resolved by harness.identity.resolve_run_dir).
    """
    run_cfg = typed_run_config(cfg)
    run_cfg.validate()
    return run_cfg


def typed_run_config(cfg: Any) -> RunConfig:
    """`cfg` typed section by section as a RunConfig, without the semantic checks of `validate()`
    (for partial configs that a caller completes, e.g. the ladder's base). Unknown keys, wrong
    types and a preset's unset `???` are still ConfigErrors."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(cfg, RunConfig):
        cfg = OmegaConf.structured(cfg)
    # An untyped copy; interpolations stay and resolve against the typed tree below.
    raw = OmegaConf.create(OmegaConf.to_container(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)))
    # A preset's `???` must be given: merged as is, it would silently keep the schema's default.
    missing = sorted(OmegaConf.missing_keys(raw))
    if missing:
        raise ConfigError(f"{missing[0]}: required but not set (the preset leaves it ???); "
                          f"give it on the command line, e.g. {missing[0]}=...")
    classes = {group: _section_class(group, raw.get(group)) for group in SECTIONS}
    schema = OmegaConf.create({**{g: OmegaConf.structured(c) for g, c in classes.items()},
                               "run_dir": RunConfig.run_dir, "name": RunConfig.name})
    OmegaConf.set_struct(schema, True)
    try:
        merged = OmegaConf.merge(schema, raw)
        sections = {group: OmegaConf.to_object(merged[group]) for group in SECTIONS}
        run_cfg = RunConfig(**sections, run_dir=merged.run_dir, name=merged.name)
    except OmegaConfBaseException as err:
        raise ConfigError(_describe(err, classes)) from None
    return run_cfg
