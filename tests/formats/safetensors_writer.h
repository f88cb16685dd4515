// A small safetensors writer for tests: the JSON header is built as an object the test may edit (to
// make it lie) before it is serialized with the data buffer. Also a tiny HF LlamaForCausalLM folder.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "kernels/cpu/dtype.h"

namespace specdec::test {

struct StTensor {
  std::string name;
  std::string dtype;  // "F32", "F16", "BF16", ...
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

// Floats in F32, F16 or BF16 (bf16 by round-to-nearest-even).
inline std::vector<uint8_t> encode_floats(const std::vector<float>& v, const std::string& dtype) {
  std::vector<uint8_t> out;
  if (dtype == "F32") {
    out.resize(v.size() * 4);
    std::memcpy(out.data(), v.data(), out.size());
    return out;
  }
  out.resize(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    uint16_t h;
    if (dtype == "F16") {
      h = cpu::fp32_to_fp16(v[i]);
    } else {
      uint32_t u;
      std::memcpy(&u, &v[i], 4);
      h = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    std::memcpy(&out[2 * i], &h, 2);
  }
  return out;
}
inline float decode_float(const void* p, size_t i, cpu::DType t) {
  const auto* b = static_cast<const uint8_t*>(p);
  if (t == cpu::DType::F32) {
    float f;
    std::memcpy(&f, b + 4 * i, 4);
    return f;
  }
  uint16_t h;
  std::memcpy(&h, b + 2 * i, 2);
  return t == cpu::DType::F16 ? cpu::fp16_to_fp32(h) : cpu::bf16_to_fp32(h);
}

struct StFile {
  nlohmann::json header = nlohmann::json::object();
  std::vector<uint8_t> buffer;

  explicit StFile(const std::vector<StTensor>& tensors) {
    for (const StTensor& t : tensors) {
      header[t.name] = {
          {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {buffer.size(), buffer.size() + t.bytes.size()}}};
      buffer.insert(buffer.end(), t.bytes.begin(), t.bytes.end());
    }
    header["__metadata__"] = {{"format", "pt"}};
  }
  // 8-byte length, the JSON padded with spaces to a multiple of 8 (as the safetensors library does),
  // then the buffer. header_length_override writes another length.
  std::vector<uint8_t> bytes(std::optional<uint64_t> header_length_override = std::nullopt) const {
    std::string h = header.dump();
    h.resize((h.size() + 7) / 8 * 8, ' ');
    std::vector<uint8_t> out(8);
    const uint64_t n = header_length_override.value_or(h.size());
    std::memcpy(out.data(), &n, 8);
    out.insert(out.end(), h.begin(), h.end());
    out.insert(out.end(), buffer.begin(), buffer.end());
    return out;
  }
  void write(const std::filesystem::path& p, std::optional<uint64_t> header_length_override = std::nullopt) const {
    const auto b = bytes(header_length_override);
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
};

inline void write_json(const std::filesystem::path& p, const nlohmann::json& j) {
  std::ofstream f(p, std::ios::trunc);
  f << j.dump(2);
}

}  // namespace specdec::test
