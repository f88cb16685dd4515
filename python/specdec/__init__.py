"""specdec from Python: load a model (GGUF, safetensors, llama2.c), tokenize, generate (AR or speculative,
with any registered drafter or one written in Python), run a configured experiment, read its HDF5 log.

    import specdec
    m = specdec.Model("stories260K.bin", tokenizer="tok512.bin")
    r = m.generate("Once upon a time", max_new_tokens=64, drafter="ngram", k=4)
    print(r.text, r.tau, r.steps["n_accepted"])

Errors from specdec are `specdec.Error` (a RuntimeError) with specdec's one-line message. Forwards and
decodes release the GIL. docs/python.md is the guide; a drafter in Python is any object with begin /
propose / accept (see `Drafter`).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ._specdec import Error, list_drafters as _list_drafters, run_experiment as _run_experiment
from ._specdec import Model as _Model, set_threads, version

__all__ = ["Drafter", "Error", "Forward", "Model", "Result", "list_drafters", "open_log", "report", "run",
           "set_threads", "version"]

Tokens = Union[Sequence[int], np.ndarray]


@dataclass(frozen=True)
class Result:
    """One decoded request. tokens: the generated ids (int32; a stop token included, last). steps: one row
    per target verification pass (numpy structured array: step, n_proposed, n_accepted, n_emitted, max_depth,
    context_len, t_draft_us, t_verify_us, t_forward_us). draft_tokens: one row per proposed node (step, node,
    parent, depth, token, p_target, q_draft, u, visited, accepted: the draft_tokens table of
    docs/hdf5-schema.md; q_draft and u are set on visited nodes only). tau and acc_rate are SpecStats'
    (docs/metrics.md)."""
    tokens: np.ndarray
    text: str
    steps: np.ndarray
    draft_tokens: np.ndarray
    tau: float
    acc_rate: float
    drafted: int
    accepted: int
    prompt_tokens: int
    prefill_seconds: float
    decode_seconds: float
    stopped: bool


@dataclass(frozen=True)
class Forward:
    """One forward pass. logits (T, V); hidden (T, H), the final-norm states, when asked; layer_outputs
    (T, len(layers), H) when layers were asked. float32, C order, owned by numpy: no copy was made."""
    logits: np.ndarray
    hidden: Optional[np.ndarray]
    layer_outputs: Optional[np.ndarray]


def _columns(cols: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.rec.fromarrays(list(cols.values()), names=list(cols.keys()))


class Model:
    """A model and its tokenizer on a device ("cpu", "cuda", "cuda:N"). tokenizer: a llama2.c tokenizer.bin
    or a tokenizer.json; None when the model carries one (GGUF) or has one beside it (safetensors folder)."""

    def __init__(self, path: Union[str, os.PathLike], tokenizer: Optional[Union[str, os.PathLike]] = None,
                 device: str = "cpu") -> None:
        self._m = _Model(os.fspath(path), os.fspath(tokenizer) if tokenizer else "", device)
        self.config: dict[str, Any] = self._m.config()
        """arch, dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, max_seq_len,
        rope_theta, rms_eps, tied_embeddings, path, device, bos, eos, add_bos."""

    @property
    def vocab_size(self) -> int:
        return int(self.config["vocab_size"])

    def tokenize(self, text: str, bos: Optional[bool] = None, chat: bool = False) -> np.ndarray:
        """Text -> int32 ids. bos: prepend BOS (None: the tokenizer's default). chat: wrap text as one user
        message in the model's chat template (special tokens parsed)."""
        if chat:
            text = self._m.chat_prompt(text)
        return self._m.tokenize(text, self.config["add_bos"] if bos is None else bos, chat)

    def detokenize(self, tokens: Tokens) -> str:
        """Ids -> text (the concatenated pieces, as the CLI streams them)."""
        return self._m.detokenize(np.asarray(tokens, dtype=np.int64))

    def forward(self, tokens: Tokens, hidden: bool = False, layers: Sequence[int] = ()) -> Forward:
        """One forward of `tokens` as a fresh sequence (positions 0..T-1), GIL released."""
        logits, h, lo = self._m.forward(np.asarray(tokens, dtype=np.int64), hidden, list(layers))
        return Forward(logits, h, lo)

    def generate(self, prompt: Union[str, Tokens], max_new_tokens: int = 128, *, temperature: float = 0.0,
                 top_k: int = 0, top_p: float = 1.0, seed: int = 0, drafter: Any = None, k: int = 4,
                 options: Optional[Mapping[str, Any]] = None, rule: Optional[str] = None,
                 rule_options: Optional[Mapping[str, Any]] = None, chat: bool = False,
                 stop_at_eos: bool = True) -> Result:
        """Decodes a prompt (text, or ids as they are). drafter None: AR. Else speculative decoding verified by
        the lossless rule (greedy at temperature 0, speculative above; or `rule`), with drafter one of: a
        registered name or spec ("ngram", "plugin:PATH.so:NAME", "python:MODULE.CLASS") made with `options`;
        a Python drafter class, made as CLASS(env, **options); a Python drafter object (see `Drafter`).
        seed: the sampling and verification stream (the same value as `specdec generate --seed`)."""
        ids = self.tokenize(prompt, chat=chat) if isinstance(prompt, str) else np.asarray(prompt, dtype=np.int64)
        str_map = lambda m: {str(key): str(v) for key, v in (m or {}).items()}  # noqa: E731 - options are strings
        d = self._m.generate(np.asarray(ids, dtype=np.int64), max_new_tokens, temperature, top_k, top_p, seed,
                             drafter, k, str_map(options), rule or "", str_map(rule_options), stop_at_eos)
        tokens = d.pop("tokens")
        return Result(tokens=tokens, text=self._m.detokenize(tokens.astype(np.int64)), steps=_columns(d.pop("steps")),
                      draft_tokens=_columns(d.pop("draft_tokens")), **d)


class Drafter:
    """The contract of a drafter written in Python (core/speculative/drafter.h, mirrored). Subclassing is
    optional: any object with these methods works. Made per request as CLASS(env, **options) when named
    (python:MODULE.CLASS, or a class passed to generate); env has vocab_size, n_layers, hidden_size,
    temperature, top_k, top_p, seed, drafter_seed, request, max_context; options are strings.
    An attribute vocab_size, when present, must equal the target's."""

    def features(self) -> Optional[Mapping[str, Any]]:
        """The target features to receive: None, or {"final_norm": bool, "layers": [l, ...]}."""
        return None

    def proposal_depth(self, max_tokens: int) -> int:
        """How deep a proposal of max_tokens nodes reaches (0 ..= max_tokens): what the cost_model policy
        prices a node budget by. A chain (the default) reaches max_tokens; a tree less."""
        return max_tokens

    def begin(self, prompt: np.ndarray, features: np.ndarray) -> None:
        """A new sequence: prompt (int32 ids). features: (len(prompt) - 1, width) float32, row i the target's
        state after token i; shape (0, 0) unless features() asked."""
        raise NotImplementedError

    def propose(self, max_tokens: int) -> tuple[Tokens, Optional[Tokens], Optional[np.ndarray]]:
        """Up to max_tokens draft nodes: (tokens, parents, q). parents None = a chain, else parents[i] < i is
        node i's parent, -1 the last accepted token; q None = deterministic proposals, else (n, V) float rows,
        each the distribution node i's token was drawn from. Empty tokens: nothing to propose this step."""
        raise NotImplementedError

    def accept(self, tokens: np.ndarray, features: np.ndarray) -> None:
        """The tokens this step added: the accepted draft tokens, then the target's own. features: one row
        per token (the state that predicts it), shape (0, 0) unless features() asked."""
        raise NotImplementedError


def list_drafters() -> dict[str, str]:
    """Registered drafters: name -> one-line help (python:MODULE.CLASS and plugin: specs come on top)."""
    return dict(_list_drafters())


def run(config: Union[str, os.PathLike], overrides: Sequence[str] = (), *, out: Optional[str] = None,
        resume: bool = False, shard: Optional[str] = None, quiet: bool = True) -> str:
    """`specdec run CONFIG --section.key=value ...`: runs the experiment (GIL released) and returns the path
    of its HDF5 log. overrides: "section.key=value" (a leading "--" is optional). shard: "i/n"."""
    return _run_experiment(os.fspath(config), list(overrides), out or "", resume, shard or "", quiet)


def _load_report():
    """experiments/report/specdec_report.py, the report's own module (staged beside this package); one
    already imported under its name is used as it is."""
    if "specdec_report" not in sys.modules:
        folder = os.path.join(os.path.dirname(os.path.abspath(__file__)), "report")
        if folder not in sys.path:
            sys.path.append(folder)  # its plots module imports as specdec_plots, as in experiments/report
        path = os.path.join(folder, "specdec_report.py")
        spec = importlib.util.spec_from_file_location("specdec_report", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["specdec_report"] = module
        spec.loader.exec_module(module)
    return sys.modules["specdec_report"]


def __getattr__(name: str):
    """specdec.report: specdec_report (load, summarize, format_report, the plots), imported on first use
    (it brings pandas)."""
    if name == "report":
        return _load_report()
    raise AttributeError(f"module 'specdec' has no attribute '{name}'")


def open_log(path: Union[str, os.PathLike]):
    """Reads an HDF5 results log with the report's loader: specdec_report.load(path) (DataFrames runs,
    requests, steps, draft_tokens, outputs; unfinished requests dropped). report.summarize(it) gives every
    figure of `specdec report`."""
    return _load_report().load(os.fspath(path))
