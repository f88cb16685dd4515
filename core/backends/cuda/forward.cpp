// LlamaCuda's forward: the batch plan (core/model/batch_plan.h) staged into one packed upload, every launch
// of the layers on the model's stream (enqueue), the LM head over the selected rows, the results read back.
#include <algorithm>
#include <cstring>

#include "core/backends/cuda/llama_cuda_impl.h"
#include "core/error.h"
#include "core/model/batch_plan.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/kv_cache.cuh"
#include "kernels/cuda/matmul_quant.cuh"
#include "kernels/cuda/residual.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"

namespace specdec::cuda {
InputLayout::InputLayout(int R, int B, int L, size_t mask_bytes) {
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off = align_up(off + bytes, 16);
    return at;
  };
  tokens = take(sizeof(int32_t) * R);      // (R) token ids
  pos = take(sizeof(int32_t) * R);         // (R) RoPE positions
  row_seq = take(sizeof(int32_t) * R);     // (R) the sequence of each row
  row_slot = take(sizeof(int32_t) * R);    // (R) the cache slot each row's K/V goes to
  row0 = take(sizeof(int32_t) * (B + 1));  // (B+1) first row of each sequence
  n_past = take(sizeof(int32_t) * B);      // (B) cached slots before this block
  kptr = take(sizeof(float*) * L * B);     // (L, B) K of layer l of sequence b
  vptr = take(sizeof(float*) * L * B);     // (L, B) V likewise
  maskptr = take(sizeof(uint8_t*) * B);    // (B) the mask of sequence b, or null = causal
  mask = take(mask_bytes);                 // the masks, back to back
  total = off;
}

void LlamaCuda::Impl::ensure_scratch(int R, int n_sel, bool hidden) {
  const ModelConfig& c = model->config;
  const size_t f = sizeof(float);
  if (R > rows_cap) {
    const int cap = std::max({R, 2 * rows_cap, 16});
    x = DeviceMem(f * cap * c.dim);
    xb = DeviceMem(f * cap * c.dim);
    q = DeviceMem(f * cap * c.q_dim());
    k = DeviceMem(f * cap * c.kv_dim());
    v = DeviceMem(f * cap * c.kv_dim());
    att = DeviceMem(f * cap * c.q_dim());
    gate = DeviceMem(f * cap * c.hidden_dim);
    up = DeviceMem(f * cap * c.hidden_dim);
    mm = DeviceMem(matmul_small_scratch_bytes(std::min(cap, opts.small_rows), kmax));
    if (c.qkv_bias) {
      ones = DeviceMem(f * cap);
      const std::vector<float> h(static_cast<size_t>(cap), 1.f);
      SPECDEC_CUDA_CHECK(cudaMemcpy(ones.get(), h.data(), f * cap, cudaMemcpyHostToDevice));
    }
    rows_cap = cap;
    ++epoch;
  }
  if (n_sel > sel_cap) {
    const int cap = std::max({n_sel, 2 * sel_cap, 1});
    head_rows = DeviceMem(f * cap * c.dim);
    logits = DeviceMem(f * cap * c.vocab_size);
    logits_h.reserve(f * cap * c.vocab_size);
    sel_cap = cap;
    ++epoch;
  }
  if (hidden) hidden_h.reserve(f * rows_cap * c.dim);
}

// out (R,N) fp32 = x (R,K) fp32 * W^T, W (N,K) row-major. cuBLAS is column-major: out^T (N,R) = W (N,K) x^T,
// i.e. op(A) = A^T with A the (K,N) column-major view of W, B the (K,R) column-major view of x.
void LlamaCuda::Impl::proj(float* out, const float* xin, const DeviceWeight& w, int R, int N, int K) {
  cudaStream_t s = ctx->stream;
  if (R <= opts.small_rows) {
    matmul_small(out, xin, w.data, w.dtype, R, N, K, mm.get(), s);
    return;
  }
  ++stats.gemm_calls;
  const float alpha = 1.f, beta = 0.f;
  if (w.dtype == DType::F32) {
    SPECDEC_CUBLAS_CHECK(cublasGemmEx(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, R, K, &alpha, w.data, CUDA_R_32F, K,
                                      xin, CUDA_R_32F, K, &beta, out, CUDA_R_32F, N, CUBLAS_COMPUTE_32F_PEDANTIC,
                                      CUBLAS_GEMM_DEFAULT));
    return;
  }
  // bf16 weights keep bf16 (their range); everything else computes in f16.
  const DType gt = w.dtype == DType::BF16 ? DType::BF16 : DType::F16;
  const cudaDataType ct = gt == DType::BF16 ? CUDA_R_16BF : CUDA_R_16F;
  const void* wp = w.data;
  if (w.dtype != DType::F16 && w.dtype != DType::BF16) {
    w16.reserve(2 * static_cast<size_t>(max_weight_elems));
    dequantize(w16.get(), DType::F16, w.data, w.dtype, N, K, s);
    wp = w16.get();
  }
  act16.reserve(2 * static_cast<size_t>(rows_cap) * kmax);
  convert_f32(act16.get(), gt, xin, static_cast<int64_t>(R) * K, s);
  SPECDEC_CUBLAS_CHECK(cublasGemmEx(ctx->cublas, CUBLAS_OP_T, CUBLAS_OP_N, N, R, K, &alpha, wp, ct, K, act16.get(), ct,
                                    K, &beta, out, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// out (R,N) += b (N) on every row: the rank-1 update out^T (N,R column-major) += b ones^T. Each element gets
// one fp32 add of b[n] * 1 (exact), as the CPU forward's add.
void LlamaCuda::Impl::add_bias(float* out, const DeviceWeight& b, int R, int N) {
  const float one = 1.f;
  SPECDEC_CUBLAS_CHECK(
      cublasSger(ctx->cublas, N, R, &one, static_cast<const float*>(b.data), 1, ones.get<float>(), 1, out, N));
}

// Every launch of one forward, on the model's stream; reads its per-forward values from in_d.
void LlamaCuda::Impl::enqueue(const LaunchPlan& p) {
  const ModelConfig& c = model->config;
  const int H = c.dim, F = c.hidden_dim, Dh = c.head_dim, Hq = c.n_heads, Hkv = c.n_kv_heads;
  const int QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size, R = p.R, B = p.B;
  cudaStream_t s = ctx->stream;
  uint8_t* in = in_d.get<uint8_t>();
  const auto* tokens = reinterpret_cast<const int32_t*>(in + p.lay.tokens);
  const auto* pos = reinterpret_cast<const int32_t*>(in + p.lay.pos);
  const auto* row_seq = reinterpret_cast<const int32_t*>(in + p.lay.row_seq);
  const auto* row_slot = reinterpret_cast<const int32_t*>(in + p.lay.row_slot);
  const auto* row0 = reinterpret_cast<const int32_t*>(in + p.lay.row0);
  const auto* n_past = reinterpret_cast<const int32_t*>(in + p.lay.n_past);
  auto* const* kptr = reinterpret_cast<float* const*>(in + p.lay.kptr);
  auto* const* vptr = reinterpret_cast<float* const*>(in + p.lay.vptr);
  const auto* const* maskptr = reinterpret_cast<const uint8_t* const*>(in + p.lay.maskptr);
  float *X = x.get<float>(), *XB = xb.get<float>(), *Q = q.get<float>(), *Kt = k.get<float>(), *Vt = v.get<float>();
  float *A = att.get<float>(), *G = gate.get<float>(), *U = up.get<float>();

  embedding(X, tokens, tok_emb.data, tok_emb.dtype, R, H, s);
  for (int l = 0; l < p.L; ++l) {
    const DeviceLayer& lw = layers[l];
    using LR = LayerRole;
    rmsnorm(XB, X, static_cast<const float*>(lw[LR::AttnNorm].data), R, H, c.rms_eps, s);
    proj(Q, XB, lw[LR::Wq], R, QD, H);
    proj(Kt, XB, lw[LR::Wk], R, KVD, H);
    proj(Vt, XB, lw[LR::Wv], R, KVD, H);
    if (c.qkv_bias) {  // q/k/v biases (qwen2), before RoPE
      add_bias(Q, lw[LR::Bq], R, QD);
      add_bias(Kt, lw[LR::Bk], R, KVD);
      add_bias(Vt, lw[LR::Bv], R, KVD);
    }
    rope(Q, pos, R, Hq, Dh, c.rope_theta, s);
    rope(Kt, pos, R, Hkv, Dh, c.rope_theta, s);
    kv_store(kptr + static_cast<size_t>(l) * B, vptr + static_cast<size_t>(l) * B, Kt, Vt, row_seq, row_slot, R, KVD,
             s);
    AttentionBatch ab;
    ab.row0 = row0;
    ab.n_past = n_past;
    ab.k = kptr + static_cast<size_t>(l) * B;
    ab.v = vptr + static_cast<size_t>(l) * B;
    ab.mask = maskptr;
    attention(A, Q, ab, B, p.max_T, p.max_S, Hq, Hkv, Dh, KVD, s, AttentionWorkspace{attn_ws.get(), attn_ws.bytes()});
    proj(XB, A, lw[LR::Wo], R, H, QD);
    add(X, XB, static_cast<int64_t>(R) * H, s);

    rmsnorm(XB, X, static_cast<const float*>(lw[LR::FfnNorm].data), R, H, c.rms_eps, s);
    proj(G, XB, lw[LR::W1], R, F, H);
    proj(U, XB, lw[LR::W3], R, F, H);
    swiglu(G, G, U, R, F, s);
    proj(XB, G, lw[LR::W2], R, H, F);
    add(X, XB, static_cast<int64_t>(R) * H, s);
    const auto cap = std::find(p.capture.begin(), p.capture.end(), l);
    if (cap != p.capture.end())  // a layer output some request asked for (never in a captured graph)
      SPECDEC_CUDA_CHECK(cudaMemcpyAsync(layer_out.get<float>() + static_cast<size_t>(cap - p.capture.begin()) * R * H,
                                         X, sizeof(float) * R * H, cudaMemcpyDeviceToDevice, s));
  }
  rmsnorm(X, X, static_cast<const float*>(final_norm.data), R, H, c.rms_eps, s);

  if (p.n_sel > 0) {
    const float* head_in = X;
    if (!p.head_in_place) {  // gather the rows whose logits were asked for into one block
      int r = 0;
      for (const auto& [first, count] : p.gather) {
        if (count > 0)
          SPECDEC_CUDA_CHECK(cudaMemcpyAsync(head_rows.get<float>() + static_cast<size_t>(r) * H,
                                             X + static_cast<size_t>(first) * H, sizeof(float) * count * H,
                                             cudaMemcpyDeviceToDevice, s));
        r += count;
      }
      head_in = head_rows.get<float>();
    }
    proj(logits.get<float>(), head_in, output, p.n_sel, V, H);
  }
}

void LlamaCuda::Impl::forward(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                              std::span<ForwardResult> out) {
  const ModelConfig& c = model->config;
  // Validate and lay out the batch as every backend does (core/model/batch_plan.h): sequence b owns rows
  // [row0[b], row0[b] + T_b).
  const BatchPlan bp = plan_batch(c, caches, reqs, out.size());
  const int B = bp.B;
  if (B == 0) return;
  const int H = c.dim, V = c.vocab_size, L = bp.L, R = bp.R;
  std::vector<CudaKVCache*> cc(B);
  for (int b = 0; b < B; ++b) {
    auto* cache = dynamic_cast<CudaKVCache*>(caches[b]);
    SPECDEC_CHECK(cache != nullptr, "a CUDA KV cache for the CUDA model (request ", b, ")");
    SPECDEC_CHECK(cache->owner() == this, "a KV cache made by this CUDA model's new_cache (request ", b, ")");
    cc[b] = cache;
  }
  const std::vector<int>& row0 = bp.row0;
  const std::vector<int32_t>& capture = bp.capture;

  LaunchPlan p;
  p.R = R;
  p.B = B;
  p.L = L;
  p.max_T = bp.max_T;
  // The attention bound max_S is the model's context, the same for every launch, so the decode graph can
  // replay at every step. (Attention's bits do not depend on it: its splits sit at fixed slot positions.)
  p.max_S = c.max_seq_len;
  p.n_sel = bp.n_sel;
  p.head_in_place = bp.n_sel == R;  // every row of every sequence selected, in order
  for (int b = 0; b < B; ++b) p.gather.emplace_back(bp.sel_first[b], bp.sel_n[b]);
  p.lay = InputLayout(R, B, L, bp.mask_bytes);
  p.capture = capture;
  const size_t capture_bytes = sizeof(float) * capture.size() * R * H;
  if (capture_bytes > 0) {
    layer_out.reserve(capture_bytes);
    layer_out_h.reserve(capture_bytes);
  }

  SPECDEC_CUDA_CHECK(cudaSetDevice(ctx->device));
  ensure_scratch(R, bp.n_sel, bp.any_hidden);
  if (p.lay.total > in_d.bytes()) {
    const size_t cap = std::max(p.lay.total, 2 * in_d.bytes());
    in_d = DeviceMem(cap);
    in_h.reserve(cap);
    ++epoch;
  }

  // Stage the inputs in pinned memory (the previous forward synchronized, so it is free) and upload them.
  uint8_t* h = in_h.get<uint8_t>();
  uint8_t* d = in_d.get<uint8_t>();
  auto* tok = reinterpret_cast<int32_t*>(h + p.lay.tokens);
  auto* pos = reinterpret_cast<int32_t*>(h + p.lay.pos);
  auto* row_seq = reinterpret_cast<int32_t*>(h + p.lay.row_seq);
  auto* row_slot = reinterpret_cast<int32_t*>(h + p.lay.row_slot);
  auto* row0_h = reinterpret_cast<int32_t*>(h + p.lay.row0);
  auto* n_past_h = reinterpret_cast<int32_t*>(h + p.lay.n_past);
  auto* kptr = reinterpret_cast<float**>(h + p.lay.kptr);
  auto* vptr = reinterpret_cast<float**>(h + p.lay.vptr);
  auto* maskptr = reinterpret_cast<const uint8_t**>(h + p.lay.maskptr);
  size_t mask_off = 0;
  for (int b = 0; b < B; ++b) {
    const ForwardRequest& r = reqs[b];
    const int T = row0[b + 1] - row0[b];
    for (int t = 0; t < T; ++t) {
      const int i = row0[b] + t;
      tok[i] = r.tokens[t];
      pos[i] = bp.pos[i];
      row_seq[i] = b;
      row_slot[i] = bp.n_past[b] + t;
    }
    row0_h[b] = row0[b];
    n_past_h[b] = bp.n_past[b];
    for (int l = 0; l < L; ++l) {
      kptr[static_cast<size_t>(l) * B + b] = cc[b]->k_layer(l);
      vptr[static_cast<size_t>(l) * B + b] = cc[b]->v_layer(l);
    }
    if (r.mask.empty()) {
      maskptr[b] = nullptr;  // causal
    } else {
      std::memcpy(h + p.lay.mask + mask_off, r.mask.data(), r.mask.size());
      maskptr[b] = d + p.lay.mask + mask_off;
      mask_off += r.mask.size();
    }
  }
  row0_h[B] = R;
  cudaStream_t s = ctx->stream;
  SPECDEC_CUDA_CHECK(cudaMemcpyAsync(d, h, p.lay.total, cudaMemcpyHostToDevice, s));

  const bool decode_step = B == 1 && R == 1 && reqs[0].mask.empty() && bp.n_sel == 1 && capture.empty();
  if (!(graphs_on && decode_step && launch_graph(p))) enqueue(p);

  if (bp.n_sel > 0)
    SPECDEC_CUDA_CHECK(
        cudaMemcpyAsync(logits_h.get(), logits.get(), sizeof(float) * bp.n_sel * V, cudaMemcpyDeviceToHost, s));
  if (bp.any_hidden)
    SPECDEC_CUDA_CHECK(cudaMemcpyAsync(hidden_h.get(), x.get(), sizeof(float) * R * H, cudaMemcpyDeviceToHost, s));
  if (capture_bytes > 0)
    SPECDEC_CUDA_CHECK(cudaMemcpyAsync(layer_out_h.get(), layer_out.get(), capture_bytes, cudaMemcpyDeviceToHost, s));
  SPECDEC_CUDA_CHECK(cudaStreamSynchronize(s));
  ++stats.forwards;

  const float* lg = logits_h.get<float>();
  const float* hd = hidden_h.get<float>();
  for (int b = 0, r = 0; b < B; ++b) {
    const int T = row0[b + 1] - row0[b];
    ForwardResult& o = out[b];
    o.logits.assign(lg + static_cast<size_t>(r) * V, lg + static_cast<size_t>(r + bp.sel_n[b]) * V);
    r += bp.sel_n[b];
    if (reqs[b].want_hidden)
      o.hidden.assign(hd + static_cast<size_t>(row0[b]) * H, hd + static_cast<size_t>(row0[b] + T) * H);
    else
      o.hidden.clear();
    // Layer outputs, token-major as LlamaCpu returns them: row t, then the requested layers in order.
    const auto& want = reqs[b].layer_outputs;
    o.layer_outputs.resize(static_cast<size_t>(T) * want.size() * H);
    for (size_t j = 0; j < want.size(); ++j) {
      const size_t ci =
          static_cast<size_t>(std::lower_bound(capture.begin(), capture.end(), want[j]) - capture.begin());
      for (int t = 0; t < T; ++t)
        std::memcpy(o.layer_outputs.data() + (static_cast<size_t>(t) * want.size() + j) * H,
                    layer_out_h.get<float>() + (ci * R + row0[b] + t) * H, sizeof(float) * H);
    }
    caches[b]->advance(T);
  }
}

// logits (n x V) = the LM head on n final-norm hidden states uploaded from the host: the same projection
// as the forward's last step.
void LlamaCuda::Impl::lm_head(std::span<const float> hidden, int n, std::vector<float>& logits_out) {
  const ModelConfig& c = model->config;
  const int H = c.dim, V = c.vocab_size;
  SPECDEC_CHECK(n >= 0 && hidden.size() == static_cast<size_t>(n) * H, "lm_head: ", n, " rows of ", H, " floats, got ",
                hidden.size(), " floats");
  logits_out.resize(static_cast<size_t>(n) * V);
  if (n == 0) return;
  SPECDEC_CUDA_CHECK(cudaSetDevice(ctx->device));
  ensure_scratch(0, n, false);
  cudaStream_t s = ctx->stream;
  SPECDEC_CUDA_CHECK(cudaMemcpyAsync(head_rows.get(), hidden.data(), sizeof(float) * n * H, cudaMemcpyHostToDevice, s));
  proj(logits.get<float>(), head_rows.get<float>(), output, n, V, H);
  SPECDEC_CUDA_CHECK(cudaMemcpyAsync(logits_h.get(), logits.get(), sizeof(float) * n * V, cudaMemcpyDeviceToHost, s));
  SPECDEC_CUDA_CHECK(cudaStreamSynchronize(s));
  std::memcpy(logits_out.data(), logits_h.get(), sizeof(float) * n * V);
}

}  // namespace specdec::cuda
