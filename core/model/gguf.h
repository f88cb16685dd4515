// GGUF (llama.cpp's model format, versions 2 and 3, little-endian): a bounds-checked reader of the
// header, typed metadata and tensor infos over a memory map, and load_gguf(), which views a `llama`
// model's tensors in place (no copy, no dequantization) as a LoadedModel. Also reads the tokenizer
// metadata (tokenizer.ggml.*) for core/tokenizer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/model/loader.h"
#include "core/model/mapped_file.h"
#include "kernels/cpu/dtype.h"

namespace specdec {

// Metadata value types; the numbers are the on-disk ids (gguf_type in ggml's gguf.h).
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
std::string_view gguf_type_name(GgufType t);  // "uint32", "string", "array", ...

struct GgufValue;
struct GgufArray {
  GgufType elem_type = GgufType::U8;
  std::vector<GgufValue> items;  // each item's type() == elem_type; arrays may nest
  friend bool operator==(const GgufArray&, const GgufArray&) = default;
};

// One metadata value. The variant's index is the GgufType id, so type() is exact and every type
// round-trips (uint8 stays uint8, a nested array keeps its element type).
struct GgufValue {
  std::variant<uint8_t, int8_t, uint16_t, int16_t, uint32_t, int32_t, float, bool, std::string, GgufArray, uint64_t,
               int64_t, double>
      v;
  GgufType type() const { return static_cast<GgufType>(v.index()); }
  friend bool operator==(const GgufValue&, const GgufValue&) = default;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;        // GGML ne[]: dims[0] is the contiguous (column) count, dims[1] the rows, ...
  uint32_t ggml_type = 0;           // on-disk id (GGML_TYPE_*)
  std::optional<cpu::DType> dtype;  // empty for a valid GGML type specdec cannot compute with (e.g. q5_0)
  uint64_t offset = 0;              // relative to the data section
  uint64_t nbytes = 0;
  const uint8_t* data = nullptr;  // into the mapping; [data, data + nbytes) lies inside the file

  int64_t cols() const { return dims.empty() ? 1 : dims[0]; }
  int64_t rows() const;              // product of dims[1..] (1 for a vector)
  std::string shape_string() const;  // "[64, 512]" in ne order
};

// Name of a GGML tensor type id ("q4_k", "bf16", ...), or "unknown" for an id ggml does not define.
std::string_view ggml_type_name(uint32_t ggml_type);

// A parsed GGUF file. Every read goes through a cursor checked against the mapping's size; counts and
// lengths from the file are checked against the bytes that remain before anything is allocated.
// Errors (specdec::Error) name the file and the part: header, metadata key N ('name'), tensor info N.
class GgufFile {
 public:
  static std::shared_ptr<GgufFile> open(const std::string& path);
  static std::shared_ptr<GgufFile> from_mapping(std::shared_ptr<MappedFile> file);

  const std::string& path() const { return file_->path(); }
  const std::shared_ptr<MappedFile>& mapping() const { return file_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }      // general.alignment, default 32
  uint64_t data_offset() const { return data_offset_; }  // file offset of the tensor data section

  // Metadata in file order, and lookup by key (nullptr when absent).
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Strict typed accessors: a missing key or a value of another type throws a one-line error naming
  // the file, the key and the expected type. The overloads with a default return it when the key is
  // absent (a present key of the wrong type still throws).
  uint8_t get_u8(std::string_view key) const;
  int8_t get_i8(std::string_view key) const;
  uint16_t get_u16(std::string_view key) const;
  int16_t get_i16(std::string_view key) const;
  uint32_t get_u32(std::string_view key) const;
  uint32_t get_u32(std::string_view key, uint32_t dflt) const;
  int32_t get_i32(std::string_view key) const;
  uint64_t get_u64(std::string_view key) const;
  int64_t get_i64(std::string_view key) const;
  float get_f32(std::string_view key) const;
  float get_f32(std::string_view key, float dflt) const;
  double get_f64(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  bool get_bool(std::string_view key, bool dflt) const;
  const std::string& get_string(std::string_view key) const;
  std::string get_string(std::string_view key, const std::string& dflt) const;
  const GgufArray& get_array(std::string_view key) const;

  // Lenient numeric accessors for hyperparameters that converters write with varying types:
  // get_int accepts any integer type (value must fit int64), get_float float32 or float64.
  int64_t get_int(std::string_view key) const;
  int64_t get_int(std::string_view key, int64_t dflt) const;
  double get_float(std::string_view key) const;
  double get_float(std::string_view key, double dflt) const;

  // Arrays of one element type, copied out: string, float32 and any integer type (-> int32, range
  // checked). Missing key or wrong element type throws.
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int32_t> get_i32_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent

 private:
  GgufFile() = default;
  void parse();
  const GgufValue& require(std::string_view key, GgufType expected) const;

  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

// Maps a GGML type id to the DType specdec computes with; empty for every other id.
std::optional<cpu::DType> ggml_type_to_dtype(uint32_t ggml_type);

// Loads a `general.architecture == "llama"` GGUF: hyperparameters from llama.* metadata, tensors
// token_embd / blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_output,ffn_norm,ffn_gate,ffn_down,ffn_up} /
// output_norm / output (absent = tied to token_embd) viewed in place in their stored dtype, each shape
// checked against the config. Norm vectors stored as f16/bf16 are converted to owned f32 buffers.
// attn_q / attn_k rows are already in the interleaved-pairs RoPE layout of cpu::rope(), as llama.cpp's
// converter permutes them, so they are used as they are. weights.storage keeps the MappedFile alive.
std::shared_ptr<const LoadedModel> load_gguf(const std::string& path);
std::shared_ptr<const LoadedModel> load_gguf(const GgufFile& file);

// The tokenizer.* metadata of a GGUF file, as plain data for core/tokenizer.
struct GgufTokenizerMetadata {
  std::string model;  // tokenizer.ggml.model: "llama" (SentencePiece-style BPE), "gpt2" (byte-level BPE), ...
  std::string pre;    // tokenizer.ggml.pre (pre-tokenizer name for gpt2-style vocabularies); "" if absent
  std::vector<std::string> tokens;   // tokenizer.ggml.tokens: V pieces
  std::vector<float> scores;         // tokenizer.ggml.scores: V, or empty when absent
  std::vector<int32_t> token_types;  // tokenizer.ggml.token_type: V (1 normal, 2 unknown, 3 control,
                                     // 4 user-defined, 5 unused, 6 byte), or empty when absent
  std::vector<std::string> merges;   // tokenizer.ggml.merges: "a b" pairs by rank, or empty
  // Special token ids, -1 when the key is absent.
  int32_t bos_id = -1, eos_id = -1, eot_id = -1, eom_id = -1, unk_id = -1, pad_id = -1;
  // Empty when the key is absent: the tokenizer applies its model's default (llama.cpp: "llama" adds
  // BOS and a space prefix; "gpt2" adds no space prefix).
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::string chat_template;  // tokenizer.chat_template, "" if absent
};

// Throws (naming the file and the key) when tokenizer.ggml.model or tokenizer.ggml.tokens is missing,
// when scores / token_type do not have one entry per token, or when a special id is out of range.
GgufTokenizerMetadata read_gguf_tokenizer_metadata(const GgufFile& file);

}  // namespace specdec
