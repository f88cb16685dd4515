// LlamaCuda: the Llama forward on one GPU, the fast twin of LlamaCpu (core/model/llama_cpu.cpp), whose
// semantics it follows step for step: projections over all R = sum(T_b) rows of the batch, attention per
// sequence (one launch per layer for the whole batch), early-exit caches, n_logits, hidden states.
//
// Numerics (what equals what):
// - Projections over R <= small_rows rows use cuda::matmul_small on the weights as stored (F32/F16/BF16:
//   fp32 activations and accumulation; Q8_0/Q4_0/Q4_1: activations quantized per 32-block as the CPU
//   does, integer block dots). It is batch-invariant, and so are the other per-row kernels (embedding,
//   RMSNorm, RoPE, SwiGLU, residual), so a verification block of T tokens equals T single steps bit for
//   bit, and greedy speculative decoding equals greedy AR decoding on the GPU token for token. Attention is
//   batch-invariant too (splits at fixed slot positions, kernels/cuda/attention.cu), for any block and batch;
//   the one exception is a tree node against its branch run as a chain when the tree block crosses a
//   256-slot split boundary (the branch's sums group differently: a last-bit difference).
// - More rows (prefill) use cuBLAS: F32 weights run an fp32 GEMM with CUBLAS_COMPUTE_32F_PEDANTIC (no
//   TF32); F16/BF16 weights are used in place and the activations rounded to the same type; quantized
//   weights are dequantized per projection into an f16 scratch (the exact value rounded to nearest even)
//   with f16 activations. Accumulation is fp32. Against the CPU this adds the f16 (2^-11) or bf16 (2^-8)
//   rounding of each operand; the KV entries a prefill writes then differ from a step-by-step prefill's
//   in the last bits, which is harmless (both AR and speculative runs prefill the same way).
// - Q4_K/Q5_K/Q6_K weights are dequantized on the host at load (cpu::dequantize_row, exact) and stored as
//   f16: the GPU runs the f16 path with fp32 activations where the CPU quantizes activations to Q8_K.
//
// Decode (B = 1, T = 1, causal, one logits row) is captured as a CUDA graph (one per layer count: the
// target's step and an early-exit drafter's) after one plain warm-up step, and replayed: every per-step
// value (token, position, cache slot, n_past, the cache's base pointers) is uploaded into one fixed device
// buffer before the launch and read on the device. A scratch buffer that grows (a captured pointer moves)
// re-captures; a failed capture turns graphs off for this model (stats().graph_disabled says why) and the
// step runs as plain launches. SPECDEC_CUDA_GRAPHS=0 turns them off from the start.
#include "kernels/cuda/llama_cuda.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <library_types.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "core/model/arch.h"
#include "core/model/batch_plan.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/convert.cuh"
#include "kernels/cuda/dequant.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/kv_cache.cuh"
#include "kernels/cuda/matmul_quant.cuh"
#include "kernels/cuda/residual.cuh"
#include "kernels/cuda/rmsnorm.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"

#define SPECDEC_CUBLAS_CHECK(call)                                                               \
  do {                                                                                           \
    const cublasStatus_t st_ = (call);                                                           \
    SPECDEC_CHECK(st_ == CUBLAS_STATUS_SUCCESS, #call, " failed: ", cublasGetStatusString(st_)); \
  } while (0)

namespace specdec::cuda {
namespace {

using cpu::DType;

size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

bool is_kquant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

// Owning CUDA memory from an allocator A: A::alloc(&p, bytes) (throws on failure) and A::free(p) (never
// throws: a free error at process exit is ignored). Movable, not copyable.
template <class A>
class CudaMem {
 public:
  CudaMem() = default;
  explicit CudaMem(size_t bytes) {
    if (bytes) A::alloc(&p_, bytes);
    bytes_ = bytes;
  }
  ~CudaMem() { reset(); }
  CudaMem(CudaMem&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  CudaMem& operator=(CudaMem&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  void reset() noexcept {
    if (p_) A::free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  // At least `bytes` (contents lost when it grows). True when the buffer moved.
  bool reserve(size_t bytes) {
    if (bytes <= bytes_) return false;
    reset();
    *this = CudaMem(bytes);
    return true;
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct DeviceAlloc {
  static void alloc(void** p, size_t bytes) { SPECDEC_CUDA_CHECK(cudaMalloc(p, bytes)); }
  static void free(void* p) noexcept { (void)cudaFree(p); }
};

struct PinnedAlloc {
  static void alloc(void** p, size_t bytes) { SPECDEC_CUDA_CHECK(cudaMallocHost(p, bytes)); }
  static void free(void* p) noexcept { (void)cudaFreeHost(p); }
};

// Owning device memory.
using DeviceMem = CudaMem<DeviceAlloc>;
// Owning page-locked host memory (async copies to and from it overlap nothing else but need no staging).
using PinnedMem = CudaMem<PinnedAlloc>;

// The device, the one stream every operation of a model and its caches runs on, and the cuBLAS handle.
struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;

  explicit Context(int dev) : device(dev) {
    SPECDEC_CUDA_CHECK(cudaSetDevice(dev));
    // A blocking stream: ordered with the legacy default stream, should any library call use it.
    SPECDEC_CUDA_CHECK(cudaStreamCreate(&stream));
    const cublasStatus_t st = cublasCreate(&cublas);
    if (st != CUBLAS_STATUS_SUCCESS) {
      (void)cudaStreamDestroy(stream);
      SPECDEC_FAIL("cublasCreate failed: ", cublasGetStatusString(st));
    }
    SPECDEC_CUBLAS_CHECK(cublasSetStream(cublas, stream));
    // Default math: no TF32 for fp32 GEMMs unless asked (the fp32 GEMM below is pedantic anyway).
    SPECDEC_CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));
  }
  ~Context() {
    if (cublas) (void)cublasDestroy(cublas);
    if (stream) (void)cudaStreamDestroy(stream);
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

// K and V of every layer in device memory: [layer][slot][kv_dim] fp32 each; capacity fixed at creation.
// Every operation runs on the owning model's stream, so it is ordered with that model's forwards.
class CudaKVCache final : public KVCache {
 public:
  CudaKVCache(const LlamaCuda::Impl* owner, std::shared_ptr<Context> ctx, int capacity, int n_layers, int kv_dim)
      : KVCache(capacity, n_layers),
        owner_(owner),
        ctx_(std::move(ctx)),
        kv_dim_(kv_dim),
        k_(static_cast<size_t>(n_layers) * capacity * kv_dim * sizeof(float)),
        v_(k_.bytes()),
        rows_(static_cast<size_t>(capacity) * sizeof(int32_t)) {}

  const LlamaCuda::Impl* owner() const { return owner_; }
  Context& context() const { return *ctx_; }
  int kv_dim() const { return kv_dim_; }
  float* k_layer(int l) const { return k_.get<float>() + static_cast<size_t>(l) * capacity_ * kv_dim_; }
  float* v_layer(int l) const { return v_.get<float>() + static_cast<size_t>(l) * capacity_ * kv_dim_; }

  // Device-to-device copies of the first n slots of every layer, on the model's stream.
  void copy_prefix(const KVCache& src, int n) override {
    const auto* s = dynamic_cast<const CudaKVCache*>(&src);
    SPECDEC_CHECK(s != nullptr && s->owner_ == owner_ && s->kv_dim_ == kv_dim_ && s->n_layers_ == n_layers_,
                  "a KV cache prefix from a CUDA cache of the same model and layer count");
    SPECDEC_CHECK(n >= 0 && n <= s->size() && n <= capacity_, "a KV cache prefix of 0..",
                  std::min(s->size(), capacity_), " slots, got ", n);
    SPECDEC_CUDA_CHECK(cudaSetDevice(ctx_->device));
    const size_t bytes = sizeof(float) * static_cast<size_t>(n) * kv_dim_;
    for (int l = 0; l < n_layers_; ++l) {
      SPECDEC_CUDA_CHECK(cudaMemcpyAsync(k_layer(l), s->k_layer(l), bytes, cudaMemcpyDeviceToDevice, ctx_->stream));
      SPECDEC_CUDA_CHECK(cudaMemcpyAsync(v_layer(l), s->v_layer(l), bytes, cudaMemcpyDeviceToDevice, ctx_->stream));
    }
    n_ = n;
  }

  // One kv_compact per tensor for every slot that moves (asynchronous on the model's stream).
  void compact(int base, std::span<const int32_t> rows) override {
    check_compact(base, rows);
    const int n = static_cast<int>(rows.size());
    int first = 0;  // rows[i] == i for i < first: those slots stay where they are
    while (first < n && rows[first] == first) ++first;
    if (first < n) {
      const int m = n - first;
      std::vector<int32_t> shifted(m);
      for (int j = 0; j < m; ++j) shifted[j] = rows[first + j] - first;
      SPECDEC_CUDA_CHECK(cudaSetDevice(ctx_->device));
      const size_t scratch_bytes = static_cast<size_t>(m) * kv_dim_ * n_layers_ * sizeof(float);
      if (scratch_bytes > scratch_.bytes()) {
        SPECDEC_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));  // an earlier compact may still read it
        scratch_.reserve(scratch_bytes);
      }
      // From pageable memory: the call returns once `shifted` is staged, so it may go out of scope.
      SPECDEC_CUDA_CHECK(cudaMemcpyAsync(rows_.get(), shifted.data(), sizeof(int32_t) * m, cudaMemcpyHostToDevice,
                                         ctx_->stream));
      kv_compact(k_.get<float>(), n_layers_, capacity_, kv_dim_, base + first, rows_.get<int32_t>(), m,
                 scratch_.get<float>(), ctx_->stream);
      kv_compact(v_.get<float>(), n_layers_, capacity_, kv_dim_, base + first, rows_.get<int32_t>(), m,
                 scratch_.get<float>(), ctx_->stream);
    }
    n_ = base + n;
  }

 protected:
  void move_slot(int from, int to) override {  // unused by compact() above; kept correct for completeness
    SPECDEC_CUDA_CHECK(cudaSetDevice(ctx_->device));
    const size_t bytes = sizeof(float) * kv_dim_;
    for (int l = 0; l < n_layers_; ++l) {
      SPECDEC_CUDA_CHECK(cudaMemcpyAsync(k_layer(l) + static_cast<size_t>(to) * kv_dim_,
                                         k_layer(l) + static_cast<size_t>(from) * kv_dim_, bytes,
                                         cudaMemcpyDeviceToDevice, ctx_->stream));
      SPECDEC_CUDA_CHECK(cudaMemcpyAsync(v_layer(l) + static_cast<size_t>(to) * kv_dim_,
                                         v_layer(l) + static_cast<size_t>(from) * kv_dim_, bytes,
                                         cudaMemcpyDeviceToDevice, ctx_->stream));
    }
  }

 private:
  const LlamaCuda::Impl* owner_;
  std::shared_ptr<Context> ctx_;
  int kv_dim_;
  DeviceMem k_, v_;
  DeviceMem rows_;     // compact's row list (capacity int32)
  DeviceMem scratch_;  // kv_compact's scratch, grown on demand
};

struct DeviceWeight {
  const void* data = nullptr;  // device
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
};

// One DeviceWeight per LayerRole (core/model/arch.h); upload() fills those the architecture has.
struct DeviceLayer {
  std::array<DeviceWeight, kLayerRoleCount> w;
  const DeviceWeight& operator[](LayerRole r) const { return w[static_cast<size_t>(r)]; }
  DeviceWeight& operator[](LayerRole r) { return w[static_cast<size_t>(r)]; }
};

// The device-side arguments of one forward, packed into one buffer: one upload per forward. The offsets
// depend only on (R, B, L, mask bytes), so the decode graph (R = B = 1) always finds its inputs in place.
struct InputLayout {
  size_t tokens = 0, pos = 0, row_seq = 0, row_slot = 0, row0 = 0, n_past = 0, kptr = 0, vptr = 0, maskptr = 0,
         mask = 0, total = 0;
  InputLayout(int R, int B, int L, size_t mask_bytes) {
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
};

// One forward as the launches see it.
struct Plan {
  int R = 0, B = 0, L = 0, max_T = 0, max_S = 0, n_sel = 0;
  bool head_in_place = true;                 // the logits rows are all R rows in order
  std::vector<std::pair<int, int>> gather;   // otherwise (first row, count) per sequence, concatenated
  std::vector<int32_t> capture;              // layers whose outputs some request asked for (sorted, distinct)
  InputLayout lay{0, 0, 0, 0};
};

bool graphs_env_off() {
  const char* e = std::getenv("SPECDEC_CUDA_GRAPHS");
  return e && std::string_view(e) == "0";
}

}  // namespace

struct LlamaCuda::Impl {
  std::shared_ptr<const LoadedModel> model;
  CudaModelOptions opts;
  std::shared_ptr<Context> ctx;

  DeviceMem arena;  // every weight, back to back (256-byte aligned)
  DeviceWeight tok_emb, final_norm, output;
  std::vector<DeviceLayer> layers;
  int64_t max_weight_elems = 0;  // the largest matrix: the f16 dequantization scratch of the GEMM path
  int kmax = 0;                  // the largest in_features of any projection

  // Scratch, sized for rows_cap rows (sel_cap logits rows); grown on demand.
  int rows_cap = 0, sel_cap = 0;
  DeviceMem x, xb, q, k, v, att, gate, up, mm, head_rows, logits;
  DeviceMem w16, act16;    // GEMM path only (never inside the decode graph)
  DeviceMem ones;          // rows_cap 1.0f: the q/k/v bias broadcast (add_bias), only when the model has biases
  DeviceMem in_d;          // the packed per-forward inputs (InputLayout)
  // The attention's split-K workspace (attention.cuh: caller-owned): sized once here, at model creation, for
  // the model's context (the max_S of every launch) and this GPU; never reallocated, so every captured decode
  // graph holds the same pointer and no allocation; freed with the model, after its stream's work (every
  // forward ends with a stream synchronisation, and ~Impl synchronises once more before any buffer goes).
  DeviceMem attn_ws;
  PinnedMem in_h, logits_h, hidden_h;
  DeviceMem layer_out;     // captured layer outputs, (capture.size(), R, H); grown on demand
  PinnedMem layer_out_h;
  uint64_t epoch = 0;      // bumped whenever a buffer the decode graph uses moves

  // Decode graphs by layer count: the target's step and an early-exit drafter's step (same model, fewer
  // layers) alternate during speculative decoding, so each keeps its own.
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    int max_S = -1;
    uint64_t epoch = 0;
    bool warmed = false;  // one plain run first: lazy module loading and attributes happen outside capture
  };
  std::map<int, Graph> graphs;
  bool graphs_on = true;
  CudaModelStats stats;

  Impl(std::shared_ptr<const LoadedModel> m, const CudaModelOptions& o);
  ~Impl() {
    if (ctx && ctx->stream) (void)cudaStreamSynchronize(ctx->stream);  // nothing in flight uses attn_ws & co.
    for (auto& [L, g] : graphs)
      if (g.exec) (void)cudaGraphExecDestroy(g.exec);
  }

  void upload();
  void ensure_scratch(int R, int n_sel, bool hidden);
  void lm_head(std::span<const float> hidden, int n, std::vector<float>& logits_out);
  void proj(float* out, const float* x, const DeviceWeight& w, int R, int N, int K);
  void add_bias(float* out, const DeviceWeight& b, int R, int N);
  void enqueue(const Plan& p);
  bool launch_graph(const Plan& p);
  void forward(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs, std::span<ForwardResult> out);
};

LlamaCuda::Impl::Impl(std::shared_ptr<const LoadedModel> m, const CudaModelOptions& o) : model(std::move(m)), opts(o) {
  SPECDEC_CHECK(model != nullptr, "a loaded model");
  model->config.validate(model->path);
  SPECDEC_CHECK(opts.small_rows >= 1, "CudaModelOptions::small_rows >= 1, got ", opts.small_rows);
  const int n = device_count();
  SPECDEC_CHECK(n > 0, "no CUDA device found");
  SPECDEC_CHECK(opts.device >= 0 && opts.device < n, "a CUDA device in 0..", n - 1, ", got ", opts.device);
  ctx = std::make_shared<Context>(opts.device);
  upload();
  const ModelConfig& c = model->config;
  attn_ws = DeviceMem(attention_workspace_bytes_for_device(c.max_seq_len, c.n_heads, c.head_dim, opts.device));
  stats.attention_workspace_bytes = attn_ws.bytes();
  if (!opts.graphs) {
    graphs_on = false;
    stats.graph_disabled = "off by option (CudaModelOptions::graphs = false)";
  } else if (graphs_env_off()) {
    graphs_on = false;
    stats.graph_disabled = "off by the environment (SPECDEC_CUDA_GRAPHS=0)";
  }
}

void LlamaCuda::Impl::upload() {
  const ModelConfig& c = model->config;
  const LlamaWeights& w = model->weights;
  SPECDEC_CHECK(static_cast<int>(w.layers.size()) == c.n_layers, model->path, ": ", c.n_layers, " layers of weights, got ",
                w.layers.size());
  struct Item {
    const WeightTensor* src;
    DeviceWeight* dst;
    size_t offset, bytes;
  };
  std::vector<Item> items;
  size_t total = 0;
  enum Kind { kVector, kMatrix, kTable };
  auto add = [&](const WeightTensor& t, DeviceWeight& d, Kind kind) {
    SPECDEC_CHECK(!t.empty(), model->path, ": weight ", t.name, " is missing");
    if (kind == kVector)
      SPECDEC_CHECK(t.dtype == DType::F32, model->path, ": norm or bias weight ", t.name, " as f32, got ",
                    cpu::dtype_info(t.dtype).name);
    d.dtype = is_kquant(t.dtype) ? DType::F16 : t.dtype;
    d.rows = t.rows;
    d.cols = t.cols;
    const size_t bytes = is_kquant(t.dtype) ? static_cast<size_t>(t.rows) * t.cols * 2 : t.nbytes();
    items.push_back({&t, &d, total, bytes});
    total = align_up(total + bytes, 256);
    if (kind == kMatrix) {
      max_weight_elems = std::max(max_weight_elems, t.rows * t.cols);
      kmax = std::max(kmax, static_cast<int>(t.cols));
    }
  };
  add(w.tok_embeddings, tok_emb, kTable);
  layers.resize(c.n_layers);
  for (int l = 0; l < c.n_layers; ++l) {
    for (const LayerRoleInfo& r : layer_roles())
      if (role_present(r, c))
        add(w.layers[l].*r.field, layers[l][r.role], r.kind == RoleKind::Matrix ? kMatrix : kVector);
  }
  add(w.final_norm, final_norm, kVector);
  const bool tied = w.output.data == w.tok_embeddings.data && w.output.dtype == w.tok_embeddings.dtype;
  if (!tied) add(w.output, output, kMatrix);
  max_weight_elems = std::max(max_weight_elems, w.output.rows * w.output.cols);
  kmax = std::max(kmax, static_cast<int>(w.output.cols));

  SPECDEC_CUDA_CHECK(cudaSetDevice(ctx->device));
  size_t free_b = 0, total_b = 0;
  SPECDEC_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  SPECDEC_CHECK(total <= free_b, model->path, ": ", total >> 20, " MiB of weights do not fit in the ", free_b >> 20,
                " MiB free on CUDA device ", ctx->device);
  arena = DeviceMem(total);
  std::vector<float> row;
  std::vector<uint16_t> half;
  for (const Item& it : items) {
    void* dst = arena.get<uint8_t>() + it.offset;
    const WeightTensor& t = *it.src;
    if (is_kquant(t.dtype)) {  // host: exact dequantization, then f16 (round to nearest even)
      half.resize(static_cast<size_t>(t.rows) * t.cols);
      row.resize(t.cols);
      const size_t rb = cpu::row_bytes(t.dtype, t.cols);
      for (int64_t r = 0; r < t.rows; ++r) {
        cpu::dequantize_row(row.data(), static_cast<const uint8_t*>(t.data) + rb * r, t.dtype, t.cols);
        for (int64_t j = 0; j < t.cols; ++j) half[r * t.cols + j] = cpu::fp32_to_fp16(row[j]);
      }
      SPECDEC_CUDA_CHECK(cudaMemcpy(dst, half.data(), it.bytes, cudaMemcpyHostToDevice));
    } else {
      SPECDEC_CUDA_CHECK(cudaMemcpy(dst, t.data, it.bytes, cudaMemcpyHostToDevice));
    }
    it.dst->data = dst;
  }
  if (tied) output = tok_emb;
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
  SPECDEC_CUBLAS_CHECK(cublasSger(ctx->cublas, N, R, &one, static_cast<const float*>(b.data), 1, ones.get<float>(), 1,
                                  out, N));
}

// Every launch of one forward, on the model's stream; reads its per-forward values from in_d.
void LlamaCuda::Impl::enqueue(const Plan& p) {
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
    attention(A, Q, ab, B, p.max_T, p.max_S, Hq, Hkv, Dh, KVD, s,
              AttentionWorkspace{attn_ws.get(), attn_ws.bytes()});
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

// Replays the captured decode step, capturing it first when needed. False: the caller runs the plain
// launches (the first step of a layer count, which warms up everything a capture must not do itself, or
// graphs are off after a failed capture).
bool LlamaCuda::Impl::launch_graph(const Plan& p) {
  cudaStream_t s = ctx->stream;
  Graph& graph = graphs[p.L];
  if (!graph.warmed) {
    graph.warmed = true;
    return false;
  }
  if (graph.exec == nullptr || graph.max_S != p.max_S || graph.epoch != epoch) {
    if (graph.exec) {
      SPECDEC_CUDA_CHECK(cudaGraphExecDestroy(graph.exec));
      graph.exec = nullptr;
    }
    auto give_up = [&](const std::string& why) {
      (void)cudaGetLastError();  // capture errors are not sticky; clear the last-error slot
      graphs_on = false;
      stats.graph_disabled = "capture failed: " + why;
      return false;
    };
    SPECDEC_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t g = nullptr;
    try {
      enqueue(p);
    } catch (const Error& e) {
      (void)cudaStreamEndCapture(s, &g);  // leave capture mode whatever happened
      if (g) (void)cudaGraphDestroy(g);
      return give_up(e.what());
    }
    const cudaError_t end = cudaStreamEndCapture(s, &g);
    if (end != cudaSuccess || g == nullptr) {
      if (g) (void)cudaGraphDestroy(g);
      return give_up(std::string("cudaStreamEndCapture: ") + cudaGetErrorString(end));
    }
    // Memory nodes (stream-ordered allocations captured into the graph): none expected, the workspace is ours.
    size_t n_nodes = 0;
    if (cudaGraphGetNodes(g, nullptr, &n_nodes) == cudaSuccess && n_nodes > 0) {
      std::vector<cudaGraphNode_t> nodes(n_nodes);
      if (cudaGraphGetNodes(g, nodes.data(), &n_nodes) == cudaSuccess) {
        for (size_t i = 0; i < n_nodes; ++i) {
          cudaGraphNodeType t{};
          if (cudaGraphNodeGetType(nodes[i], &t) == cudaSuccess &&
              (t == cudaGraphNodeTypeMemAlloc || t == cudaGraphNodeTypeMemFree))
            ++stats.graph_memory_nodes;
        }
      }
    }
    const cudaError_t inst = cudaGraphInstantiate(&graph.exec, g, 0);
    (void)cudaGraphDestroy(g);
    if (inst != cudaSuccess) {
      graph.exec = nullptr;
      return give_up(std::string("cudaGraphInstantiate: ") + cudaGetErrorString(inst));
    }
    graph.max_S = p.max_S;
    graph.epoch = epoch;
    ++stats.graph_captures;
  }
  SPECDEC_CUDA_CHECK(cudaGraphLaunch(graph.exec, s));
  ++stats.graph_launches;
  return true;
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

  Plan p;
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
    SPECDEC_CUDA_CHECK(cudaMemcpyAsync(logits_h.get(), logits.get(), sizeof(float) * bp.n_sel * V,
                                       cudaMemcpyDeviceToHost, s));
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
      const size_t ci = static_cast<size_t>(std::lower_bound(capture.begin(), capture.end(), want[j]) - capture.begin());
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
  SPECDEC_CHECK(n >= 0 && hidden.size() == static_cast<size_t>(n) * H, "lm_head: ", n, " rows of ", H,
                " floats, got ", hidden.size(), " floats");
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

// ---- LlamaCuda ---------------------------------------------------------------------------------------

LlamaCuda::LlamaCuda(std::shared_ptr<const LoadedModel> model, const CudaModelOptions& options)
    : impl_(std::make_unique<Impl>(std::move(model), options)) {}

LlamaCuda::~LlamaCuda() = default;

const ModelConfig& LlamaCuda::config() const { return impl_->model->config; }

const LoadedModel& LlamaCuda::loaded() const { return *impl_->model; }

CudaModelStats LlamaCuda::stats() const { return impl_->stats; }

std::unique_ptr<KVCache> LlamaCuda::new_cache(int capacity, int n_layers) const {
  const ModelConfig& c = config();
  if (n_layers < 0) n_layers = c.n_layers;
  SPECDEC_CHECK(n_layers >= 1 && n_layers <= c.n_layers, "cache layers in 1..", c.n_layers, ", got ", n_layers);
  SPECDEC_CHECK(capacity >= 1 && capacity <= c.max_seq_len, "context of 1..", c.max_seq_len,
                " tokens (the model's max_seq_len), got ", capacity);
  SPECDEC_CUDA_CHECK(cudaSetDevice(impl_->ctx->device));
  return std::make_unique<CudaKVCache>(impl_.get(), impl_->ctx, capacity, n_layers, c.kv_dim());
}

void LlamaCuda::forward_batch(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                              std::span<ForwardResult> out) {
  impl_->forward(caches, reqs, out);
}

void LlamaCuda::lm_head(std::span<const float> hidden, int n, std::vector<float>& logits) {
  impl_->lm_head(hidden, n, logits);
}

std::unique_ptr<Model> make_cuda_model(std::shared_ptr<const LoadedModel> model, int device) {
  CudaModelOptions o;
  o.device = device;
  return std::make_unique<LlamaCuda>(std::move(model), o);
}

std::unique_ptr<Model> make_cuda_model(std::shared_ptr<const LoadedModel> model, const CudaModelOptions& options) {
  return std::make_unique<LlamaCuda>(std::move(model), options);
}

void download_kv(const KVCache& cache, int layer, std::vector<float>& k, std::vector<float>& v) {
  const auto* c = dynamic_cast<const CudaKVCache*>(&cache);
  SPECDEC_CHECK(c != nullptr, "a KV cache made by a LlamaCuda");
  SPECDEC_CHECK(layer >= 0 && layer < c->n_layers(), "a cache layer in 0..", c->n_layers() - 1, ", got ", layer);
  Context& ctx = c->context();
  const size_t n = static_cast<size_t>(c->size()) * c->kv_dim();
  k.resize(n);
  v.resize(n);
  SPECDEC_CUDA_CHECK(cudaSetDevice(ctx.device));
  SPECDEC_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // pending forwards / compactions first
  if (n == 0) return;
  SPECDEC_CUDA_CHECK(cudaMemcpy(k.data(), c->k_layer(layer), sizeof(float) * n, cudaMemcpyDeviceToHost));
  SPECDEC_CUDA_CHECK(cudaMemcpy(v.data(), c->v_layer(layer), sizeof(float) * n, cudaMemcpyDeviceToHost));
}

CudaDeviceInfo cuda_device_info(int device) {
  CudaDeviceInfo info;
  cudaDeviceProp prop{};
  SPECDEC_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  info.name = prop.name;
  info.memory_bytes = prop.totalGlobalMem;
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  int drv = 0, rt = 0;
  SPECDEC_CUDA_CHECK(cudaDriverGetVersion(&drv));
  SPECDEC_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
  info.driver = version(drv);
  info.runtime = version(rt);
  int major = 0, minor = 0, patch = 0;
  SPECDEC_CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &major));
  SPECDEC_CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &minor));
  SPECDEC_CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &patch));
  info.cublas = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  return info;
}

}  // namespace specdec::cuda
