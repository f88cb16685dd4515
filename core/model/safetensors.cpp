// safetensors reader and the HF loader (every architecture of core/model/arch.h: LlamaForCausalLM,
// Qwen2ForCausalLM) over config.json + one file or index-listed shards.
// Tensors are viewed in the memory map; only q/k projections (RoPE row order) and non-f32 norms are
// copied into owned buffers.
#include "core/model/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/error.h"
#include "core/model/arch.h"
#include "kernels/cpu/dtype.h"

namespace specdec {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the safetensors library's own limit

std::string shape_string(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// A non-negative integer from a JSON header value, or -1 when v is not one.
int64_t json_uint(const json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? -1 : static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return std::max<int64_t>(v.get<int64_t>(), -1);
  return -1;
}

}  // namespace

size_t safetensors_dtype_size(std::string_view d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "BOOL" || d == "U8" || d == "I8" || d == "F8_E4M3" || d == "F8_E5M2" || d == "F8_E8M0") return 1;
  return 0;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> sf(new SafetensorsFile());
  sf->file_ = MappedFile::open(path);
  const MappedFile& f = *sf->file_;
  const uint64_t size = f.size();
  SPECDEC_CHECK(size >= 8, path, ": truncated safetensors file: ", size,
                " bytes, expected at least the 8-byte header length");
  uint64_t n = 0;
  std::memcpy(&n, f.data(), 8);  // little-endian, as is every host we build for
  SPECDEC_CHECK(n <= size - 8, path, ": safetensors header length ", n, " points past the end of the file (", size,
                " bytes)");
  SPECDEC_CHECK(n <= kMaxHeaderBytes, path, ": safetensors header length ", n, " exceeds the limit of ",
                kMaxHeaderBytes, " bytes");
  const uint64_t buffer_start = 8 + n;
  const uint64_t buffer_size = size - buffer_start;

  json header;
  try {
    header = json::parse(f.data() + 8, f.data() + buffer_start);
  } catch (const json::exception& e) {
    SPECDEC_FAIL(path, ": safetensors header is not valid JSON (", e.what(), ")");
  }
  SPECDEC_CHECK(header.is_object(), path, ": safetensors header is ", header.type_name(), ", expected a JSON object");

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& e = it.value();
    if (name == "__metadata__") {
      SPECDEC_CHECK(e.is_object(), path, ": '__metadata__' is ", e.type_name(), ", expected an object of strings");
      for (auto m = e.begin(); m != e.end(); ++m)
        if (m.value().is_string()) sf->metadata_[m.key()] = m.value().get<std::string>();
      continue;
    }
    SPECDEC_CHECK(e.is_object(), path, ": tensor '", name, "' header entry is ", e.type_name(), ", expected an object");
    SafetensorsTensor t;
    t.name = name;
    const auto dt = e.find("dtype");
    SPECDEC_CHECK(dt != e.end() && dt->is_string(), path, ": tensor '", name, "' has no string 'dtype'");
    t.dtype = dt->get<std::string>();
    const size_t elem = safetensors_dtype_size(t.dtype);
    SPECDEC_CHECK(elem > 0, path, ": tensor '", name, "' has unknown dtype '", t.dtype, "'");
    const auto sh = e.find("shape");
    SPECDEC_CHECK(sh != e.end() && sh->is_array(), path, ": tensor '", name, "' has no 'shape' array");
    uint64_t expected = elem;
    for (const json& d : *sh) {
      const int64_t v = json_uint(d);
      SPECDEC_CHECK(v >= 0, path, ": tensor '", name, "' has shape entry ", d.dump(),
                    ", expected a non-negative integer");
      SPECDEC_CHECK(!__builtin_mul_overflow(expected, static_cast<uint64_t>(v), &expected), path, ": tensor '", name,
                    "' has an absurd shape (byte size overflows)");
      t.shape.push_back(v);
    }
    const auto off = e.find("data_offsets");
    SPECDEC_CHECK(off != e.end() && off->is_array() && off->size() == 2, path, ": tensor '", name,
                  "' has no 'data_offsets' [begin, end]");
    const int64_t b = json_uint((*off)[0]), en = json_uint((*off)[1]);
    SPECDEC_CHECK(b >= 0 && en >= b, path, ": tensor '", name, "' has data_offsets ", off->dump(),
                  ", expected 0 <= begin <= end");
    SPECDEC_CHECK(static_cast<uint64_t>(en) <= buffer_size, path, ": tensor '", name, "' has data_offsets [", b, ", ",
                  en, "] past the end of the file (data buffer of ", buffer_size, " bytes): truncated or corrupt");
    const uint64_t actual = static_cast<uint64_t>(en - b);
    SPECDEC_CHECK(actual == expected, path, ": tensor '", name, "' (", t.dtype, " ", shape_string(t.shape), ") needs ",
                  expected, " bytes, but its data_offsets [", b, ", ", en, "] span ", actual);
    t.begin = buffer_start + static_cast<uint64_t>(b);
    t.end = buffer_start + static_cast<uint64_t>(en);
    t.data = f.data() + t.begin;
    sf->index_.emplace(name, sf->tensors_.size());
    sf->tensors_.push_back(std::move(t));
  }
  return sf;
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

void permute_rope_rows_hf_to_interleaved(void* dst, const void* src, int n_heads, int head_dim, size_t row_bytes) {
  auto* d = static_cast<uint8_t*>(dst);
  const auto* s = static_cast<const uint8_t*>(src);
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; ++h) {
    const size_t base = static_cast<size_t>(h) * head_dim;
    for (int i = 0; i < half; ++i) {
      std::memcpy(d + (base + 2 * i) * row_bytes, s + (base + i) * row_bytes, row_bytes);
      std::memcpy(d + (base + 2 * i + 1) * row_bytes, s + (base + i + half) * row_bytes, row_bytes);
    }
  }
}

// ---- HF loader -------------------------------------------------------------------------------------

namespace {

json read_json_file(const fs::path& p, const char* what) {
  std::ifstream in(p, std::ios::binary);
  SPECDEC_CHECK(in.good(), p.string(), ": cannot open; expected ", what);
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    SPECDEC_FAIL(p.string(), ": not valid JSON (", e.what(), ")");
  }
}

class HfConfig {
 public:
  HfConfig(json j, std::string path) : j_(std::move(j)), path_(std::move(path)) {
    SPECDEC_CHECK(j_.is_object(), path_, ": expected a JSON object, got ", j_.type_name());
  }
  const json* find(const char* key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  int positive_int(const char* key, std::optional<int> dflt = std::nullopt) const {
    const json* v = find(key);
    if (!v && dflt) return *dflt;
    SPECDEC_CHECK(v != nullptr, path_, ": key '", key, "' is missing; expected a positive integer");
    const int64_t i = json_uint(*v);
    SPECDEC_CHECK(i > 0 && i <= std::numeric_limits<int32_t>::max(), path_, ": key '", key, "' is ", v->dump(),
                  ", expected a positive integer");
    return static_cast<int>(i);
  }
  double number(const char* key, double dflt) const {
    const json* v = find(key);
    if (!v) return dflt;
    SPECDEC_CHECK(v->is_number(), path_, ": key '", key, "' is ", v->dump(), ", expected a number");
    return v->get<double>();
  }
  bool boolean(const char* key, bool dflt) const {
    const json* v = find(key);
    if (!v) return dflt;
    SPECDEC_CHECK(v->is_boolean(), path_, ": key '", key, "' is ", v->dump(), ", expected true or false");
    return v->get<bool>();
  }
  const std::string& path() const { return path_; }

 private:
  json j_;
  std::string path_;
};

// Where the tensors live: one file, or shards named by an index's weight_map (opened on first use).
class TensorSource {
 public:
  TensorSource(const fs::path& dir, const fs::path& single, const fs::path& index) : dir_(dir) {
    if (!single.empty()) {
      single_ = SafetensorsFile::open(single.string());
      files_.push_back(single_);
      return;
    }
    index_path_ = index.string();
    const json j = read_json_file(index, "a safetensors index (model.safetensors.index.json)");
    const auto wm = j.find("weight_map");
    SPECDEC_CHECK(j.is_object() && wm != j.end() && wm->is_object(), index_path_,
                  ": key 'weight_map' is missing; expected an object of tensor name -> file name");
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      SPECDEC_CHECK(it.value().is_string(), index_path_, ": weight_map entry '", it.key(), "' is ", it.value().dump(),
                    ", expected a file name");
      const std::string file = it.value().get<std::string>();
      // Shards sit beside the index: refuse paths that would leave the model folder.
      SPECDEC_CHECK(!file.empty() && file.find('/') == std::string::npos && file != "." && file != "..", index_path_,
                    ": weight_map entry '", it.key(), "' names '", file, "', expected a file name in the model folder");
      weight_map_.emplace(it.key(), file);
    }
  }

  struct Found {
    const SafetensorsTensor& tensor;
    const std::string& file;
  };
  // Returns the tensor and its file, or throws naming the file (or the index) and the tensor.
  Found get(const std::string& name) {
    if (single_) {
      const SafetensorsTensor* t = single_->find(name);
      SPECDEC_CHECK(t != nullptr, single_->path(), ": tensor '", name, "' is missing");
      return {*t, single_->path()};
    }
    auto it = weight_map_.find(name);
    SPECDEC_CHECK(it != weight_map_.end(), index_path_, ": tensor '", name, "' is missing from weight_map");
    const SafetensorsFile& f = shard(it->second);
    const SafetensorsTensor* t = f.find(name);
    SPECDEC_CHECK(t != nullptr, f.path(), ": tensor '", name, "' is missing (", index_path_,
                  " lists it in this shard)");
    return {*t, f.path()};
  }
  bool has(const std::string& name) { return single_ ? single_->find(name) != nullptr : weight_map_.count(name) != 0; }
  const std::vector<std::shared_ptr<SafetensorsFile>>& files() const { return files_; }

 private:
  const SafetensorsFile& shard(const std::string& file) {
    auto it = shards_.find(file);
    if (it == shards_.end()) {
      auto f = SafetensorsFile::open((dir_ / file).string());
      files_.push_back(f);
      it = shards_.emplace(file, std::move(f)).first;
    }
    return *it->second;
  }

  fs::path dir_;
  std::shared_ptr<SafetensorsFile> single_;
  std::string index_path_;
  std::unordered_map<std::string, std::string> weight_map_;
  std::unordered_map<std::string, std::shared_ptr<SafetensorsFile>> shards_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
};

cpu::DType to_dtype(const SafetensorsTensor& t, const std::string& path) {
  if (t.dtype == "F32") return cpu::DType::F32;
  if (t.dtype == "F16") return cpu::DType::F16;
  if (t.dtype == "BF16") return cpu::DType::BF16;
  SPECDEC_FAIL(path, ": tensor '", t.name, "' has dtype ", t.dtype, ", expected F32, F16 or BF16");
}

// A view of `name`, checked to be (rows, cols) (HF shape [rows, cols]; [cols] when rows == 0 marks a
// vector). Misaligned data (offsets are arbitrary in the format) are copied into an owned buffer.
WeightTensor st_view(TensorSource& src, const std::string& name, int64_t rows, int64_t cols,
                     std::vector<std::any>& storage) {
  const auto [t, file] = src.get(name);
  const bool vec = rows == 0;
  const std::vector<int64_t> want = vec ? std::vector<int64_t>{cols} : std::vector<int64_t>{rows, cols};
  SPECDEC_CHECK(t.shape == want, file, ": tensor '", name, "' has shape ", shape_string(t.shape), ", expected ",
                shape_string(want));
  WeightTensor w;
  w.name = name;
  w.dtype = to_dtype(t, file);
  w.rows = vec ? 1 : rows;
  w.cols = cols;
  w.data = t.data;
  const size_t elem = safetensors_dtype_size(t.dtype);
  if (reinterpret_cast<uintptr_t>(t.data) % elem != 0) {
    auto buf = std::make_shared<std::vector<float>>((t.nbytes() + 3) / 4);
    std::memcpy(buf->data(), t.data, t.nbytes());
    w.data = buf->data();
    storage.emplace_back(std::move(buf));
  }
  return w;
}

// Norm and bias vectors as f32 (f16/bf16 converted into an owned buffer).
WeightTensor st_vector(TensorSource& src, const std::string& name, int64_t n, std::vector<std::any>& storage) {
  return vector_to_f32(st_view(src, name, 0, n, storage), storage);
}

}  // namespace

std::shared_ptr<const LoadedModel> load_safetensors(const std::string& path) {
  // Resolve the folder and which weight file(s) to read.
  const fs::path p(path);
  std::error_code ec;
  fs::path dir, single, index;
  if (fs::is_directory(p, ec)) {
    dir = p;
    if (fs::exists(dir / "model.safetensors.index.json", ec))
      index = dir / "model.safetensors.index.json";
    else if (fs::exists(dir / "model.safetensors", ec))
      single = dir / "model.safetensors";
    else
      SPECDEC_FAIL(path, ": expected model.safetensors or model.safetensors.index.json in this folder");
  } else {
    SPECDEC_CHECK(fs::exists(p, ec), path, ": no such file or folder; expected a safetensors model");
    dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    const std::string fname = p.filename().string();
    if (fname.size() > 11 && fname.ends_with(".index.json"))
      index = p;
    else
      single = p;
  }

  const fs::path cfg_path = dir / "config.json";
  const HfConfig cfg(read_json_file(cfg_path, "a Hugging Face config.json beside the weights"), cfg_path.string());
  const std::string& cp = cfg.path();
  const Architecture* arch = nullptr;
  {
    const json* archs = cfg.find("architectures");
    const json* mt = cfg.find("model_type");
    if (archs && archs->is_array())
      for (const json& a : *archs)
        if (!arch && a.is_string()) arch = find_hf_architecture(a.get<std::string>());
    if (!archs && mt && mt->is_string()) arch = find_hf_model_type(mt->get<std::string>());
    SPECDEC_CHECK(arch != nullptr, cp, ": architectures is ", archs ? archs->dump() : "absent", " and model_type is ",
                  mt ? mt->dump() : "absent", ", expected ", architecture_list(&Architecture::hf_class));
  }
  if (const json* act = cfg.find("hidden_act"))
    SPECDEC_CHECK(act->is_string() && act->get<std::string>() == "silu", cp, ": key 'hidden_act' is ", act->dump(),
                  ", expected \"silu\"");
  // Biases beyond the architecture's own q/k/v biases (Llama's attention_bias also biases o_proj).
  SPECDEC_CHECK((arch->qkv_bias || !cfg.boolean("attention_bias", false)) && !cfg.boolean("mlp_bias", false), cp,
                ": keys 'attention_bias' / 'mlp_bias' are true, expected false (biases are not supported)");
  SPECDEC_CHECK(!cfg.boolean("use_sliding_window", false), cp,
                ": key 'use_sliding_window' is true, expected false (sliding-window attention is not supported)");
  // RoPE scaling changes the rotary frequencies; the forward has none, so refuse instead of diverging.
  if (const json* rs = cfg.find("rope_scaling"))
    SPECDEC_FAIL(cp, ": key 'rope_scaling' is ", rs->dump(), ", expected null (RoPE scaling is not supported)");

  auto m = std::make_shared<LoadedModel>();
  m->path = path;
  m->format = "safetensors";
  ModelConfig& c = m->config;
  c.arch = arch->name;
  c.qkv_bias = arch->qkv_bias;
  c.dim = cfg.positive_int("hidden_size");
  c.hidden_dim = cfg.positive_int("intermediate_size");
  c.n_layers = cfg.positive_int("num_hidden_layers");
  c.n_heads = cfg.positive_int("num_attention_heads");
  c.n_kv_heads = cfg.positive_int("num_key_value_heads", c.n_heads);
  c.vocab_size = cfg.positive_int("vocab_size");
  c.max_seq_len = cfg.positive_int("max_position_embeddings");
  c.head_dim = cfg.positive_int("head_dim", c.dim / c.n_heads);
  c.rope_theta = static_cast<float>(cfg.number("rope_theta", 10000.0));
  c.rms_eps = static_cast<float>(cfg.number("rms_norm_eps", 1e-6));  // LlamaConfig's default

  TensorSource src(dir, single, index);
  c.tied_embeddings = cfg.boolean("tie_word_embeddings", false) || !src.has(kOutput.hf);
  c.validate(cp);

  LlamaWeights& w = m->weights;
  const int64_t H = c.dim, V = c.vocab_size;
  w.tok_embeddings = st_view(src, kTokEmbd.hf, V, H, w.storage);
  // HF stores q/k (weights and biases) in rotate-half order; cpu::rope wants interleaved pairs.
  load_layers(c, w, "model.layers.", &LayerRoleInfo::hf, /*rotate_half=*/true,
              [&](const LayerRoleInfo& r, const std::string& name) {
                return r.kind == RoleKind::Matrix ? st_view(src, name, extent(r.rows, c), extent(r.cols, c), w.storage)
                                                  : st_vector(src, name, extent(r.cols, c), w.storage);
              });
  w.final_norm = st_vector(src, kFinalNorm.hf, H, w.storage);
  w.output = c.tied_embeddings ? w.tok_embeddings : st_view(src, kOutput.hf, V, H, w.storage);
  // Every file a view points into (shards open on first use, so collect them last).
  for (const auto& f : src.files()) w.storage.emplace_back(f->mapping());
  return m;
}

}  // namespace specdec
