// Loader for llama2.c checkpoints: the version-1 export (magic "ak42", 256-byte header, fp32) and the
// legacy version-0 layout (7 int32 header, fp32, negative vocab = separate classifier). Weights are
// viewed in place inside the memory map.
#include <cstring>
#include <initializer_list>

#include "core/error.h"
#include "core/model/arch.h"
#include "core/model/loader.h"
#include "core/model/mapped_file.h"

namespace specdec {
namespace {

constexpr uint32_t kMagicV1 = 0x616b3432;  // "ak42" little-endian
constexpr size_t kHeaderV1 = 256;
constexpr size_t kHeaderV0 = 7 * sizeof(int32_t);

// Hands out consecutive fp32 tensors from the mapping, checking each fits in the file.
class Cursor {
 public:
  Cursor(const MappedFile& f, size_t off) : f_(f), off_(off) {}
  WeightTensor take(const std::string& name, int64_t rows, int64_t cols) {
    const size_t bytes = static_cast<size_t>(rows * cols) * sizeof(float);
    SPECDEC_CHECK(off_ + bytes <= f_.size(), f_.path(), ": truncated llama2.c checkpoint: tensor ", name,
                  " needs bytes ", off_, "..", off_ + bytes, " but the file has ", f_.size());
    WeightTensor t{name, cpu::DType::F32, rows, cols, f_.data() + off_};
    off_ += bytes;
    return t;
  }
  void skip(size_t bytes) { off_ += bytes; }
  size_t offset() const { return off_; }

 private:
  const MappedFile& f_;
  size_t off_;
};

int32_t read_i32(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Expected file size for a header, so a wrong or truncated file is named before any tensor is read.
size_t expected_bytes(const ModelConfig& c, size_t header, bool v0) {
  const int64_t H = c.dim, L = c.n_layers, V = c.vocab_size;
  int64_t n = H + V * H;  // final norm, token embedding
  for (const LayerRoleInfo& r : layer_roles())
    if (role_present(r, c)) n += L * extent(r.rows, c) * extent(r.cols, c);
  if (v0) n += static_cast<int64_t>(c.max_seq_len) * c.head_dim;  // freq_cis real + imag
  if (!c.tied_embeddings) n += V * H;
  return header + static_cast<size_t>(n) * sizeof(float);
}

}  // namespace

std::shared_ptr<const LoadedModel> load_llama2c(const std::string& path) {
  auto file = MappedFile::open(path);
  const uint8_t* d = file->data();
  const size_t size = file->size();
  SPECDEC_CHECK(size >= kHeaderV0, path, ": expected a llama2.c checkpoint header (at least ", kHeaderV0,
                " bytes), the file has ", size, " bytes");

  auto m = std::make_shared<LoadedModel>();
  m->path = path;
  ModelConfig& c = m->config;
  c.arch = "llama";
  c.rope_theta = 10000.0f;
  c.rms_eps = 1e-5f;
  size_t header = 0;
  bool v0 = false;
  uint32_t magic;
  std::memcpy(&magic, d, 4);
  if (magic == kMagicV1) {
    SPECDEC_CHECK(size >= kHeaderV1, path, ": truncated llama2.c header: expected ", kHeaderV1, " bytes, the file has ",
                  size);
    const int32_t version = read_i32(d + 4);
    SPECDEC_CHECK(version == 1, path, ": llama2.c export version ", version,
                  " is not supported (expected version 1, fp32; version 2 is the int8 export)");
    const uint8_t* h = d + 8;
    c.dim = read_i32(h);
    c.hidden_dim = read_i32(h + 4);
    c.n_layers = read_i32(h + 8);
    c.n_heads = read_i32(h + 12);
    c.n_kv_heads = read_i32(h + 16);
    c.vocab_size = read_i32(h + 20);
    c.max_seq_len = read_i32(h + 24);
    c.tied_embeddings = h[28] != 0;
    header = kHeaderV1;
    m->format = "llama2c-v1";
  } else {
    // Legacy version 0 has no magic: 7 int32 with a negative vocab meaning "separate classifier".
    c.dim = read_i32(d);
    c.hidden_dim = read_i32(d + 4);
    c.n_layers = read_i32(d + 8);
    c.n_heads = read_i32(d + 12);
    c.n_kv_heads = read_i32(d + 16);
    const int32_t v = read_i32(d + 20);
    c.vocab_size = v < 0 ? -v : v;
    c.tied_embeddings = v > 0;
    c.max_seq_len = read_i32(d + 24);
    header = kHeaderV0;
    v0 = true;
    m->format = "llama2c-v0";
    const bool plausible = c.dim > 0 && c.dim <= 1 << 16 && c.n_layers > 0 && c.n_layers <= 1024 && c.n_heads > 0 &&
                           c.n_heads <= 1024 && c.n_kv_heads > 0 && c.vocab_size > 0 && c.vocab_size <= 1 << 24 &&
                           c.max_seq_len > 0 && c.hidden_dim > 0 && c.dim % c.n_heads == 0;
    SPECDEC_CHECK(plausible, path,
                  ": not a model file: expected GGUF (magic 'GGUF'), a llama2.c checkpoint "
                  "(magic 'ak42' or a legacy header), or a safetensors folder; magic bytes 0x",
                  std::hex, magic);
  }
  SPECDEC_CHECK(c.n_heads > 0 && c.dim % c.n_heads == 0, path, ": expected dim (", c.dim, ") divisible by n_heads (",
                c.n_heads, ")");
  c.head_dim = c.dim / c.n_heads;
  c.validate(path);
  const size_t want = expected_bytes(c, header, v0);
  SPECDEC_CHECK(size >= want, path, ": truncated llama2.c checkpoint: expected ", want, " bytes for ", c.describe(),
                ", the file has ", size);

  LlamaWeights& w = m->weights;
  const int64_t H = c.dim, L = c.n_layers, V = c.vocab_size;
  w.layers.resize(L);
  Cursor cur(*file, header);
  using R = LayerRole;
  auto per_layer = [&](std::initializer_list<LayerRole> roles) {  // each role for every layer, in order
    for (LayerRole role : roles) {
      const LayerRoleInfo& r = layer_role(role);
      for (int64_t l = 0; l < L; ++l)
        w.layers[l].*r.field =
            cur.take("layers." + std::to_string(l) + "." + r.llama2c, extent(r.rows, c), extent(r.cols, c));
    }
  };
  if (!v0) {
    per_layer({R::AttnNorm, R::FfnNorm});
    w.final_norm = cur.take("norm", 1, H);
    w.tok_embeddings = cur.take("tok_embeddings", V, H);
    per_layer({R::Wq, R::Wk, R::Wv, R::Wo, R::W1, R::W2, R::W3});
  } else {
    w.tok_embeddings = cur.take("tok_embeddings", V, H);
    per_layer({R::AttnNorm, R::Wq, R::Wk, R::Wv, R::Wo, R::FfnNorm, R::W1, R::W2, R::W3});
    w.final_norm = cur.take("rms_final", 1, H);
    cur.skip(static_cast<size_t>(c.max_seq_len) * c.head_dim * sizeof(float));  // precomputed RoPE tables
  }
  w.output = c.tied_embeddings ? w.tok_embeddings : cur.take("output", V, H);
  w.storage.emplace_back(file);
  return m;
}

}  // namespace specdec
