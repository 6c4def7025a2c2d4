"""HarnessLM: lm-eval's LM interface over a harness decoder (`model(ids[B, T]) -> logits[B, T, V]`).

Conventions follow lm-eval's own HF adapter: a request's context and continuation are tokenized
apart (trailing spaces of the context move to the continuation, so " word" keeps its leading-space
token); an empty context starts from the end-of-text token; inputs longer than the model's context
keep their last `max_len` tokens. Sampling uses a private torch.Generator, never the global RNG (a
hook evaluates inside a training run, whose RNG stream must not change).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from lm_eval.api.model import LM

from harness.eval import EvalError


@dataclass
class LoadedRun:
    model: torch.nn.Module
    tokenizer: Any
    step: int


def read_run_model_config(run_dir: Path):
    from omegaconf import OmegaConf

    from harness.config import ModelConfig

    config_file = Path(run_dir) / "config.yaml"
    if not config_file.is_file():
        raise EvalError(f"{run_dir} is not a run directory (no config.yaml); pass the run_dir a training run wrote")
    saved = OmegaConf.load(config_file)
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), saved.model))
    if cfg.max_seq_len is None:  # null in a run config means train.seq_len
        cfg.max_seq_len = int(saved.train.seq_len)
    if cfg.vocab_size is None:
        raise EvalError(f"{config_file}: model.vocab_size is null; the run never started training")
    return cfg


def load_run(run_dir: Path, checkpoint: Path, step: int) -> LoadedRun:
    """The model of one checkpoint (weights_only load) and the run's tokenizer, in eval mode on CPU."""
    from transformers import AutoTokenizer

    from harness.checkpoint import load_checkpoint
    from harness.models import build_model

    tokenizer_dir = Path(run_dir) / "tokenizer"
    if not tokenizer_dir.is_dir():
        raise EvalError(f"{tokenizer_dir} is missing; the run writes it when training starts")
    model = build_model(read_run_model_config(run_dir))
    model.load_state_dict(load_checkpoint(checkpoint)["model"])
    return LoadedRun(model.eval(), AutoTokenizer.from_pretrained(str(tokenizer_dir)), step)


class HarnessLM(LM):
    def __init__(self, model: torch.nn.Module, tokenizer: Any, *, batch_size: int = 32, seed: int = 0,
                 device: str | torch.device | None = None):
        super().__init__()
        self.model, self.tokenizer, self.batch_size_per_call = model, tokenizer, batch_size
        self.torch_device = torch.device(device) if device is not None else next(model.parameters()).device
        self.max_len = int(model.config.max_seq_len)
        self.eot = tokenizer.eos_token_id
        self.generator = torch.Generator(device="cpu").manual_seed(seed)

    # ---- tokens ----
    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def split_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        """(context tokens, continuation tokens), spaces moved as lm-eval's HF adapter does."""
        spaces = len(context) - len(context.rstrip(" "))
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        ctx = self.encode(context) if context else [self.eot]
        return ctx, self.encode(continuation)

    def score(self, pairs: Sequence[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """(sum of continuation log-probs, whether greedy decoding gives the continuation)."""
        seqs, lens = [], []
        for ctx, cont in pairs:
            if not cont:
                raise EvalError("an empty continuation has no log-likelihood; check the task's choices")
            seqs.append((ctx + cont)[-(self.max_len + 1):])
            lens.append(len(cont))
        results = []
        with torch.no_grad():
            for i in range(0, len(seqs), self.batch_size_per_call):
                chunk, chunk_lens = seqs[i:i + self.batch_size_per_call], lens[i:i + self.batch_size_per_call]
                width = max(len(s) for s in chunk) - 1
                ids_BT = torch.full((len(chunk), width), self.eot, dtype=torch.long)
                for b, seq in enumerate(chunk):
                    ids_BT[b, :len(seq) - 1] = torch.tensor(seq[:-1])
                logp_BTV = F.log_softmax(self.model(ids_BT.to(self.torch_device)).float(), dim=-1).cpu()
                for b, (seq, n) in enumerate(zip(chunk, chunk_lens)):
                    pos = torch.arange(len(seq) - 1 - n, len(seq) - 1)
                    targets = torch.tensor(seq[-n:])
                    token_logp = logp_BTV[b, pos]
                    results.append((float(token_logp[torch.arange(n), targets].sum()),
                                    bool((token_logp.argmax(-1) == targets).all())))
        return results

    # ---- lm-eval's interface ----
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self.score([self.split_pair(*req.args) for req in requests])

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of each whole string: windows of max_len tokens, each token scored once."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        totals = []
        for req in requests:
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                token_list=self.encode(req.args[0]), prefix_token=self.eot, max_seq_len=self.max_len, context_len=1)]
            totals.append(sum(ll for ll, _ in self.score(windows)))
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            context, gen_kwargs = req.args
            out.extend(self.sample([context], dict(gen_kwargs)))
        return out

    @torch.no_grad()
    def sample(self, contexts: Sequence[str], gen_kwargs: dict[str, Any]) -> list[str]:
        """One completion per context (batched; pass a context k times for k samples): greedy, or
        sampled at `temperature` when `do_sample`; cut at the first `until` string."""
        until = gen_kwargs.get("until") or []
        until = [until] if isinstance(until, str) else list(until)
        max_new = int(gen_kwargs.get("max_gen_toks", 16))
        do_sample = bool(gen_kwargs.get("do_sample", False))
        temperature = float(gen_kwargs.get("temperature", 1.0))
        prompts = [self.encode(c) if c else [self.eot] for c in contexts]
        texts = ["" for _ in contexts]
        done = [False] * len(contexts)
        seqs = [list(p) for p in prompts]
        for _ in range(max_new):
            live = [i for i, d in enumerate(done) if not d]
            if not live:
                break
            # Short prompts, one position read per row: sampling batches many more rows than scoring.
            step_rows = 32 * self.batch_size_per_call
            for start in range(0, len(live), step_rows):
                rows = live[start:start + step_rows]
                windows = [seqs[i][-self.max_len:] for i in rows]
                width = max(len(w) for w in windows)
                # Left-pad so every row's last token sits in the last column (its next-token logits).
                ids_BT = torch.full((len(rows), width), self.eot, dtype=torch.long)
                for b, w in enumerate(windows):
                    ids_BT[b, width - len(w):] = torch.tensor(w)
                logits_BV = self._last_logits(ids_BT, [len(w) for w in windows])
                if do_sample and temperature > 0:
                    probs = F.softmax(logits_BV / temperature, dim=-1)
                    nxt = torch.multinomial(probs, 1, generator=self.generator).squeeze(1)
                else:
                    nxt = logits_BV.argmax(-1)
                for b, i in enumerate(rows):
                    token = int(nxt[b])
                    seqs[i].append(token)
                    texts[i] = self.tokenizer.decode(seqs[i][len(prompts[i]):])
                    if token == self.eot or any(u in texts[i] for u in until):
                        done[i] = True
        for i, text in enumerate(texts):
            for u in until:
                text = text.split(u)[0]
            texts[i] = text
        return texts

    def _last_logits(self, ids_BT: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """Next-token logits of each row. Left padding would sit inside a row's causal window, so
        rows run in groups of equal length (the k samples of one prompt share a group)."""
        width = ids_BT.shape[1]
        out = torch.empty(ids_BT.shape[0], self.model.config.vocab_size)
        for n in sorted(set(lengths)):
            rows = [b for b, m in enumerate(lengths) if m == n]
            out[rows] = self.model(ids_BT[rows, width - n:].to(self.torch_device))[:, -1].float().cpu()
        return out
