"""A drafter written in Python: prompt lookup, the algorithm of specdec's C++ ngram drafter
(drafters/ngram.cpp) without its optional corpus. The longest suffix of the context (max_n tokens down to
min_n) that occurred earlier proposes the tokens that followed its most recent occurrence.

    specdec generate -m MODEL ... --drafter python:ngram_drafter.NgramDrafter -o max_n=3 --k 4
    (with examples/python_ngram on PYTHONPATH, or run from this folder)

Deterministic proposals: q is None (one-hot), so every lossless rule accepts it. Option q=onehot returns the
same proposals with explicit one-hot q rows (the path a sampling drafter takes).
"""
from __future__ import annotations

import numpy as np


class NgramDrafter:
    def __init__(self, env, max_n="3", min_n="1", q="none"):
        self.max_n, self.min_n = int(max_n), int(min_n)
        if not 1 <= self.min_n <= self.max_n:
            raise ValueError(f"1 <= min_n <= max_n, got min_n = {self.min_n} and max_n = {self.max_n}")
        if q not in ("none", "onehot"):
            raise ValueError(f"q = none | onehot, got '{q}'")
        self.vocab_size = env.vocab_size
        self.onehot = q == "onehot"
        self.ctx: list[int] = []

    def begin(self, prompt, features):
        self.ctx = [int(t) for t in prompt]

    def accept(self, tokens, features):
        self.ctx.extend(int(t) for t in tokens)

    def propose(self, max_tokens):
        draft = self._lookup(max_tokens)
        q = None
        if self.onehot and draft:
            q = np.zeros((len(draft), self.vocab_size), dtype=np.float32)
            q[np.arange(len(draft)), draft] = 1.0
        return np.asarray(draft, dtype=np.int32), None, q

    def _lookup(self, k):
        ctx, n_ctx = self.ctx, len(self.ctx)
        for n in range(min(self.max_n, n_ctx - 1), self.min_n - 1, -1):
            suffix = ctx[n_ctx - n:]
            # The most recent earlier occurrence: scan back from just before the suffix itself.
            for start in range(n_ctx - n - 1, -1, -1):
                if ctx[start:start + n] == suffix:
                    return ctx[start + n:min(start + n + k, n_ctx)]
        return []
