// LlamaCuda::Impl's creation: the device context, every weight uploaded once in its stored dtype (K-quants
// dequantized on the host to f16), the attention workspace, whether decode graphs are on.
#include <algorithm>

#include "core/backends/cuda/llama_cuda_impl.h"
#include "core/error.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device.h"

namespace specdec::cuda {
namespace {

bool is_kquant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

}  // namespace

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
  SPECDEC_CHECK(static_cast<int>(w.layers.size()) == c.n_layers, model->path, ": ", c.n_layers,
                " layers of weights, got ", w.layers.size());
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

}  // namespace specdec::cuda
