// GGUF reader (v2/v3) over a memory map, and the GGUF loader for every architecture of core/model/arch.h: views tensors
// in place. Every byte comes through Cursor, which checks the mapping's bounds; every count or length the file states
// is checked against the bytes left before it sizes an allocation.
#include "core/model/gguf.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "core/model/arch.h"

namespace specdec {

namespace {

constexpr int kMaxArrayDepth = 16;          // nested metadata arrays: deeper is corrupt (and would recurse deeply)
constexpr int kMaxDims = 4;                 // GGML_MAX_DIMS
constexpr uint64_t kMaxNameLength = 65536;  // metadata keys and tensor names (ggml's names are <= 64 bytes)
// Array elements in all the metadata of one file. Each costs a GgufValue (40 bytes) in memory, so this
// bounds what a file full of tiny elements can make us allocate (~340 MB). Real files hold ~1-2 M (a
// 256k vocabulary's tokens, scores and types, plus merges).
constexpr uint64_t kMaxMetadataElements = 1ull << 23;

// GGML tensor types: id, name, elements per block, bytes per block. Ids 4, 5, 31-33 and 36-38 were
// removed from ggml and are rejected as unknown.
struct GgmlTypeInfo {
  uint32_t id;
  std::string_view name;
  uint32_t block;
  uint32_t block_bytes;
};
constexpr GgmlTypeInfo kGgmlTypes[] = {
    {0, "f32", 1, 4},         {1, "f16", 1, 2},         {2, "q4_0", 32, 18},      {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},      {8, "q8_0", 32, 34},      {9, "q8_1", 32, 40},
    {10, "q2_k", 256, 84},    {11, "q3_k", 256, 110},   {12, "q4_k", 256, 144},   {13, "q5_k", 256, 176},
    {14, "q6_k", 256, 210},   {15, "q8_k", 256, 292},   {16, "iq2_xxs", 256, 66}, {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},   {20, "iq4_nl", 32, 18},   {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},   {23, "iq4_xs", 256, 136}, {24, "i8", 1, 1},         {25, "i16", 1, 2},
    {26, "i32", 1, 4},        {27, "i64", 1, 8},        {28, "f64", 1, 8},        {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},       {34, "tq1_0", 256, 54},   {35, "tq2_0", 256, 66},   {39, "mxfp4", 32, 17},
};

const GgmlTypeInfo* ggml_type_info(uint32_t id) {
  for (const GgmlTypeInfo& t : kGgmlTypes)
    if (t.id == id) return &t;
  return nullptr;
}

bool is_integer(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}

// Smallest encoding of one value of type t: bounds an array's element count by the bytes left.
size_t min_encoded_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
    case GgufType::String:
      return 8;
    case GgufType::Array:
      return 12;  // element type + count
  }
  return 1;
}

// Bounds-checked little-endian reader over the mapping. `part` names what is being read, for the
// truncation message ("header", "metadata key 3 ('general.name')", "tensor info 5").
class Cursor {
 public:
  explicit Cursor(const MappedFile& f) : f_(f) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return f_.size() - pos_; }
  void set_part(std::string part) { part_ = std::move(part); }
  uint64_t elements_left = kMaxMetadataElements;  // budget for metadata array elements
  const std::string& part() const { return part_; }

  const uint8_t* take(size_t n) {
    if (n > remaining())
      SPECDEC_FAIL(f_.path(), ": truncated GGUF file: ", part_, " needs ", n, " bytes at offset ", pos_,
                   " but the file ends at ", f_.size());
    const uint8_t* p = f_.data() + pos_;
    pos_ += n;
    return p;
  }
  template <typename T>
  T read() {
    T v;
    std::memcpy(&v, take(sizeof(T)), sizeof(T));  // the format is little-endian, as is every host we build for
    return v;
  }
  // max_len guards names and keys (short by nature) against a lying length in a huge file.
  std::string read_string(uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
    const uint64_t n = read<uint64_t>();
    if (n > max_len)
      SPECDEC_FAIL(f_.path(), ": corrupt GGUF file: ", part_, " has a name of ", n, " bytes at offset ", pos_ - 8,
                   ", expected at most ", max_len);
    if (n > remaining())
      SPECDEC_FAIL(f_.path(), ": truncated GGUF file: ", part_, " has a string of ", n, " bytes at offset ", pos_ - 8,
                   " but only ", remaining(), " bytes follow");
    const uint8_t* p = take(static_cast<size_t>(n));
    return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }

 private:
  const MappedFile& f_;
  size_t pos_ = 0;
  std::string part_ = "header";
};

GgufType read_type_id(Cursor& c, const std::string& path, const char* what) {
  const uint32_t t = c.read<uint32_t>();
  if (t > static_cast<uint32_t>(GgufType::F64))
    SPECDEC_FAIL(path, ": ", c.part(), " has ", what, " ", t, ", expected a GGUF value type 0..12");
  return static_cast<GgufType>(t);
}

GgufValue read_value(Cursor& c, GgufType t, const std::string& path, int depth) {
  GgufValue out;
  switch (t) {
    case GgufType::U8:
      out.v.emplace<uint8_t>(c.read<uint8_t>());
      break;
    case GgufType::I8:
      out.v.emplace<int8_t>(c.read<int8_t>());
      break;
    case GgufType::U16:
      out.v.emplace<uint16_t>(c.read<uint16_t>());
      break;
    case GgufType::I16:
      out.v.emplace<int16_t>(c.read<int16_t>());
      break;
    case GgufType::U32:
      out.v.emplace<uint32_t>(c.read<uint32_t>());
      break;
    case GgufType::I32:
      out.v.emplace<int32_t>(c.read<int32_t>());
      break;
    case GgufType::F32:
      out.v.emplace<float>(c.read<float>());
      break;
    case GgufType::Bool:
      out.v.emplace<bool>(c.read<uint8_t>() != 0);
      break;
    case GgufType::String:
      out.v.emplace<std::string>(c.read_string());
      break;
    case GgufType::U64:
      out.v.emplace<uint64_t>(c.read<uint64_t>());
      break;
    case GgufType::I64:
      out.v.emplace<int64_t>(c.read<int64_t>());
      break;
    case GgufType::F64:
      out.v.emplace<double>(c.read<double>());
      break;
    case GgufType::Array: {
      SPECDEC_CHECK(depth < kMaxArrayDepth, path, ": ", c.part(), " nests arrays deeper than ", kMaxArrayDepth,
                    " levels (corrupt file?)");
      GgufArray a;
      a.elem_type = read_type_id(c, path, "array element type");
      const uint64_t n = c.read<uint64_t>();
      // A lying count must not size an allocation: every element takes at least min_encoded_size bytes.
      if (n > c.remaining() / min_encoded_size(a.elem_type))
        SPECDEC_FAIL(path, ": truncated GGUF file: ", c.part(), " has an array of ", n, " ",
                     gguf_type_name(a.elem_type), " values at offset ", c.pos() - 12, " but only ", c.remaining(),
                     " bytes follow");
      SPECDEC_CHECK(n <= c.elements_left, path, ": ", c.part(), " has an array of ", n, " values, over the limit of ",
                    kMaxMetadataElements, " metadata array elements per file");
      c.elements_left -= n;
      a.items.reserve(static_cast<size_t>(n));
      for (uint64_t i = 0; i < n; ++i) a.items.push_back(read_value(c, a.elem_type, path, depth + 1));
      out.v.emplace<GgufArray>(std::move(a));
      break;
    }
  }
  return out;
}

std::string printable(const uint8_t* p, size_t n) {
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (p[i] >= 32 && p[i] < 127) {
      s += static_cast<char>(p[i]);
    } else {
      static const char* hex = "0123456789abcdef";
      s += "\\x";
      s += hex[p[i] >> 4];
      s += hex[p[i] & 15];
    }
  }
  return s;
}

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::U8:
      return "uint8";
    case GgufType::I8:
      return "int8";
    case GgufType::U16:
      return "uint16";
    case GgufType::I16:
      return "int16";
    case GgufType::U32:
      return "uint32";
    case GgufType::I32:
      return "int32";
    case GgufType::F32:
      return "float32";
    case GgufType::Bool:
      return "bool";
    case GgufType::String:
      return "string";
    case GgufType::Array:
      return "array";
    case GgufType::U64:
      return "uint64";
    case GgufType::I64:
      return "int64";
    case GgufType::F64:
      return "float64";
  }
  return "unknown";
}

std::string_view ggml_type_name(uint32_t ggml_type) {
  const GgmlTypeInfo* t = ggml_type_info(ggml_type);
  return t ? t->name : std::string_view("unknown");
}

std::optional<cpu::DType> ggml_type_to_dtype(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0:
      return cpu::DType::F32;
    case 1:
      return cpu::DType::F16;
    case 2:
      return cpu::DType::Q4_0;
    case 3:
      return cpu::DType::Q4_1;
    case 8:
      return cpu::DType::Q8_0;
    case 12:
      return cpu::DType::Q4_K;
    case 13:
      return cpu::DType::Q5_K;
    case 14:
      return cpu::DType::Q6_K;
    case 30:
      return cpu::DType::BF16;
    default:
      return std::nullopt;
  }
}

int64_t GgufTensorInfo::rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < dims.size(); ++i) r *= dims[i];  // no overflow: parse() bounds the element count
  return r;
}

std::string GgufTensorInfo::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

// ---- GgufFile --------------------------------------------------------------------------------------

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) { return from_mapping(MappedFile::open(path)); }

std::shared_ptr<GgufFile> GgufFile::from_mapping(std::shared_ptr<MappedFile> file) {
  SPECDEC_CHECK(file != nullptr, "GgufFile::from_mapping: expected a mapped file, got null");
  std::shared_ptr<GgufFile> g(new GgufFile());
  g->file_ = std::move(file);
  g->parse();
  return g;
}

void GgufFile::parse() {
  const std::string& p = file_->path();
  Cursor c(*file_);

  // Header: magic, version, tensor count, metadata count.
  const uint8_t* magic = c.take(4);
  SPECDEC_CHECK(std::memcmp(magic, "GGUF", 4) == 0, p, ": not a GGUF file (magic '", printable(magic, 4),
                "', expected 'GGUF')");
  version_ = c.read<uint32_t>();
  if (version_ != 2 && version_ != 3) {
    const bool swapped = version_ == 0x02000000u || version_ == 0x03000000u;
    SPECDEC_FAIL(p, ": GGUF version ", version_, " is not supported; expected 2 or 3",
                 swapped         ? " (this looks like a big-endian file)"
                 : version_ == 1 ? " (version 1 is obsolete)"
                                 : "");
  }
  const uint64_t n_tensors = c.read<uint64_t>();
  const uint64_t n_kv = c.read<uint64_t>();
  // The counts may lie: reserve no more than the bytes left could hold (a key/value takes at least an
  // empty key (8) + type (4) + a 1-byte value; a tensor info at least 32 bytes). Reading then stops at
  // the first entry that does not fit, and the error names it.
  kv_.reserve(static_cast<size_t>(std::min<uint64_t>(n_kv, c.remaining() / 13)));
  for (uint64_t i = 0; i < n_kv; ++i) {
    c.set_part(detail::concat("metadata key ", i));
    std::string key = c.read_string(kMaxNameLength);
    c.set_part(detail::concat("metadata key ", i, " ('", key, "')"));
    const GgufType t = read_type_id(c, p, "value type");
    GgufValue v = read_value(c, t, p, 0);
    SPECDEC_CHECK(kv_index_.emplace(key, kv_.size()).second, p, ": metadata key '", key, "' appears twice");
    kv_.emplace_back(std::move(key), std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    SPECDEC_CHECK(a->type() == GgufType::U32, p, ": metadata key 'general.alignment' has type ",
                  gguf_type_name(a->type()), ", expected uint32");
    const uint32_t al = std::get<uint32_t>(a->v);
    SPECDEC_CHECK(al != 0 && (al & (al - 1)) == 0, p, ": metadata key 'general.alignment' is ", al,
                  ", expected a power of two");
    alignment_ = al;
  }

  tensors_.reserve(static_cast<size_t>(std::min<uint64_t>(n_tensors, c.remaining() / 32)));
  for (uint64_t i = 0; i < n_tensors; ++i) {
    c.set_part(detail::concat("tensor info ", i));
    GgufTensorInfo t;
    t.name = c.read_string(kMaxNameLength);
    c.set_part(detail::concat("tensor info ", i, " ('", t.name, "')"));
    const uint32_t n_dims = c.read<uint32_t>();
    SPECDEC_CHECK(n_dims >= 1 && n_dims <= static_cast<uint32_t>(kMaxDims), p, ": ", c.part(), " has ", n_dims,
                  " dimensions, expected 1..", kMaxDims);
    uint64_t n_elems = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t ne = c.read<uint64_t>();
      SPECDEC_CHECK(ne <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) &&
                        !__builtin_mul_overflow(n_elems, ne, &n_elems) &&
                        n_elems <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
                    p, ": ", c.part(), " has an absurd dimension ", ne, " (element count overflows)");
      t.dims.push_back(static_cast<int64_t>(ne));
    }
    t.ggml_type = c.read<uint32_t>();
    t.offset = c.read<uint64_t>();
    const GgmlTypeInfo* ti = ggml_type_info(t.ggml_type);
    SPECDEC_CHECK(ti != nullptr, p, ": ", c.part(), " has unknown GGML type ", t.ggml_type);
    t.dtype = ggml_type_to_dtype(t.ggml_type);
    SPECDEC_CHECK(t.dims[0] % ti->block == 0, p, ": ", c.part(), " of type ", ti->name, " has ", t.dims[0],
                  " columns, expected a multiple of its block size ", ti->block);
    // nbytes = blocks per row * block bytes * rows; n_elems bounds the product, but block_bytes may
    // exceed block (q8_1: 40 bytes per 32), so check the multiplication too.
    const uint64_t row = static_cast<uint64_t>(t.dims[0]) / ti->block * ti->block_bytes;
    const uint64_t rows = t.dims[0] == 0 ? 0 : n_elems / static_cast<uint64_t>(t.dims[0]);
    SPECDEC_CHECK(!__builtin_mul_overflow(row, rows, &t.nbytes), p, ": ", c.part(), " byte size overflows");
    SPECDEC_CHECK(tensor_index_.emplace(t.name, tensors_.size()).second, p, ": tensor '", t.name, "' appears twice");
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment; tensor offsets are relative to it.
  c.set_part("tensor data");
  data_offset_ = (c.pos() + alignment_ - 1) / alignment_ * alignment_;
  const uint64_t size = file_->size();
  for (GgufTensorInfo& t : tensors_) {
    SPECDEC_CHECK(t.offset % alignment_ == 0, p, ": tensor '", t.name, "' has offset ", t.offset,
                  ", expected a multiple of the alignment ", alignment_);
    uint64_t begin = 0, end = 0;
    const bool overflow =
        __builtin_add_overflow(data_offset_, t.offset, &begin) || __builtin_add_overflow(begin, t.nbytes, &end);
    if (overflow || end > size)
      SPECDEC_FAIL(p, ": tensor '", t.name, "' (", t.shape_string(), " ", ggml_type_name(t.ggml_type), ", ", t.nbytes,
                   " bytes at data offset ", t.offset, ") runs past the end of the file (", size,
                   " bytes, data section at ", data_offset_, "): truncated or corrupt");
    t.data = file_->data() + begin;
  }
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(std::string(key));
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(std::string(name));
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue& GgufFile::require(std::string_view key, GgufType expected) const {
  const GgufValue* v = find(key);
  SPECDEC_CHECK(v != nullptr, path(), ": metadata key '", key, "' is missing; expected ", gguf_type_name(expected));
  SPECDEC_CHECK(v->type() == expected, path(), ": metadata key '", key, "' has type ", gguf_type_name(v->type()),
                ", expected ", gguf_type_name(expected));
  return *v;
}

uint8_t GgufFile::get_u8(std::string_view k) const { return std::get<uint8_t>(require(k, GgufType::U8).v); }
int8_t GgufFile::get_i8(std::string_view k) const { return std::get<int8_t>(require(k, GgufType::I8).v); }
uint16_t GgufFile::get_u16(std::string_view k) const { return std::get<uint16_t>(require(k, GgufType::U16).v); }
int16_t GgufFile::get_i16(std::string_view k) const { return std::get<int16_t>(require(k, GgufType::I16).v); }
uint32_t GgufFile::get_u32(std::string_view k) const { return std::get<uint32_t>(require(k, GgufType::U32).v); }
uint32_t GgufFile::get_u32(std::string_view k, uint32_t dflt) const { return has(k) ? get_u32(k) : dflt; }
int32_t GgufFile::get_i32(std::string_view k) const { return std::get<int32_t>(require(k, GgufType::I32).v); }
uint64_t GgufFile::get_u64(std::string_view k) const { return std::get<uint64_t>(require(k, GgufType::U64).v); }
int64_t GgufFile::get_i64(std::string_view k) const { return std::get<int64_t>(require(k, GgufType::I64).v); }
float GgufFile::get_f32(std::string_view k) const { return std::get<float>(require(k, GgufType::F32).v); }
float GgufFile::get_f32(std::string_view k, float dflt) const { return has(k) ? get_f32(k) : dflt; }
double GgufFile::get_f64(std::string_view k) const { return std::get<double>(require(k, GgufType::F64).v); }
bool GgufFile::get_bool(std::string_view k) const { return std::get<bool>(require(k, GgufType::Bool).v); }
bool GgufFile::get_bool(std::string_view k, bool dflt) const { return has(k) ? get_bool(k) : dflt; }
const std::string& GgufFile::get_string(std::string_view k) const {
  return std::get<std::string>(require(k, GgufType::String).v);
}
std::string GgufFile::get_string(std::string_view k, const std::string& dflt) const {
  return has(k) ? get_string(k) : dflt;
}
const GgufArray& GgufFile::get_array(std::string_view k) const {
  return std::get<GgufArray>(require(k, GgufType::Array).v);
}

namespace {
// Any integer value as int64, or nullopt when v is not an integer or does not fit.
std::optional<int64_t> as_int64(const GgufValue& v) {
  return std::visit(
      [](const auto& x) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool> || !std::is_integral_v<T>) {
          return std::nullopt;
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          if (x > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
          return static_cast<int64_t>(x);
        } else {
          return static_cast<int64_t>(x);
        }
      },
      v.v);
}
}  // namespace

int64_t GgufFile::get_int(std::string_view k) const {
  const GgufValue* v = find(k);
  SPECDEC_CHECK(v != nullptr, path(), ": metadata key '", k, "' is missing; expected an integer");
  SPECDEC_CHECK(is_integer(v->type()), path(), ": metadata key '", k, "' has type ", gguf_type_name(v->type()),
                ", expected an integer");
  const std::optional<int64_t> i = as_int64(*v);
  SPECDEC_CHECK(i.has_value(), path(), ": metadata key '", k, "' is ", std::get<uint64_t>(v->v),
                ", expected a value that fits int64");
  return *i;
}
int64_t GgufFile::get_int(std::string_view k, int64_t dflt) const { return has(k) ? get_int(k) : dflt; }

double GgufFile::get_float(std::string_view k) const {
  const GgufValue* v = find(k);
  SPECDEC_CHECK(v != nullptr, path(), ": metadata key '", k, "' is missing; expected float32 or float64");
  if (v->type() == GgufType::F32) return std::get<float>(v->v);
  if (v->type() == GgufType::F64) return std::get<double>(v->v);
  SPECDEC_FAIL(path(), ": metadata key '", k, "' has type ", gguf_type_name(v->type()),
               ", expected float32 or float64");
}
double GgufFile::get_float(std::string_view k, double dflt) const { return has(k) ? get_float(k) : dflt; }

std::vector<std::string> GgufFile::get_string_array(std::string_view k) const {
  const GgufArray& a = get_array(k);
  SPECDEC_CHECK(a.elem_type == GgufType::String, path(), ": metadata key '", k, "' is an array of ",
                gguf_type_name(a.elem_type), ", expected an array of string");
  std::vector<std::string> out;
  out.reserve(a.items.size());
  for (const GgufValue& v : a.items) out.push_back(std::get<std::string>(v.v));
  return out;
}

std::vector<float> GgufFile::get_f32_array(std::string_view k) const {
  const GgufArray& a = get_array(k);
  SPECDEC_CHECK(a.elem_type == GgufType::F32, path(), ": metadata key '", k, "' is an array of ",
                gguf_type_name(a.elem_type), ", expected an array of float32");
  std::vector<float> out;
  out.reserve(a.items.size());
  for (const GgufValue& v : a.items) out.push_back(std::get<float>(v.v));
  return out;
}

std::vector<int32_t> GgufFile::get_i32_array(std::string_view k) const {
  const GgufArray& a = get_array(k);
  SPECDEC_CHECK(is_integer(a.elem_type), path(), ": metadata key '", k, "' is an array of ",
                gguf_type_name(a.elem_type), ", expected an array of integers");
  std::vector<int32_t> out;
  out.reserve(a.items.size());
  for (size_t i = 0; i < a.items.size(); ++i) {
    const std::optional<int64_t> x = as_int64(a.items[i]);
    SPECDEC_CHECK(x && *x >= std::numeric_limits<int32_t>::min() && *x <= std::numeric_limits<int32_t>::max(), path(),
                  ": metadata key '", k, "' element ", i, " does not fit int32");
    out.push_back(static_cast<int32_t>(*x));
  }
  return out;
}

// ---- llama loader ----------------------------------------------------------------------------------

namespace {

int hparam(const GgufFile& f, const std::string& key, std::optional<int64_t> dflt = std::nullopt) {
  const int64_t v = dflt ? f.get_int(key, *dflt) : f.get_int(key);
  SPECDEC_CHECK(v > 0 && v <= std::numeric_limits<int32_t>::max(), f.path(), ": metadata key '", key, "' is ", v,
                ", expected a positive int32");
  return static_cast<int>(v);
}

std::string dtype_list() {
  std::string s;
  for (const GgmlTypeInfo& t : kGgmlTypes)
    if (ggml_type_to_dtype(t.id)) s += (s.empty() ? "" : ", ") + std::string(t.name);
  return s;
}

// A view of tensor `name`, checked to be (rows, cols) in WeightTensor terms: GGUF [cols, rows].
// Data stay in the mapping unless misaligned for their element type (only with an odd
// general.alignment), in which case they are copied into an owned buffer.
WeightTensor gguf_view(const GgufFile& f, const std::string& name, int64_t rows, int64_t cols,
                       std::vector<std::any>& storage) {
  const GgufTensorInfo* t = f.find_tensor(name);
  SPECDEC_CHECK(t != nullptr, f.path(), ": tensor '", name, "' is missing");
  const std::string expected = rows == 1 ? detail::concat("[", cols, "]") : detail::concat("[", cols, ", ", rows, "]");
  SPECDEC_CHECK(t->cols() == cols && t->rows() == rows, f.path(), ": tensor '", name, "' has shape ", t->shape_string(),
                ", expected ", expected, " (GGUF order: columns first)");
  SPECDEC_CHECK(t->dtype.has_value(), f.path(), ": tensor '", name, "' has GGML type ", ggml_type_name(t->ggml_type),
                " (", t->ggml_type, "), which specdec cannot compute with; expected one of ", dtype_list());
  WeightTensor w;
  w.name = name;
  w.dtype = *t->dtype;
  w.rows = rows;
  w.cols = cols;
  w.data = t->data;
  SPECDEC_CHECK(w.nbytes() == t->nbytes, f.path(), ": tensor '", name, "' byte size ", t->nbytes, ", expected ",
                w.nbytes());
  const size_t align = w.dtype == cpu::DType::F32 ? 4 : 2;  // f32; f16/bf16 and every block's fp16 scale
  if (reinterpret_cast<uintptr_t>(t->data) % align != 0) {
    auto buf = std::make_shared<std::vector<float>>((t->nbytes + 3) / 4);
    std::memcpy(buf->data(), t->data, t->nbytes);
    w.data = buf->data();
    storage.emplace_back(std::move(buf));
  }
  return w;
}

// Norm and bias vectors are read as f32 by every kernel: f16/bf16 vectors are converted into an owned buffer.
WeightTensor gguf_vector(const GgufFile& f, const std::string& name, int64_t n, std::vector<std::any>& storage) {
  WeightTensor w = gguf_view(f, name, 1, n, storage);
  SPECDEC_CHECK(w.dtype == cpu::DType::F32 || w.dtype == cpu::DType::F16 || w.dtype == cpu::DType::BF16, f.path(),
                ": tensor '", name, "' is ", cpu::dtype_info(w.dtype).name,
                ", expected a norm vector or bias in f32, f16 or bf16");
  return vector_to_f32(w, storage);
}

}  // namespace

std::shared_ptr<const LoadedModel> load_gguf(const std::string& path) { return load_gguf(*GgufFile::open(path)); }

std::shared_ptr<const LoadedModel> load_gguf(const GgufFile& f) {
  const std::string& p = f.path();
  const std::string& arch = f.get_string("general.architecture");
  const Architecture* a = find_architecture(arch);
  SPECDEC_CHECK(a != nullptr, p, ": general.architecture is '", arch, "', expected ",
                architecture_list(&Architecture::name));
  const auto key = [&](const char* k) { return arch + "." + k; };  // "llama.block_count", "qwen2.block_count"

  auto m = std::make_shared<LoadedModel>();
  m->path = p;
  m->format = "gguf";
  ModelConfig& c = m->config;
  c.arch = a->name;
  c.qkv_bias = a->qkv_bias;
  c.dim = hparam(f, key("embedding_length"));
  c.hidden_dim = hparam(f, key("feed_forward_length"));
  c.n_layers = hparam(f, key("block_count"));
  c.n_heads = hparam(f, key("attention.head_count"));
  c.n_kv_heads = hparam(f, key("attention.head_count_kv"), c.n_heads);
  c.max_seq_len = hparam(f, key("context_length"));
  c.rope_theta = static_cast<float>(f.get_float(key("rope.freq_base"), 10000.0));
  c.rms_eps = static_cast<float>(f.get_float(key("attention.layer_norm_rms_epsilon"), 1e-5));
  // head_dim: key_length when given, else the rotary width (equal to head_dim for llama), else H / heads.
  c.head_dim = f.has(key("attention.key_length"))   ? hparam(f, key("attention.key_length"))
               : f.has(key("rope.dimension_count")) ? hparam(f, key("rope.dimension_count"))
                                                    : c.dim / c.n_heads;
  if (f.has(key("rope.dimension_count"))) {
    const int n_rot = hparam(f, key("rope.dimension_count"));
    SPECDEC_CHECK(n_rot == c.head_dim, p, ": metadata key '", key("rope.dimension_count"), "' is ", n_rot,
                  ", expected the head dimension ", c.head_dim, " (partial rotary embeddings are not supported)");
  }
  if (f.has(key("attention.value_length"))) {
    const int dv = hparam(f, key("attention.value_length"));
    SPECDEC_CHECK(dv == c.head_dim, p, ": metadata key '", key("attention.value_length"), "' is ", dv, ", expected ",
                  c.head_dim, " (the key length)");
  }
  // RoPE scaling changes the rotary frequencies at every position; the forward has none, so refuse
  // rather than run a subtly different model.
  const std::string scaling = f.get_string(key("rope.scaling.type"), "none");
  SPECDEC_CHECK(scaling == "none", p, ": metadata key '", key("rope.scaling.type"), "' is '", scaling,
                "', expected none (RoPE scaling is not supported)");
  SPECDEC_CHECK(f.find_tensor("rope_freqs.weight") == nullptr, p,
                ": tensor 'rope_freqs.weight' (llama3 RoPE frequency scaling) is present, expected none "
                "(RoPE scaling is not supported)");

  const GgufTensorInfo* embd = f.find_tensor(kTokEmbd.gguf);
  SPECDEC_CHECK(embd != nullptr, p, ": tensor 'token_embd.weight' is missing");
  if (f.has(key("vocab_size"))) {
    c.vocab_size = hparam(f, key("vocab_size"));
  } else if (f.has("tokenizer.ggml.tokens")) {
    const size_t n = f.get_array("tokenizer.ggml.tokens").items.size();
    SPECDEC_CHECK(n > 0 && n <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), p,
                  ": metadata key 'tokenizer.ggml.tokens' has ", n, " entries, expected 1..2^31-1");
    c.vocab_size = static_cast<int>(n);
  } else {
    SPECDEC_CHECK(embd->rows() > 0 && embd->rows() <= std::numeric_limits<int32_t>::max(), p,
                  ": tensor 'token_embd.weight' has ", embd->rows(), " rows, expected a vocabulary size");
    c.vocab_size = static_cast<int>(embd->rows());
  }
  c.tied_embeddings = f.find_tensor(kOutput.gguf) == nullptr;
  c.validate(p);

  LlamaWeights& w = m->weights;
  w.storage.emplace_back(f.mapping());
  const int64_t H = c.dim, V = c.vocab_size;
  w.tok_embeddings = gguf_view(f, kTokEmbd.gguf, V, H, w.storage);
  load_layers(c, w, "blk.", &LayerRoleInfo::gguf, a->gguf_rope_rotate_half,
              [&](const LayerRoleInfo& r, const std::string& name) {
                return r.kind == RoleKind::Matrix ? gguf_view(f, name, extent(r.rows, c), extent(r.cols, c), w.storage)
                                                  : gguf_vector(f, name, extent(r.cols, c), w.storage);
              });
  w.final_norm = gguf_vector(f, kFinalNorm.gguf, H, w.storage);
  w.output = c.tied_embeddings ? w.tok_embeddings : gguf_view(f, kOutput.gguf, V, H, w.storage);
  return m;
}

// ---- tokenizer metadata ----------------------------------------------------------------------------

GgufTokenizerMetadata read_gguf_tokenizer_metadata(const GgufFile& f) {
  GgufTokenizerMetadata t;
  t.model = f.get_string("tokenizer.ggml.model");
  t.pre = f.get_string("tokenizer.ggml.pre", "");
  t.tokens = f.get_string_array("tokenizer.ggml.tokens");
  const size_t V = t.tokens.size();
  SPECDEC_CHECK(V > 0 && V <= static_cast<size_t>(std::numeric_limits<int32_t>::max()), f.path(),
                ": metadata key 'tokenizer.ggml.tokens' has ", V, " entries, expected 1..2^31-1");
  if (f.has("tokenizer.ggml.scores")) {
    t.scores = f.get_f32_array("tokenizer.ggml.scores");
    SPECDEC_CHECK(t.scores.size() == V, f.path(), ": metadata key 'tokenizer.ggml.scores' has ", t.scores.size(),
                  " entries, expected one per token (", V, ")");
  }
  if (f.has("tokenizer.ggml.token_type")) {
    t.token_types = f.get_i32_array("tokenizer.ggml.token_type");
    SPECDEC_CHECK(t.token_types.size() == V, f.path(), ": metadata key 'tokenizer.ggml.token_type' has ",
                  t.token_types.size(), " entries, expected one per token (", V, ")");
  }
  if (f.has("tokenizer.ggml.merges")) t.merges = f.get_string_array("tokenizer.ggml.merges");

  auto id = [&](const char* key) -> int32_t {
    if (!f.has(key)) return -1;
    const int64_t v = f.get_int(key);
    SPECDEC_CHECK(v >= 0 && static_cast<uint64_t>(v) < V, f.path(), ": metadata key '", key, "' is ", v,
                  ", expected a token id in 0..", V - 1);
    return static_cast<int32_t>(v);
  };
  t.bos_id = id("tokenizer.ggml.bos_token_id");
  t.eos_id = id("tokenizer.ggml.eos_token_id");
  t.eot_id = id("tokenizer.ggml.eot_token_id");
  t.eom_id = id("tokenizer.ggml.eom_token_id");
  t.unk_id = id("tokenizer.ggml.unknown_token_id");
  t.pad_id = id("tokenizer.ggml.padding_token_id");
  auto flag = [&](const char* key) -> std::optional<bool> {
    return f.has(key) ? std::optional<bool>(f.get_bool(key)) : std::nullopt;
  };
  t.add_bos = flag("tokenizer.ggml.add_bos_token");
  t.add_eos = flag("tokenizer.ggml.add_eos_token");
  t.add_space_prefix = flag("tokenizer.ggml.add_space_prefix");
  t.chat_template = f.get_string("tokenizer.chat_template", "");
  return t;
}

}  // namespace specdec
