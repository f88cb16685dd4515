// Medusa heads (heads.h): the head state (residual SiLU blocks) the drafter and the trainer share, their
// initialisation, and the safetensors files in specdec's layout (written atomically) and the Medusa
// repository's (read). Loading reuses core's checked safetensors reader; writing is the small writer here.
#include "drafters/medusa/heads.h"

#include <Eigen/Dense>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "kernels/cpu/dtype.h"

namespace specdec::medusa {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

std::string block_name(int k, int l, const char* what) {
  return "heads." + std::to_string(k) + ".blocks." + std::to_string(l) + "." + what;
}
std::string lm_head_name(int k) { return "heads." + std::to_string(k) + ".lm_head.weight"; }

// Tells a file that is not safetensors at all from a truncated one before the checked reader parses it,
// so the one-line error says which.
void check_safetensors_prefix(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  SPECDEC_CHECK(in.good(), path, ": cannot open the Medusa heads file");
  const auto size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  char prefix[9] = {};
  in.read(prefix, static_cast<std::streamsize>(std::min<uint64_t>(size, 9)));
  SPECDEC_CHECK(size >= 9, path, ": not a safetensors file (", size,
                " bytes; expected an 8-byte header length and a JSON header)");
  uint64_t n = 0;
  std::memcpy(&n, prefix, 8);
  SPECDEC_CHECK(prefix[8] == '{', path,
                ": not a safetensors file (expected an 8-byte header length followed by a JSON header '{')");
  SPECDEC_CHECK(n <= size - 8, path, ": truncated safetensors file: its header needs ", n + 8, " bytes, the file has ",
                size);
}

}  // namespace

void MedusaHeads::head_state(int k, const float* h, float* out) const {
  SPECDEC_CHECK(k >= 0 && k < cfg.n_heads, "a Medusa head index in [0, ", cfg.n_heads, "), got ", k);
  const int H = cfg.hidden_size;
  Eigen::Map<Eigen::VectorXf> x(out, H);
  x = Eigen::Map<const Eigen::VectorXf>(h, H);
  Eigen::VectorXf y(H);
  for (int l = 0; l < cfg.n_layers; ++l) {
    const size_t i = static_cast<size_t>(k) * cfg.n_layers + l;
    y.noalias() = Eigen::Map<const RowMatrix>(w[i].data(), H, H) * x;
    y += Eigen::Map<const Eigen::VectorXf>(b[i].data(), H);
    x += y.unaryExpr([](float v) { return v / (1.f + std::exp(-v)); });
  }
}

MedusaHeads init_medusa_heads(const HeadsConfig& cfg, uint64_t seed, float init_scale) {
  SPECDEC_CHECK(!cfg.own_lm_head,
                "Medusa heads with own LM heads start as copies of the target's: pass it to "
                "init_medusa_heads");
  SPECDEC_CHECK(cfg.n_heads >= 1 && cfg.n_layers >= 1 && cfg.hidden_size >= 1 && cfg.vocab_size >= 1,
                "Medusa heads with n_heads, n_layers, hidden_size, vocab_size >= 1, got ", cfg.n_heads, ", ",
                cfg.n_layers, ", ", cfg.hidden_size, ", ", cfg.vocab_size);
  SPECDEC_CHECK(init_scale >= 0.f, "Medusa heads init_scale >= 0, got ", init_scale);
  MedusaHeads heads;
  heads.cfg = cfg;
  const size_t H = static_cast<size_t>(cfg.hidden_size);
  const size_t n_blocks = static_cast<size_t>(cfg.n_heads) * cfg.n_layers;
  // mt19937_64's output sequence is fixed by the standard (unlike std's distributions): the same seed
  // gives the same weights with every standard library.
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < n_blocks; ++i) {
    std::vector<float> w(H * H, 0.f);
    if (init_scale > 0.f)
      for (float& v : w) {
        const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
        v = static_cast<float>(init_scale * (2.0 * u - 1.0));
      }
    heads.w.push_back(std::move(w));
    heads.b.emplace_back(H, 0.f);
  }
  return heads;
}

MedusaHeads init_medusa_heads(const HeadsConfig& cfg, uint64_t seed, float init_scale,
                              const std::vector<float>& target_lm_head) {
  HeadsConfig shared = cfg;
  shared.own_lm_head = false;
  MedusaHeads heads = init_medusa_heads(shared, seed, init_scale);
  heads.cfg = cfg;
  if (cfg.own_lm_head) {
    SPECDEC_CHECK(target_lm_head.size() == static_cast<size_t>(cfg.vocab_size) * cfg.hidden_size,
                  "the target's LM head as V x H = ", cfg.vocab_size, " x ", cfg.hidden_size, " floats, got ",
                  target_lm_head.size());
    heads.lm_head.assign(static_cast<size_t>(cfg.n_heads), target_lm_head);
  }
  return heads;
}

// ---- safetensors ----------------------------------------------------------------------------------------

void write_safetensors_f32(const std::string& path, const std::vector<TensorToWrite>& tensors,
                           const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> bytes;
  for (const TensorToWrite& t : tensors) {
    uint64_t n = 1;
    for (int64_t d : t.shape) {
      SPECDEC_CHECK(d >= 0, path, ": tensor '", t.name, "' has a negative dimension in ", shape_text(t.shape));
      n *= static_cast<uint64_t>(d);
    }
    const bool i64 = t.data_i64 != nullptr;
    SPECDEC_CHECK(n == 0 || t.data != nullptr || i64, path, ": tensor '", t.name, "' has no data");
    const uint64_t size = n * (i64 ? sizeof(int64_t) : sizeof(float));
    bytes.push_back(size);
    header[t.name] = {{"dtype", i64 ? "I64" : "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data starts 8-byte aligned
  const uint64_t header_len = text.size();

  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "wb");
  SPECDEC_CHECK(f != nullptr, tmp, ": cannot create (", std::strerror(errno), ")");
  bool ok = std::fwrite(&header_len, 8, 1, f) == 1 && std::fwrite(text.data(), 1, text.size(), f) == text.size();
  for (size_t i = 0; ok && i < tensors.size(); ++i)
    ok = bytes[i] == 0 || std::fwrite(tensors[i].data_i64 ? static_cast<const void*>(tensors[i].data_i64)
                                                          : static_cast<const void*>(tensors[i].data),
                                      1, bytes[i], f) == bytes[i];
  ok = ok && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  const int saved_errno = errno;
  ok = std::fclose(f) == 0 && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    SPECDEC_FAIL(tmp, ": write failed (", std::strerror(saved_errno), ")");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  SPECDEC_CHECK(!ec, path, ": cannot rename ", tmp, " over it (", ec.message(), ")");
}

std::vector<float> read_safetensors_f32(const SafetensorsFile& file, const std::string& name,
                                        const std::vector<int64_t>& shape) {
  const SafetensorsTensor* t = file.find(name);
  SPECDEC_CHECK(t != nullptr, file.path(), ": tensor '", name, "' is missing");
  SPECDEC_CHECK(t->shape == shape, file.path(), ": tensor '", name, "' has shape ", shape_text(t->shape), ", expected ",
                shape_text(shape));
  size_t n = 1;
  for (int64_t d : shape) n *= static_cast<size_t>(d);
  std::vector<float> out(n);
  if (t->dtype == "F32") {
    std::memcpy(out.data(), t->data, n * sizeof(float));
  } else if (t->dtype == "F16" || t->dtype == "BF16") {
    const bool bf16 = t->dtype == "BF16";
    for (size_t i = 0; i < n; ++i) {
      uint16_t v;
      std::memcpy(&v, t->data + 2 * i, 2);
      out[i] = bf16 ? cpu::bf16_to_fp32(v) : cpu::fp16_to_fp32(v);
    }
  } else {
    SPECDEC_FAIL(file.path(), ": tensor '", name, "' has dtype ", t->dtype, ", expected F32, F16 or BF16");
  }
  return out;
}

void save_medusa_heads(const MedusaHeads& heads, const std::string& path) {
  const HeadsConfig& c = heads.cfg;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  SPECDEC_CHECK(heads.w.size() == static_cast<size_t>(c.n_heads) * c.n_layers && heads.b.size() == heads.w.size(), path,
                ": Medusa heads with ", c.n_heads, " x ", c.n_layers, " blocks, got ", heads.w.size(), " weights and ",
                heads.b.size(), " biases");
  SPECDEC_CHECK(!c.own_lm_head || heads.lm_head.size() == static_cast<size_t>(c.n_heads), path, ": ", c.n_heads,
                " own LM heads, got ", heads.lm_head.size());
  std::vector<TensorToWrite> tensors;
  for (int k = 0; k < c.n_heads; ++k) {
    for (int l = 0; l < c.n_layers; ++l) {
      const size_t i = static_cast<size_t>(k) * c.n_layers + l;
      SPECDEC_CHECK(heads.w[i].size() == static_cast<size_t>(H * H) && heads.b[i].size() == static_cast<size_t>(H),
                    path, ": block ", k, ".", l, " with ", H * H, " weights and ", H, " biases, got ",
                    heads.w[i].size(), " and ", heads.b[i].size());
      tensors.push_back({block_name(k, l, "weight"), {H, H}, heads.w[i].data()});
      tensors.push_back({block_name(k, l, "bias"), {H}, heads.b[i].data()});
    }
    if (c.own_lm_head) {
      SPECDEC_CHECK(heads.lm_head[k].size() == static_cast<size_t>(V * H), path, ": LM head ", k, " of ", V * H,
                    " values, got ", heads.lm_head[k].size());
      tensors.push_back({lm_head_name(k), {V, H}, heads.lm_head[k].data()});
    }
  }
  std::map<std::string, std::string> metadata;
  if (!heads.metadata_json.empty()) metadata["specdec"] = heads.metadata_json;
  write_safetensors_f32(path, tensors, metadata);
}

MedusaHeads load_medusa_heads(const std::string& path, const ModelConfig& target,
                              const std::string& expected_target_sha256) {
  check_safetensors_prefix(path);
  const std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(path);

  // Layout and geometry from the names: the largest head and block indices.
  static const std::regex specdec_re(R"(heads\.(\d+)\.(?:blocks\.(\d+)\.(weight|bias)|lm_head\.weight))");
  static const std::regex medusa_re(R"(medusa_head\.(\d+)\.(\d+)\.(linear\.weight|linear\.bias|weight))");
  enum class Layout { kUnknown, kSpecdec, kMedusa } layout = Layout::kUnknown;
  int max_head = -1, max_block = -1, medusa_lm_index = -1;
  const SafetensorsTensor* first_block = nullptr;
  for (const SafetensorsTensor& t : file->tensors()) {
    std::smatch m;
    Layout this_layout;
    if (std::regex_match(t.name, m, specdec_re)) {
      this_layout = Layout::kSpecdec;
      if (m[2].matched) max_block = std::max(max_block, std::stoi(m[2]));
    } else if (std::regex_match(t.name, m, medusa_re)) {
      this_layout = Layout::kMedusa;
      const int l = std::stoi(m[2]);
      if (m[3] == "weight") {
        SPECDEC_CHECK(medusa_lm_index < 0 || medusa_lm_index == l, path, ": Medusa LM heads at block indices ",
                      medusa_lm_index, " and ", l, " (tensor '", t.name, "'), expected one index after the blocks");
        medusa_lm_index = l;
      } else {
        max_block = std::max(max_block, l);
      }
    } else {
      SPECDEC_FAIL(path, ": unexpected tensor '", t.name,
                   "' in a Medusa heads file (expected heads.{k}.blocks.{l}.weight/.bias, heads.{k}.lm_head.weight "
                   "or medusa_head.{k}.{l}.linear.weight/.bias, medusa_head.{k}.{n_layers}.weight)");
    }
    SPECDEC_CHECK(layout == Layout::kUnknown || layout == this_layout, path, ": tensor '", t.name,
                  "' mixes the Medusa repository's and specdec's layouts");
    layout = this_layout;
    max_head = std::max(max_head, std::stoi(m[1]));
    if (!first_block && t.shape.size() == 2 && t.name.find("bias") == std::string::npos &&
        (this_layout == Layout::kSpecdec ? t.name.find("blocks") != std::string::npos
                                         : t.name.find("linear") != std::string::npos))
      first_block = &t;
  }
  SPECDEC_CHECK(layout != Layout::kUnknown && max_block >= 0, path,
                ": no Medusa head blocks (expected tensors heads.{k}.blocks.{l}.weight or "
                "medusa_head.{k}.{l}.linear.weight)");
  if (first_block)
    SPECDEC_CHECK(first_block->shape[1] == target.dim, path, ": heads have hidden size ", first_block->shape[1],
                  " (tensor '", first_block->name, "' ", shape_text(first_block->shape), "), the target's is ",
                  target.dim);

  MedusaHeads heads;
  HeadsConfig& c = heads.cfg;
  c.n_heads = max_head + 1;
  c.n_layers = max_block + 1;
  c.hidden_size = target.dim;
  c.vocab_size = target.vocab_size;
  const int64_t H = c.hidden_size, V = c.vocab_size;
  if (layout == Layout::kMedusa) {
    SPECDEC_CHECK(medusa_lm_index == c.n_layers, path, ": Medusa LM heads medusa_head.{k}.", c.n_layers,
                  ".weight after ", c.n_layers, " blocks, found index ", medusa_lm_index);
    c.own_lm_head = true;
  } else {
    c.own_lm_head = file->find(lm_head_name(0)) != nullptr;
  }

  auto lm_name = [&](int k) {
    return layout == Layout::kMedusa ? "medusa_head." + std::to_string(k) + "." + std::to_string(c.n_layers) + ".weight"
                                     : lm_head_name(k);
  };
  if (c.own_lm_head) {
    const SafetensorsTensor* lm = file->find(lm_name(0));
    SPECDEC_CHECK(lm != nullptr, path, ": tensor '", lm_name(0), "' is missing");
    SPECDEC_CHECK(lm->shape.size() != 2 || lm->shape[0] == V, path, ": heads have vocabulary size ", lm->shape[0],
                  " (tensor '", lm->name, "' ", shape_text(lm->shape), "), the target's is ", V);
  }
  for (int k = 0; k < c.n_heads; ++k) {
    for (int l = 0; l < c.n_layers; ++l) {
      const std::string w = layout == Layout::kMedusa
                                ? "medusa_head." + std::to_string(k) + "." + std::to_string(l) + ".linear.weight"
                                : block_name(k, l, "weight");
      const std::string b = layout == Layout::kMedusa
                                ? "medusa_head." + std::to_string(k) + "." + std::to_string(l) + ".linear.bias"
                                : block_name(k, l, "bias");
      heads.w.push_back(read_safetensors_f32(*file, w, {H, H}));
      heads.b.push_back(read_safetensors_f32(*file, b, {H}));
    }
    if (c.own_lm_head) heads.lm_head.push_back(read_safetensors_f32(*file, lm_name(k), {V, H}));
  }
  if (layout == Layout::kSpecdec && !c.own_lm_head)
    for (int k = 0; k < c.n_heads; ++k)
      SPECDEC_CHECK(file->find(lm_head_name(k)) == nullptr, path, ": tensor '", lm_head_name(k),
                    "' present but heads.0.lm_head.weight missing (every head has its own LM head or none has)");

  const auto meta = file->metadata().find("specdec");
  if (meta != file->metadata().end()) {
    heads.metadata_json = meta->second;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(heads.metadata_json);
    } catch (const nlohmann::json::exception& e) {
      SPECDEC_FAIL(path, ": the \"specdec\" metadata is not valid JSON (", e.what(), ")");
    }
    SPECDEC_CHECK(j.is_object(), path, ": the \"specdec\" metadata is ", j.type_name(), ", expected a JSON object");
    if (j.contains("hidden_size") && j["hidden_size"].is_number_integer())
      SPECDEC_CHECK(j["hidden_size"].get<int64_t>() == H, path, ": heads have hidden size ", j["hidden_size"].dump(),
                    " (metadata), the target's is ", H);
    if (j.contains("vocab_size") && j["vocab_size"].is_number_integer())
      SPECDEC_CHECK(j["vocab_size"].get<int64_t>() == V, path, ": heads have vocabulary size ", j["vocab_size"].dump(),
                    " (metadata), the target's is ", V);
    if (!expected_target_sha256.empty() && j.contains("target_sha256") && j["target_sha256"].is_string()) {
      const std::string sha = j["target_sha256"].get<std::string>();
      SPECDEC_CHECK(sha.empty() || sha == expected_target_sha256, path,
                    ": heads were trained for the target with "
                    "sha256 ",
                    sha, ", this target's is ", expected_target_sha256);
    }
  }
  return heads;
}

}  // namespace specdec::medusa
