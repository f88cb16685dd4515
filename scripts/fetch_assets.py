#!/usr/bin/env python3
"""Download the test assets from their public origin when ../shared is not there.

Writes DEST/models/stories260K/{stories260K.bin,tok512.bin,golden_greedy_bos_200.txt} and
DEST/data/prompts/{spec_bench_question,mt_bench_question,gsm8k_test}.jsonl, byte-identical to the
project's shared copies: every file is checked against the sha256 recorded below. The Hub's
stories260K.bin is llama2.c's legacy version-0 layout; it is rewritten in the version-1 export layout
(what ../shared holds) and the result must hash to the same value. Standard library only. Idempotent:
files already present with the right hash are kept.
"""
import argparse
import ast
import hashlib
import re
import struct
import sys
import urllib.request
from pathlib import Path

SHA = {
    "models/stories260K/stories260K.bin": "9ab1bf3d0c9900ce357fb38b0f42c3252e0ad478400bf7093efa133c8fa60723",
    "models/stories260K/tok512.bin": "037cb335abb25d1fa9e8ecae30ed2a3a8ace9302862ebcdc05d51a6bbb10c312",
    "models/stories260K/golden_greedy_bos_200.txt": "f5a0e67db7424051520e7d8db9880b3dc2aa13577db570c28805c1b51c42eaf0",
    "data/prompts/spec_bench_question.jsonl": "4b6d33e79484f9841c487ee87d1cf6aa8c6066f61d5d482ff09e5a007fafdf04",
    "data/prompts/mt_bench_question.jsonl": "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
    "data/prompts/gsm8k_test.jsonl": "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14",
}
HUB = "https://huggingface.co/karpathy/tinyllamas/resolve/main/stories260K"
GH = "https://raw.githubusercontent.com"
V0_SHA = "b0a507e7ad0f626624f17112325e66691f9076d622e1d3274d103d00299f2696"


def fetch(url: str) -> bytes:
    print(f"  downloading {url}", flush=True)
    with urllib.request.urlopen(url, timeout=120) as r:
        return r.read()


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def v0_to_v1(v0: bytes) -> bytes:
    """llama2.c legacy layout -> version-1 export layout (fp32, 256-byte header)."""
    dim, hidden, L, nh, nkv, vocab, seq = struct.unpack("<7i", v0[:28])
    shared = vocab > 0
    V = abs(vocab)
    hd = dim // nh
    kv = nkv * hd
    f = 4
    off = 28
    def take(n):
        nonlocal off
        out = v0[off:off + n * f]
        off += n * f
        return out
    emb = take(V * dim); att = take(L * dim); wq = take(L * dim * dim); wk = take(L * dim * kv)
    wv = take(L * dim * kv); wo = take(L * dim * dim); ffn = take(L * dim); w1 = take(L * hidden * dim)
    w2 = take(L * dim * hidden); w3 = take(L * hidden * dim); norm = take(dim)
    take(seq * hd)  # freq_cis_real + imag (seq * hd/2 each)
    wcls = b"" if shared else take(V * dim)
    header = struct.pack("<Ii7iB", 0x616B3432, 1, dim, hidden, L, nh, nkv, V, seq, 1 if shared else 0)
    header += b"\0" * (256 - len(header))
    return header + att + ffn + norm + emb + wq + wk + wv + wo + w1 + w2 + w3 + wcls


def golden_text() -> bytes:
    src = fetch(f"{GH}/karpathy/llama2.c/master/test_all.py").decode()
    m = re.search(r"^expected_stdout\s*=\s*(b'.*?')\s*$", src, re.M | re.S)
    if not m:
        raise SystemExit("fetch_assets: test_all.py no longer holds expected_stdout; cannot rebuild the golden text")
    return ast.literal_eval(m.group(1))


def build(rel: str) -> bytes:
    if rel.endswith("stories260K.bin"):
        v0 = fetch(f"{HUB}/stories260K.bin")
        if sha256(v0) != V0_SHA:
            raise SystemExit(f"fetch_assets: stories260K.bin from the Hub has sha256 {sha256(v0)}, expected {V0_SHA}")
        return v0_to_v1(v0)
    if rel.endswith("tok512.bin"):
        return fetch(f"{HUB}/tok512.bin")
    if rel.endswith("golden_greedy_bos_200.txt"):
        return golden_text()
    urls = {
        "spec_bench_question.jsonl": f"{GH}/hemingkx/Spec-Bench/main/data/spec_bench/question.jsonl",
        "mt_bench_question.jsonl": f"{GH}/lm-sys/FastChat/main/fastchat/llm_judge/data/mt_bench/question.jsonl",
        "gsm8k_test.jsonl": f"{GH}/openai/grade-school-math/master/grade_school_math/data/test.jsonl",
    }
    return fetch(urls[Path(rel).name])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dest", type=Path)
    args = ap.parse_args()
    for rel, want in SHA.items():
        path = args.dest / rel
        if path.exists() and sha256(path.read_bytes()) == want:
            continue
        data = build(rel)
        if rel.endswith(".txt") and sha256(data) != want:
            data += b"\n"  # run.c ends its output with "\n"; the shared golden keeps it
        got = sha256(data)
        if got != want:
            print(f"fetch_assets: {rel}: sha256 {got}, expected {want}", file=sys.stderr)
            return 1
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
        print(f"  {rel}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
