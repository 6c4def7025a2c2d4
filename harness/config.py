"""Typed configuration: the schema of every run.

These dataclasses are registered in Hydra's ConfigStore (see `register_configs`), so a YAML file in
`conf/` or a command-line override that names an unknown key, or gives a value of the wrong type,
fails before any compute. Semantic checks (ranges, choices, combinations) live in `validate()`
methods, which raise `ConfigError` naming the field and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Optional


class ConfigError(ValueError):
    """A config value is wrong; the message names the field and how to fix it."""


def _require(cond: bool, field_name: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field_name}: {message}")


def _one_of(value: str, field_name: str, choices: tuple[str, ...]) -> None:
    _require(value in choices, field_name, f"got {value!r}; choose one of {', '.join(choices)}")


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
class ModelConfig:
    """Architecture of a decoder-only proxy.

    `arch="llama"`: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases.
    `arch="gpt2"`: LayerNorm, GELU MLP, learned absolute positions, biases.
    `arch="moe"`: the llama block with its MLP replaced by a token-choice top-k mixture of SwiGLU
      experts (dropless), see harness/models/moe.py; the `n_experts` / `moe_*` fields apply only here.
    """

    arch: str = "llama"
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    # Key/value heads for grouped-query attention (llama only); None means n_heads (plain MHA).
    n_kv_heads: Optional[int] = None
    # Hidden width of the MLP; None means 4*d_model for gpt2 and 8/3*d_model rounded up to a
    # multiple of `ffn_multiple_of` for llama (so SwiGLU has about the FLOPs of a 4x GELU MLP).
    d_ff: Optional[int] = None
    ffn_multiple_of: int = 8
    # None: taken from the tokenizer when the run starts.
    vocab_size: Optional[int] = None
    max_seq_len: int = 256
    tie_embeddings: bool = False
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    init_std: float = 0.02
    # ---- mixture of experts (arch=moe only) ----
    # Routed experts per layer, and how many each token uses.
    n_experts: int = 8
    moe_top_k: int = 2
    # Hidden width of each (routed and shared) expert; None means ffn_dim. Fine-grained experts:
    # divide it by g and multiply n_experts and moe_top_k by g (same active FLOPs).
    moe_expert_ffn: Optional[int] = None
    # One always-on expert (DeepSeek-style) added to the routed output.
    moe_shared_expert: bool = False
    # Router scores: softmax (Mixtral) or sigmoid (DeepSeek-V3); the top-k scores are renormalised
    # to sum to 1 and weight the experts' outputs.
    moe_router_score: str = "softmax"
    # aux_loss: Switch load-balancing loss (x moe_aux_loss_coef); aux_free: a per-expert bias added
    # to the scores for selection only, nudged after each step toward equal load (DeepSeek-V3);
    # none: neither. The router z-loss (x moe_z_loss_coef, 0 disables) is independent of this.
    moe_balance: str = "aux_loss"
    moe_aux_loss_coef: float = 0.01
    moe_z_loss_coef: float = 0.001
    # aux_free: bias step per optimizer step (bias += rate * sign(mean load - load)).
    moe_bias_update_rate: float = 0.001
    # ---- muP (off by default): harness/models/mup.py ----
    mup: MupConfig = field(default_factory=MupConfig)

    def validate(self) -> None:
        _one_of(self.arch, "model.arch", ("llama", "gpt2", "moe"))
        for name in ("d_model", "n_layers", "n_heads", "max_seq_len", "ffn_multiple_of"):
            _require(getattr(self, name) > 0, f"model.{name}", "must be a positive integer")
        _require(self.d_model % self.n_heads == 0, "model.d_model",
                 f"{self.d_model} is not divisible by model.n_heads={self.n_heads}; pick a multiple")
        _require((self.d_model // self.n_heads) % 2 == 0 or self.arch == "gpt2", "model.n_heads",
                 "RoPE needs an even head dimension (d_model / n_heads)")
        if self.n_kv_heads is not None:
            _require(self.arch != "gpt2", "model.n_kv_heads",
                     "grouped-query attention is only in arch=llama/moe; set it to null for gpt2")
            _require(self.n_kv_heads > 0 and self.n_heads % self.n_kv_heads == 0, "model.n_kv_heads",
                     f"must divide model.n_heads={self.n_heads}")
        if self.d_ff is not None:
            _require(self.d_ff > 0, "model.d_ff", "must be positive, or null for the default")
        if self.vocab_size is not None:
            _require(self.vocab_size > 0, "model.vocab_size", "must be positive, or null for the tokenizer's")
        self._validate_moe()
        self.mup.validate(self.d_model, self.tie_embeddings)

    def _validate_moe(self) -> None:
        if self.arch != "moe":
            for f in fields(self):
                if (f.name == "n_experts" or f.name.startswith("moe_")) and getattr(self, f.name) != f.default:
                    raise ConfigError(f"model.{f.name}: only used by arch=moe (this is arch={self.arch}); "
                                      "remove it or set model.arch=moe")
            return
        _require(self.n_experts > 0, "model.n_experts", "must be a positive integer")
        _require(0 < self.moe_top_k <= self.n_experts, "model.moe_top_k",
                 f"must be in [1, model.n_experts={self.n_experts}]")
        if self.moe_expert_ffn is not None:
            _require(self.moe_expert_ffn > 0, "model.moe_expert_ffn", "must be positive, or null for ffn_dim")
        _one_of(self.moe_router_score, "model.moe_router_score", ("softmax", "sigmoid"))
        _one_of(self.moe_balance, "model.moe_balance", ("aux_loss", "aux_free", "none"))
        for name in ("moe_aux_loss_coef", "moe_z_loss_coef", "moe_bias_update_rate"):
            _require(getattr(self, name) >= 0, f"model.{name}", "must be >= 0")

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads if self.n_kv_heads is not None else self.n_heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def ffn_dim(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.arch == "gpt2":
            return 4 * self.d_model
        m = self.ffn_multiple_of
        raw = int(8 * self.d_model / 3)
        return m * ((raw + m - 1) // m)

    @property
    def expert_ffn_dim(self) -> int:
        """Hidden width of each MoE expert (arch=moe)."""
        return self.moe_expert_ffn if self.moe_expert_ffn is not None else self.ffn_dim


@dataclass
class DataConfig:
    """Where text comes from and how it becomes tokens.

    `source`:
      - "embedded": English/technical text that ships with every Python install (pydoc topics and
        the standard library's sources); works offline with no download.
      - "hf:<name>" (optionally with `hf_config`): a dataset from the Hugging Face hub.
      - a local path or glob of .txt / .jsonl / .json / .parquet files.
    `tokenizer`: "bpe" trains a byte-level BPE of `vocab_size` on the training text (cached);
      anything else is a pretrained tokenizer name or path for `AutoTokenizer.from_pretrained`.
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
    # never trained on).
    val_tokens: int = 65536
    # Where token caches (memmap + manifest) and trained tokenizers live.
    cache_dir: str = "${oc.env:HARNESS_CACHE,${oc.env:HOME}/.cache/harness}"

    def validate(self) -> None:
        _require(bool(self.source), "data.source", "must be 'embedded', 'hf:<name>' or a path/glob")
        _require(self.vocab_size >= 260, "data.vocab_size",
                 "a byte-level BPE needs at least 256 byte tokens plus specials; use >= 260")
        _require(self.val_tokens > 0, "data.val_tokens", "must be positive")
        if self.max_chars is not None:
            _require(self.max_chars > 0, "data.max_chars", "must be positive, or null for all text")


@dataclass
class OptimConfig:
    """The optimizer and how parameters are routed to it (see harness/optim/optimizers.py).

    name: adamw | adam | muon | lion | sgd. Muon updates 2-D hidden matrices and AdamW (betas, eps)
    everything else. Every parameter role except those in `no_decay_roles` gets `weight_decay`.
    """

    name: str = "adamw"
    lr: float = 3e-3
    # adamw / adam / muon's AdamW part: (beta1, beta2). lion: (interpolation beta1, momentum beta2).
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    weight_decay: float = 0.1
    # Parameter roles that get no weight decay: any of embedding, hidden, readout, vector.
    no_decay_roles: list[str] = field(default_factory=lambda: ["vector"])
    # Momentum (and Nesterov) of sgd and of muon's matrices (muon: 0.95 and true in conf/optim/muon.yaml).
    momentum: float = 0.9
    nesterov: bool = False
    # Muon: base LR of the matrices (None: optim.lr), Newton-Schulz steps, and torch's per-matrix LR
    # scaling: match_rms_adamw (0.2*sqrt(max(fan_out, fan_in)), so one LR fits Muon and AdamW) or
    # original (Keller Jordan's sqrt(max(1, fan_out/fan_in)), usually with muon_lr ~ 0.02).
    muon_lr: Optional[float] = None
    muon_ns_steps: int = 5
    muon_adjust_lr: str = "match_rms_adamw"
    # None: fused kernels on CUDA (adamw, adam, muon's AdamW part), foreach elsewhere.
    fused: Optional[bool] = None

    def validate(self) -> None:
        from harness.optim.optimizers import OPTIMIZERS  # the registry: new optimizers register there

        _one_of(self.name, "optim.name", tuple(OPTIMIZERS))
        _require(self.lr > 0, "optim.lr", "must be positive")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "optim.betas",
                 "must be two numbers in [0, 1), e.g. [0.9, 0.95]")
        _require(self.eps > 0, "optim.eps", "must be positive")
        _require(self.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
        roles = ("embedding", "hidden", "readout", "vector")
        for role in self.no_decay_roles:
            _require(role in roles, "optim.no_decay_roles", f"got {role!r}; list some of {', '.join(roles)}")
        _require(0 <= self.momentum < 1, "optim.momentum", "must be in [0, 1), e.g. 0.9")
        _require(not (self.nesterov and self.momentum == 0), "optim.nesterov",
                 "Nesterov needs optim.momentum > 0; set optim.nesterov=false or a momentum")
        if self.muon_lr is not None:
            _require(self.muon_lr > 0, "optim.muon_lr", "must be positive, or null for optim.lr")
        _require(self.muon_ns_steps > 0, "optim.muon_ns_steps", "must be a positive integer, e.g. 5")
        _one_of(self.muon_adjust_lr, "optim.muon_adjust_lr", ("match_rms_adamw", "original"))
        _require(not (self.fused and self.name == "lion"), "optim.fused",
                 "lion has no fused kernel; set optim.fused=null")


@dataclass
class ScheduleConfig:
    """Learning-rate multiplier as a pure function of the step (see harness/optim/schedules.py).

    name: constant | cosine | linear | wsd | wsds | power. All have a linear warmup of `warmup_steps`.
    """

    name: str = "cosine"
    warmup_steps: int = 0
    # Final LR as a fraction of the peak (cosine, linear, wsd cooldowns).
    min_lr_ratio: float = 0.1
    # WSD: fraction of the total steps spent in the cooldown, and its shape.
    decay_fraction: float = 0.2
    cooldown: str = "linear"
    # Power scheduler (Shen et al. 2024): lr = min(peak, a * lr_scale_beta * n^b), n in tokens.
    power_a: float = 4.6
    power_b: float = -0.51
    # Power: optional final decay (exponential, as in the paper) over this fraction of steps.
    power_decay_fraction: float = 0.0
    # WSD-S (Wen et al. 2024): the steps at which each cooldown ends; after each one the LR jumps
    # back to the peak and training continues from the decayed weights. Each cycle cools down over
    # `decay_fraction` of its own length. The last entry must equal train.steps.
    wsds_cycle_ends: list[int] = field(default_factory=list)

    def validate(self) -> None:
        _one_of(self.name, "schedule.name", ("constant", "cosine", "linear", "wsd", "wsds", "power"))
        _one_of(self.cooldown, "schedule.cooldown", ("linear", "sqrt", "cosine", "exp"))
        _require(self.warmup_steps >= 0, "schedule.warmup_steps", "must be >= 0")
        _require(0 <= self.min_lr_ratio <= 1, "schedule.min_lr_ratio", "must be in [0, 1]")
        _require(0 <= self.decay_fraction <= 1, "schedule.decay_fraction", "must be in [0, 1]")
        _require(0 <= self.power_decay_fraction <= 1, "schedule.power_decay_fraction", "must be in [0, 1]")
        _require(self.power_a > 0, "schedule.power_a", "must be positive")
        if self.cooldown == "exp":
            _require(self.min_lr_ratio > 0, "schedule.min_lr_ratio",
                     "an exponential cooldown needs a positive floor (e.g. 0.1)")
        if self.name == "wsds":
            ends = self.wsds_cycle_ends
            _require(len(ends) > 0 and all(b > a for a, b in zip([self.warmup_steps] + ends, ends)),
                     "schedule.wsds_cycle_ends", "give increasing steps after the warmup, e.g. [1000, 2000, 4000]")


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
    # Parallelism: "none" (single process) or "ddp" / "fsdp" (under torchrun).
    parallel: str = "none"
    # Signals that make the run checkpoint at the end of the current step and exit (preemption).
    preempt_signals: list[str] = field(default_factory=lambda: ["SIGTERM", "SIGUSR1"])
    # After such a stop inside a Slurm job, requeue it with `scontrol requeue` (it then resumes).
    requeue: bool = False

    def validate(self) -> None:
        for name in ("steps", "seq_len", "batch_size", "eval_every", "eval_sequences", "checkpoint_every",
                     "keep_checkpoints"):
            _require(getattr(self, name) > 0, f"train.{name}", "must be a positive integer")
        if self.micro_batch_size is not None:
            _require(self.micro_batch_size > 0 and self.batch_size % self.micro_batch_size == 0,
                     "train.micro_batch_size", f"must divide train.batch_size={self.batch_size}")
        _require(self.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables clipping)")
        _one_of(self.device, "train.device", ("auto", "cpu", "cuda"))
        _one_of(self.precision, "train.precision", ("auto", "fp32", "bf16"))
        _one_of(self.parallel, "train.parallel", ("none", "ddp", "fsdp"))
        _require(self.num_threads >= 0, "train.num_threads", "must be >= 0")
        import signal

        for name in self.preempt_signals:
            _require(name in signal.Signals.__members__, "train.preempt_signals",
                     f"{name!r} is not a signal name; use names like SIGTERM, SIGUSR1")


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
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    # The run directory. Relaunching with the same directory resumes the run. A `{hash}` token is
    # replaced by the hash of the fields that change the run's numbers (harness/identity.py).
    run_dir: str = "runs/${name}"
    name: str = "default"

    def validate(self) -> None:
        for part in (self.model, self.data, self.optim, self.schedule, self.train, self.logging):
            part.validate()
        _require(self.train.seq_len <= self.model.max_seq_len, "train.seq_len",
                 f"{self.train.seq_len} exceeds model.max_seq_len={self.model.max_seq_len}; "
                 "raise model.max_seq_len or shorten train.seq_len")
        _require(self.schedule.warmup_steps < self.train.steps, "schedule.warmup_steps",
                 f"must be smaller than train.steps={self.train.steps}")
        if self.schedule.name == "wsds":
            _require(self.schedule.wsds_cycle_ends[-1] == self.train.steps, "schedule.wsds_cycle_ends",
                     f"the last cycle must end at train.steps={self.train.steps}")


GROUPS: dict[str, type] = {
    "model": ModelConfig,
    "data": DataConfig,
    "optim": OptimConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
    "logging": LoggingConfig,
}


def register_configs() -> None:
    """Register the schema with Hydra: `base_run` for the primary config and `base_<group>` per group.

    YAML files in conf/<group>/ list `base_<group>` in their defaults so Hydra type-checks them.
    """
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_run", node=RunConfig)
    for group, schema in GROUPS.items():
        cs.store(group=group, name=f"base_{group}", node=schema)


def to_run_config(cfg: Any) -> RunConfig:
    """Turn a resolved OmegaConf config (or dict) into a validated RunConfig."""
    from omegaconf import OmegaConf

    structured = OmegaConf.merge(OmegaConf.structured(RunConfig), cfg)
    run_cfg: RunConfig = OmegaConf.to_object(structured)  # type: ignore[assignment]
    run_cfg.validate()
    from harness.identity import resolve_run_dir

    run_cfg.run_dir = resolve_run_dir(run_cfg)
    return run_cfg
