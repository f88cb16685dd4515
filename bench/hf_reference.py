#!/usr/bin/env python3
"""Hugging Face transformers reference for the GPU benchmarks (scripts/gpu-check): greedy AR decoding and
prompt-lookup assisted generation (`prompt_lookup_num_tokens`, HF's PLD) of one model on the Spec-Bench
prompts specdec's runner uses, on the same card, timed the same way (new tokens / decode time).

Usage: hf_reference.py --model HF_DIR --prompts spec_bench_question.jsonl [--categories a,b] [--per-category 4]
                       [--max-new-tokens 128] [--pld-tokens 4] [--max-prompt-tokens 1024]
                       [--encoding bytes|hf] [--time-budget 150] [--out hf.jsonl]

Prompts: the first --per-category prompts of each category in file order (Spec-Bench's MT-Bench categories
count as one, "mt_bench", as specdec's loader does), first turn, no chat template. --encoding bytes (for
bench/make_random_llama.py's models): BOS, then U+2581 (id 259) per space and byte b -> id 3 + b otherwise,
which is how specdec tokenizes with that model's synthetic vocabulary; --encoding hf uses the folder's
tokenizer. Decode time = time(generate N tokens) - time(generate 1 token) (prefill excluded, as specdec's
tok/s). Prompts run round robin over the categories; no new prompt starts after --time-budget seconds, and
the summary covers the prompts that finished.
Needs torch and transformers (no network access: the model is a local folder).
"""

import argparse
import json
import sys
import time

MT_BENCH = {"writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities"}


def load_prompts(path, categories, per_category):
    wanted = set(categories) if categories else None
    taken, out = {}, []
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            j = json.loads(line)
            text = j["turns"][0] if "turns" in j else j.get("question") or j.get("prompt") or j.get("text")
            cat = j.get("category", "spec_bench")
            if cat in MT_BENCH:
                cat = "mt_bench"
            if wanted is not None and cat not in wanted:
                continue
            if per_category and taken.get(cat, 0) >= per_category:
                continue
            taken[cat] = taken.get(cat, 0) + 1
            out.append((f"spec_bench:{j.get('question_id', len(out))}", cat, text))
    # Round robin over the categories, so that a run cut short by the time budget still covers each.
    by_cat = {}
    for p in out:
        by_cat.setdefault(p[1], []).append(p)
    order = []
    while any(by_cat.values()):
        for c in list(by_cat):
            if by_cat[c]:
                order.append(by_cat[c].pop(0))
    return order


def encode_bytes(text):
    ids = [1]
    for ch in text:
        if ch == " ":
            ids.append(259)
        else:
            ids.extend(3 + b for b in ch.encode("utf-8"))
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="a Hugging Face folder (config.json + safetensors)")
    ap.add_argument("--prompts", required=True, help="spec_bench_question.jsonl")
    ap.add_argument("--categories", default="", help="comma-separated; empty = all")
    ap.add_argument("--per-category", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--pld-tokens", type=int, default=4, help="prompt_lookup_num_tokens (draft tokens per step)")
    ap.add_argument("--max-prompt-tokens", type=int, default=1024, help="skip longer prompts (as specdec)")
    ap.add_argument("--encoding", default="bytes", choices=["bytes", "hf"])
    ap.add_argument("--dtype", default="float16", choices=["float16", "bfloat16", "float32"])
    ap.add_argument("--time-budget", type=float, default=150.0, help="seconds; no new prompt starts after it")
    ap.add_argument("--out", default="", help="append JSON lines (one per prompt and mode, then a summary)")
    args = ap.parse_args()

    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM
    except ImportError as e:
        sys.exit(f"hf_reference.py: {e} (needs torch and transformers)")
    if not torch.cuda.is_available():
        sys.exit("hf_reference.py: no CUDA device (torch.cuda.is_available() is False)")
    t_start = time.time()
    dtype = getattr(torch, args.dtype)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=dtype).to("cuda").eval()
    tok = None
    if args.encoding == "hf":
        from transformers import AutoTokenizer
        tok = AutoTokenizer.from_pretrained(args.model)
    prompts = load_prompts(args.prompts, [c for c in args.categories.split(",") if c], args.per_category)
    out = open(args.out, "a") if args.out else None

    def run(ids, n, pld):
        x = torch.tensor([ids], device="cuda")
        kw = dict(max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1, pad_token_id=0)
        if pld:
            kw["prompt_lookup_num_tokens"] = pld
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            y = model.generate(x, attention_mask=torch.ones_like(x), **kw)
        torch.cuda.synchronize()
        return time.perf_counter() - t0, y[0, len(ids):].tolist()

    run(encode_bytes("warm up the kernels") if tok is None else tok("warm up").input_ids, 8, 0)
    run(encode_bytes("warm up the kernels") if tok is None else tok("warm up").input_ids, 8, args.pld_tokens)
    rows, skipped = [], 0
    for pid, cat, text in prompts:
        if time.time() - t_start > args.time_budget:
            print(f"hf_reference.py: time budget of {args.time_budget:.0f} s reached after {len(rows)} prompts",
                  file=sys.stderr)
            break
        ids = encode_bytes(text) if tok is None else tok(text).input_ids
        if len(ids) > args.max_prompt_tokens:
            skipped += 1
            continue
        t1, _ = run(ids, 1, 0)
        t_ar, ar = run(ids, args.max_new_tokens, 0)
        t_pld, pld = run(ids, args.max_new_tokens, args.pld_tokens)
        n = args.max_new_tokens
        row = dict(prompt_id=pid, category=cat, prompt_tokens=len(ids), new_tokens=n,
                   ar_s=t_ar, pld_s=t_pld, prefill_s=t1,
                   ar_decode_tok_s=(n - 1) / max(t_ar - t1, 1e-9), pld_decode_tok_s=(n - 1) / max(t_pld - t1, 1e-9),
                   same_output=ar == pld)
        rows.append(row)
        if out:
            out.write(json.dumps(dict(bench="hf_reference", **row)) + "\n")
            out.flush()
    if not rows:
        sys.exit("hf_reference.py: no prompt finished (all skipped or no time)")
    tot_n = sum(r["new_tokens"] - 1 for r in rows)
    ar_tps = tot_n / sum(max(r["ar_s"] - r["prefill_s"], 1e-9) for r in rows)
    pld_tps = tot_n / sum(max(r["pld_s"] - r["prefill_s"], 1e-9) for r in rows)
    summary = dict(bench="hf_reference_summary", model=args.model, transformers=transformers.__version__,
                   torch=torch.__version__, gpu=torch.cuda.get_device_name(), dtype=args.dtype, prompts=len(rows),
                   skipped=skipped, max_new_tokens=args.max_new_tokens, pld_tokens=args.pld_tokens,
                   ar_decode_tok_s=ar_tps, pld_decode_tok_s=pld_tps, pld_speedup=pld_tps / ar_tps,
                   outputs_identical=all(r["same_output"] for r in rows))
    if out:
        out.write(json.dumps(summary) + "\n")
    print(f"HF transformers {transformers.__version__} ({args.dtype}) on {summary['gpu']}: {len(rows)} prompts "
          f"({skipped} skipped), {args.max_new_tokens} new tokens: AR {ar_tps:.1f} tok/s, prompt lookup "
          f"(k={args.pld_tokens}) {pld_tps:.1f} tok/s = {pld_tps / ar_tps:.2f}x; outputs identical: "
          f"{summary['outputs_identical']}")


if __name__ == "__main__":
    main()
