"""Data pipeline: source text -> tokenizer -> cached memmapped token stream -> batches.

    data = prepare_tokens(cfg.data)                     # once per run; cached across runs
    xy = train_batch(data, seed=s, step=k, batch_size=B, seq_len=T)   # LongTensor[B, T+1]
    fixed_val = val_batches(data, batch_size=B, seq_len=T, n_batches=n)
"""

from harness.data.batches import train_batch, val_batches
from harness.data.sources import iter_documents
from harness.data.tokenizer import load_tokenizer
from harness.data.tokens import TokenCacheError, TokenData, prepare_tokens

__all__ = [
    "TokenCacheError",
    "TokenData",
    "iter_documents",
    "load_tokenizer",
    "prepare_tokens",
    "train_batch",
    "val_batches",
]
