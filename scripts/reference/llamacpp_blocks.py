#!/usr/bin/env python3
"""llama.cpp's cost of a B x T block (B sequences, T new tokens each, one llama_decode) on top of a
cached context, for the side-by-side tables of `specdec bench decode` / `bench verify`.

Uses llama-cpp-python's low-level API (the CPU build pinned in scripts/reference/requirements.txt) on
the same GGUF file: for each B, a context with B sequences is prefilled with --context tokens per
sequence; then for each T one batch of B*T tokens (logits for every token, as a verifier reads them) is
decoded and the new cells removed again, timed over at least --min-ms (median, or --stat min, of the
wall time of llama_decode). Prints one JSON object on stdout:
  {"engine": ..., "threads": N, "context": C, "us": {"B": {"T": microseconds}}, ...}

Usage:
    python3 scripts/reference/llamacpp_blocks.py --model M.gguf [--threads 2] [--context 64]
        [--max-t 16] [--batch 1,4] [--min-ms 300] [--stat median|min]
"""

import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import llama_cpp as L


@L.llama_log_callback
def _quiet_log(level, text, user_data):
    pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--context", type=int, default=64)
    ap.add_argument("--max-t", type=int, default=16)
    ap.add_argument("--ts", default="", help="block sizes T (default 1..max-t)")
    ap.add_argument("--batch", default="1", help="batch sizes B, comma-separated")
    ap.add_argument("--min-ms", type=float, default=300)
    ap.add_argument("--stat", choices=["median", "min"], default="median",
                    help="summary of the repeated timings (min: on a machine with other load)")
    args = ap.parse_args()
    ts = [int(v) for v in args.ts.split(",")] if args.ts else list(range(1, args.max_t + 1))
    bs = [int(v) for v in args.batch.split(",")]

    L.llama_backend_init()
    L.llama_log_set(_quiet_log, ctypes.c_void_p(0))  # llama.cpp's load messages would bury the table
    mparams = L.llama_model_default_params()
    model = L.llama_model_load_from_file(args.model.encode(), mparams)
    if not model:
        sys.exit("llamacpp_blocks: cannot load " + args.model)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)

    out = {"engine": "llama.cpp (llama-cpp-python %s)" % L.__version__, "threads": args.threads,
           "context": args.context, "us": {}}
    for B in bs:
        per_seq = args.context + max(ts) + 8
        cparams = L.llama_context_default_params()
        cparams.n_ctx = ((B * per_seq + 255) // 256) * 256
        cparams.n_batch = max(B * max(ts), args.context, 64)
        cparams.n_ubatch = cparams.n_batch
        cparams.n_seq_max = B
        cparams.n_threads = args.threads
        cparams.n_threads_batch = args.threads
        ctx = L.llama_init_from_model(model, cparams)
        if not ctx:
            sys.exit("llamacpp_blocks: cannot create a context for B=%d" % B)
        mem = L.llama_get_memory(ctx)
        batch = L.llama_batch_init(max(cparams.n_batch, B * max(ts)), 0, B)

        def fill(entries):  # entries: (token, pos, seq, logits)
            batch.n_tokens = len(entries)
            for i, (tok, pos, seq, lg) in enumerate(entries):
                batch.token[i] = tok
                batch.pos[i] = pos
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = seq
                batch.logits[i] = 1 if lg else 0

        # fixed pseudo-random token ids (only their embedding rows matter), as specdec bench verify
        ids = [(i * 7919 + 13) % n_vocab for i in range(args.context + max(ts))]
        for b in range(B):
            fill([(ids[p], p, b, p == args.context - 1) for p in range(args.context)])
            if L.llama_decode(ctx, batch) != 0:
                sys.exit("llamacpp_blocks: prefill failed")
        res = {}
        for T in ts:
            entries = [(ids[args.context + j], args.context + j, b, True) for b in range(B) for j in range(T)]

            def once():
                fill(entries)
                t0 = time.perf_counter()
                rc = L.llama_decode(ctx, batch)
                dt = time.perf_counter() - t0
                if rc != 0:
                    sys.exit("llamacpp_blocks: decode failed (B=%d T=%d)" % (B, T))
                L.llama_memory_seq_rm(mem, -1, args.context, -1)
                return dt

            once()  # warm-up
            samples, total = [], 0.0
            while total < args.min_ms / 1e3 or len(samples) < 5:
                samples.append(once())
                total += samples[-1]
            res[str(T)] = round((min(samples) if args.stat == "min" else statistics.median(samples)) * 1e6, 1)
        out["us"][str(B)] = res
        L.llama_batch_free(batch)
        L.llama_free(ctx)
    L.llama_model_free(model)
    out["loadavg"] = os.getloadavg()[0]
    out["system_info"] = L.llama_print_system_info().decode("utf-8", "replace").strip()
    print(json.dumps(out, separators=(",", ":")))


if __name__ == "__main__":
    main()
