#!/usr/bin/env python3
"""A Llama-shaped model with RANDOM weights, for GPU timings where the real model cannot travel: the same
weights written as GGUF (f16 and Q8_0, for specdec) and as a Hugging Face folder (safetensors f16 +
config.json, for transformers). Timings on it are valid; acceptance rates and texts are not (the weights
are noise).

Usage: make_random_llama.py --out DIR [--shape smollm2-135m|llama-1b|tiny] [--layers N] [--seed S]
Writes DIR/model-f16.gguf, DIR/model-q8_0.gguf, DIR/hf/{model.safetensors,config.json}, DIR/README.txt.
Needs numpy (and safetensors for the HF folder; without it the folder is skipped with a note).

Layouts, as llama.cpp's convert_hf_to_gguf.py writes them: GGUF stores matrices row-major (out, in) with
dims (in, out); attn_q/attn_k rows are permuted from HF's rotate-half RoPE order to GGUF's adjacent pairs
(specdec's RoPE), so both files compute the same function. The GGUF carries a synthetic SentencePiece
("llama") vocabulary: <unk>, <s>, </s>, the 256 byte tokens <0x00>..<0xFF>, the space piece U+2581 and
fillers that never match text, so any text encodes as bytes (one token per non-space byte); bench/
hf_reference.py encodes prompts the same way.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

SHAPES = {
    # SmolLM2-135M-Instruct's shape (the demo model), tied embeddings.
    "smollm2-135m": dict(dim=576, hidden_dim=1536, n_layers=30, n_heads=9, n_kv_heads=3, vocab_size=49152,
                         max_seq_len=8192, rope_theta=100000.0, rms_eps=1e-5, tied=True),
    # Llama-3.2-1B's shape (context cut to 8192), tied embeddings.
    "llama-1b": dict(dim=2048, hidden_dim=8192, n_layers=16, n_heads=32, n_kv_heads=8, vocab_size=128256,
                     max_seq_len=8192, rope_theta=500000.0, rms_eps=1e-5, tied=True),
    # A few MB, for a CPU smoke test of this script and the commands that use its output.
    "tiny": dict(dim=64, hidden_dim=128, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, max_seq_len=512,
                 rope_theta=10000.0, rms_eps=1e-5, tied=True),
}

GGUF_F32, GGUF_F16, GGUF_Q8_0 = 0, 1, 8
ALIGN = 32


# ---- GGUF (version 3) writer, no dependency beyond numpy -----------------------------------------------

def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _kv(key, value):
    """GGUF metadata: u32 (type 4), f32 (6), bool (7), string (8), arrays (9) of strings / f32 / i32."""
    out = _str(key)
    if isinstance(value, bool):
        return out + struct.pack("<IB", 7, int(value))
    if isinstance(value, int):
        return out + struct.pack("<II", 4, value)
    if isinstance(value, float):
        return out + struct.pack("<If", 6, value)
    if isinstance(value, str):
        return out + struct.pack("<I", 8) + _str(value)
    kind, items = value  # ("str" | "f32" | "i32", list)
    if kind == "str":
        return out + struct.pack("<IIQ", 9, 8, len(items)) + b"".join(_str(s) for s in items)
    if kind == "f32":
        return out + struct.pack("<IIQ", 9, 6, len(items)) + np.asarray(items, "<f4").tobytes()
    if kind == "i32":
        return out + struct.pack("<IIQ", 9, 5, len(items)) + np.asarray(items, "<i4").tobytes()
    raise ValueError(kind)


def write_gguf(path, metadata, tensors):
    """tensors: list of (name, dims in GGUF order (cols first), ggml type, raw bytes)."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    head += b"".join(_kv(k, v) for k, v in metadata)
    infos, offset = b"", 0
    for name, dims, gtype, data in tensors:
        infos += _str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", gtype, offset)
        offset += (len(data) + ALIGN - 1) // ALIGN * ALIGN
    with open(path, "wb") as f:
        f.write(head + infos)
        f.write(b"\0" * (-f.tell() % ALIGN))
        for _, _, _, data in tensors:
            f.write(data)
            f.write(b"\0" * (-len(data) % ALIGN))


def q8_0(w):
    """GGML Q8_0 of a float32 (rows, cols) matrix: per 32 values an f16 scale d = amax/127 and 32 int8
    round(x/d) (ties away from zero, as quantize_row_q8_0_ref)."""
    rows, cols = w.shape
    b = w.reshape(rows, cols // 32, 32).astype(np.float32)
    amax = np.abs(b).max(axis=2, keepdims=True)
    d = amax / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0.0)
    q = np.clip(np.trunc(b * inv + np.copysign(0.5, b)), -127, 127).astype(np.int8)
    blocks = np.empty((rows, cols // 32), dtype=[("d", "<f2"), ("q", "i1", (32,))])
    blocks["d"] = d[..., 0].astype(np.float16)
    blocks["q"] = q
    return blocks.tobytes()


def permute_rope(w, n_head):
    """HF rotate-half rows -> GGUF adjacent-pair rows (llama.cpp convert_hf_to_gguf.py's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def vocabulary(V):
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581"]
    types = [2, 3, 3] + [6] * 256 + [1]
    tokens += [f"\ue000{i}" for i in range(len(tokens), V)]  # private-use fillers: never in text
    types += [1] * (V - len(types))
    return tokens, types


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    ap.add_argument("--layers", type=int, default=0, help="override the layer count (e.g. a small draft model)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-hf", action="store_true", help="skip the Hugging Face folder")
    args = ap.parse_args()
    c = dict(SHAPES[args.shape])
    if args.layers > 0:
        c["n_layers"] = args.layers
    H, F, L, Hq, Hkv, V = c["dim"], c["hidden_dim"], c["n_layers"], c["n_heads"], c["n_kv_heads"], c["vocab_size"]
    D = H // Hq
    if V < 260:
        sys.exit(f"make_random_llama.py: vocab_size >= 260 (bytes + specials), got {V}")
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(args.seed)

    def mat(rows, cols):  # HF's initializer_range 0.02; stored in f16 so every file holds the same values
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16).astype(np.float32)

    hf = {"model.embed_tokens.weight": mat(V, H), "model.norm.weight": np.ones(H, np.float32)}
    for l in range(L):
        p = f"model.layers.{l}."
        hf[p + "input_layernorm.weight"] = np.ones(H, np.float32)
        hf[p + "post_attention_layernorm.weight"] = np.ones(H, np.float32)
        hf[p + "self_attn.q_proj.weight"] = mat(Hq * D, H)
        hf[p + "self_attn.k_proj.weight"] = mat(Hkv * D, H)
        hf[p + "self_attn.v_proj.weight"] = mat(Hkv * D, H)
        hf[p + "self_attn.o_proj.weight"] = mat(H, Hq * D)
        hf[p + "mlp.gate_proj.weight"] = mat(F, H)
        hf[p + "mlp.up_proj.weight"] = mat(F, H)
        hf[p + "mlp.down_proj.weight"] = mat(H, F)

    tokens, types = vocabulary(V)
    meta = [
        ("general.architecture", "llama"), ("general.name", f"random-{args.shape}"),
        ("general.alignment", ALIGN),
        ("llama.context_length", c["max_seq_len"]), ("llama.embedding_length", H),
        ("llama.feed_forward_length", F), ("llama.block_count", L), ("llama.attention.head_count", Hq),
        ("llama.attention.head_count_kv", Hkv), ("llama.rope.dimension_count", D),
        ("llama.rope.freq_base", float(c["rope_theta"])),
        ("llama.attention.layer_norm_rms_epsilon", float(c["rms_eps"])), ("llama.vocab_size", V),
        ("tokenizer.ggml.model", "llama"), ("tokenizer.ggml.tokens", ("str", tokens)),
        ("tokenizer.ggml.scores", ("f32", [0.0] * V)), ("tokenizer.ggml.token_type", ("i32", types)),
        ("tokenizer.ggml.bos_token_id", 1), ("tokenizer.ggml.eos_token_id", 2),
        ("tokenizer.ggml.unknown_token_id", 0), ("tokenizer.ggml.add_bos_token", True),
        ("tokenizer.ggml.add_space_prefix", False),
    ]

    def gguf_tensors(quant):
        out = []

        def m(name, w):
            if quant and w.shape[1] % 32 == 0:
                out.append((name, [w.shape[1], w.shape[0]], GGUF_Q8_0, q8_0(w)))
            else:
                out.append((name, [w.shape[1], w.shape[0]], GGUF_F16, w.astype("<f2").tobytes()))

        def v(name, x):
            out.append((name, [x.shape[0]], GGUF_F32, x.astype("<f4").tobytes()))

        m("token_embd.weight", hf["model.embed_tokens.weight"])
        for l in range(L):
            p, b = f"model.layers.{l}.", f"blk.{l}."
            v(b + "attn_norm.weight", hf[p + "input_layernorm.weight"])
            m(b + "attn_q.weight", permute_rope(hf[p + "self_attn.q_proj.weight"], Hq))
            m(b + "attn_k.weight", permute_rope(hf[p + "self_attn.k_proj.weight"], Hkv))
            m(b + "attn_v.weight", hf[p + "self_attn.v_proj.weight"])
            m(b + "attn_output.weight", hf[p + "self_attn.o_proj.weight"])
            v(b + "ffn_norm.weight", hf[p + "post_attention_layernorm.weight"])
            m(b + "ffn_gate.weight", hf[p + "mlp.gate_proj.weight"])
            m(b + "ffn_up.weight", hf[p + "mlp.up_proj.weight"])
            m(b + "ffn_down.weight", hf[p + "mlp.down_proj.weight"])
        v("output_norm.weight", hf["model.norm.weight"])
        return out

    write_gguf(os.path.join(args.out, "model-f16.gguf"), meta, gguf_tensors(False))
    write_gguf(os.path.join(args.out, "model-q8_0.gguf"), meta, gguf_tensors(True))

    hf_note = "hf/: safetensors (f16) + config.json for transformers' LlamaForCausalLM"
    if not args.no_hf:
        try:
            import safetensors.numpy
        except ImportError:
            hf_note = "hf/: skipped (no safetensors package)"
        else:
            os.makedirs(os.path.join(args.out, "hf"), exist_ok=True)
            safetensors.numpy.save_file({k: v.astype(np.float16) for k, v in hf.items()},
                                        os.path.join(args.out, "hf", "model.safetensors"), metadata={"format": "pt"})
            config = {
                "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": H,
                "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": Hq,
                "num_key_value_heads": Hkv, "head_dim": D, "vocab_size": V,
                "max_position_embeddings": c["max_seq_len"], "rope_theta": c["rope_theta"],
                "rms_norm_eps": c["rms_eps"], "tie_word_embeddings": c["tied"], "hidden_act": "silu",
                "attention_bias": False, "mlp_bias": False, "bos_token_id": 1, "eos_token_id": 2,
                "torch_dtype": "float16",
            }
            with open(os.path.join(args.out, "hf", "config.json"), "w") as f:
                json.dump(config, f, indent=1)
    params = sum(int(np.prod(x.shape)) for x in hf.values())
    with open(os.path.join(args.out, "README.txt"), "w") as f:
        f.write(f"RANDOM WEIGHTS (seed {args.seed}) in the shape {args.shape} ({L} layers, {params / 1e6:.1f}M "
                "parameters): timings are valid, acceptance rates and texts are not.\n"
                f"model-f16.gguf, model-q8_0.gguf: for specdec; {hf_note}.\n")
    print(f"make_random_llama.py: {args.out}: random {args.shape}, {L} layers, {params / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
