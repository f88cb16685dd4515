// Hugging Face safetensors: a checked reader of one file's header (8-byte length + JSON) over a memory
// map, and load_safetensors(), which loads a LlamaForCausalLM folder (config.json + model.safetensors or
// shards listed in model.safetensors.index.json) as a LoadedModel with f32/f16/bf16 tensors in place.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/model/loader.h"
#include "core/model/mapped_file.h"

namespace specdec {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;              // as in the header: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;     // row-major, outermost first (a torch Linear weight is [out, in])
  uint64_t begin = 0;             // absolute file offsets: [begin, end) lies inside the file and
  uint64_t end = 0;               // end - begin == element count * element size
  const uint8_t* data = nullptr;  // into the mapping

  uint64_t nbytes() const { return end - begin; }
};

// Bytes per element of a safetensors dtype name, 0 for a name this reader does not know.
size_t safetensors_dtype_size(std::string_view dtype);

// One .safetensors file. open() checks the header length against the file, parses the JSON header and
// checks every tensor's data_offsets (inside the byte buffer, and the size that dtype x shape needs);
// errors name the file and the tensor.
class SafetensorsFile {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;                       // nullptr when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }  // "__metadata__"

 private:
  SafetensorsFile() = default;
  std::shared_ptr<MappedFile> file_;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// HF stores q_proj / k_proj for the rotate-half RoPE convention (dimension i of a head pairs with
// i + D/2); cpu::rope() rotates adjacent pairs (2i, 2i+1) like llama.cpp's GGUF. This reorders the rows
// of a (n_heads * D, cols) matrix: for head h, source row h*D + i goes to h*D + 2i and source row
// h*D + i + D/2 to h*D + 2i + 1 (i < D/2). Rows are copied as bytes, so any dtype works.
// dst and src: n_heads * head_dim rows of row_bytes each; they must not overlap.
void permute_rope_rows_hf_to_interleaved(void* dst, const void* src, int n_heads, int head_dim, size_t row_bytes);

// path: a folder holding config.json and model.safetensors or model.safetensors.index.json (+ shards),
// or one of those files inside such a folder. Requires a Llama config (architectures LlamaForCausalLM
// or model_type llama). Tensors model.embed_tokens / model.layers.N.{input_layernorm,
// self_attn.{q,k,v,o}_proj, post_attention_layernorm, mlp.{gate,up,down}_proj} / model.norm / lm_head
// (absent, or tie_word_embeddings, = tied). Matrices in f32/f16/bf16 are viewed in the mapping, except
// q_proj / k_proj, which are permuted into owned buffers of the same dtype (see above); norms are
// converted to f32. weights.storage keeps the mappings and buffers alive.
std::shared_ptr<const LoadedModel> load_safetensors(const std::string& path);

}  // namespace specdec
