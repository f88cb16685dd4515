// The features file of drafters/train/features.h on disk (HDF5 C API; layout in docs/training-data.md):
// the atomic sequence-by-sequence writer, the reader with its one-line errors, and target_sha256.
// hidden is stored as an IEEE binary16 HDF5 float type built from F32 (HDF5 1.10 has no predefined one):
// h5py and numpy read it as float16; the values are rounded here (kernels/cpu fp32_to_fp16, nearest even).
#include "drafters/train/features.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/error.h"
#include "core/hdf5_handles.h"
#include "core/sha256.h"
#include "kernels/cpu/dtype.h"

namespace specdec::train {
namespace fs = std::filesystem;
namespace {

constexpr const char* kFormat = "specdec-features";
constexpr int kVersion = 1;

using hdf5::Hid;

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  SPECDEC_FAIL("features file '", path, "': ", what);
}

// An HDF5 call's result, or a one-line error naming the file, what we were doing and HDF5's reason.
template <typename T>
T h5(T result, const std::string& path, const std::string& doing) {
  if (result < 0) fail(path, doing + " failed (HDF5: " + hdf5::innermost_error() + ")");
  return result;
}

// IEEE binary16 little-endian: sign bit 15, exponent bits 10..14 (bias 15), mantissa bits 0..9.
Hid half_type() {
  Hid t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  const bool ok = t >= 0 && H5Tset_fields(t, 15, 10, 5, 0, 10) >= 0 && H5Tset_precision(t, 16) >= 0 &&
                  H5Tset_size(t, 2) >= 0 && H5Tset_ebias(t, 15) >= 0;
  SPECDEC_CHECK(ok, "building the HDF5 float16 type (HDF5: ", hdf5::innermost_error(), ")");
  return t;
}

// ---- attributes ---------------------------------------------------------------------------------------

void write_attr(hid_t loc, const char* name, const std::string& value, const std::string& path) {
  Hid type(h5(H5Tcopy(H5T_C_S1), path, "a string type"), H5Tclose);
  h5(H5Tset_size(type, H5T_VARIABLE), path, "a string type");
  h5(H5Tset_cset(type, H5T_CSET_UTF8), path, "a string type");
  Hid space(h5(H5Screate(H5S_SCALAR), path, "a scalar space"), H5Sclose);
  Hid attr(
      h5(H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT), path, std::string("creating attribute ") + name),
      H5Aclose);
  const char* p = value.c_str();
  h5(H5Awrite(attr, type, &p), path, std::string("writing attribute ") + name);
}

void write_attr(hid_t loc, const char* name, int32_t value, const std::string& path) {
  Hid space(h5(H5Screate(H5S_SCALAR), path, "a scalar space"), H5Sclose);
  Hid attr(h5(H5Acreate2(loc, name, H5T_STD_I32LE, space, H5P_DEFAULT, H5P_DEFAULT), path,
              std::string("creating attribute ") + name),
           H5Aclose);
  h5(H5Awrite(attr, H5T_NATIVE_INT32, &value), path, std::string("writing attribute ") + name);
}

bool has_attr(hid_t loc, const char* name, const std::string& path) {
  return h5(H5Aexists(loc, name), path, std::string("looking for attribute ") + name) > 0;
}

// A string attribute (variable- or fixed-length, as h5py or this writer store them).
std::string read_string_attr(hid_t loc, const char* name, const std::string& path) {
  if (!has_attr(loc, name, path)) fail(path, std::string("missing attribute '") + name + "'");
  Hid attr(h5(H5Aopen(loc, name, H5P_DEFAULT), path, std::string("opening attribute ") + name), H5Aclose);
  Hid type(h5(H5Aget_type(attr), path, std::string("reading attribute ") + name), H5Tclose);
  if (H5Tget_class(type) != H5T_STRING) fail(path, std::string("attribute '") + name + "' is not a string");
  if (h5(H5Tis_variable_str(type), path, std::string("reading attribute ") + name) > 0) {
    Hid mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem, H5T_VARIABLE);
    H5Tset_cset(mem, H5Tget_cset(type));
    char* p = nullptr;
    h5(H5Aread(attr, mem, &p), path, std::string("reading attribute ") + name);
    std::string s = p ? p : "";
    H5free_memory(p);
    return s;
  }
  std::string s(H5Tget_size(type), '\0');
  h5(H5Aread(attr, type, s.data()), path, std::string("reading attribute ") + name);
  s.resize(std::strlen(s.c_str()));  // fixed-length strings are null-padded
  return s;
}

int read_int_attr(hid_t loc, const char* name, const std::string& path) {
  if (!has_attr(loc, name, path)) fail(path, std::string("missing attribute '") + name + "'");
  Hid attr(h5(H5Aopen(loc, name, H5P_DEFAULT), path, std::string("opening attribute ") + name), H5Aclose);
  Hid type(h5(H5Aget_type(attr), path, std::string("reading attribute ") + name), H5Tclose);
  Hid space(h5(H5Aget_space(attr), path, std::string("reading attribute ") + name), H5Sclose);
  if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1)
    fail(path, std::string("attribute '") + name + "' is not an integer");
  int32_t v = 0;
  h5(H5Aread(attr, H5T_NATIVE_INT32, &v), path, std::string("reading attribute ") + name);
  return v;
}

// ---- opening and reading --------------------------------------------------------------------------------

Hid open_for_reading(const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) fail(path, "no such file");
  if (H5Fis_hdf5(path.c_str()) <= 0) {
    hdf5::innermost_error();  // clear the stack
    fail(path, "not an HDF5 file (expected a features file written by specdec collect)");
  }
  const hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) fail(path, "truncated or damaged: HDF5 cannot open it (" + hdf5::innermost_error() + ")");
  return Hid(f, H5Fclose);
}

FeatureFileInfo read_info(hid_t file, const std::string& path) {
  if (!has_attr(file, "format", path))
    fail(path, std::string("not a features file (no attribute format = ") + kFormat + ")");
  const std::string format = read_string_attr(file, "format", path);
  if (format != kFormat) fail(path, "not a features file (format = '" + format + "', expected '" + kFormat + "')");
  const int version = read_int_attr(file, "version", path);
  if (version != kVersion)
    fail(path, "version " + std::to_string(version) + ", this specdec reads version " + std::to_string(kVersion));
  FeatureFileInfo info;
  info.hidden_size = read_int_attr(file, "hidden_size", path);
  info.vocab_size = read_int_attr(file, "vocab_size", path);
  info.topk = read_int_attr(file, "topk", path);
  if (info.hidden_size <= 0 || info.vocab_size <= 0 || info.topk <= 0 || info.topk > info.vocab_size)
    fail(path, "attributes hidden_size = " + std::to_string(info.hidden_size) +
                   ", vocab_size = " + std::to_string(info.vocab_size) + ", topk = " + std::to_string(info.topk) +
                   " (expected all > 0 and topk <= vocab_size)");
  info.feature = read_string_attr(file, "feature", path);
  info.target_path = read_string_attr(file, "target_path", path);
  info.target_sha256 = read_string_attr(file, "target_sha256", path);
  info.sources = read_string_attr(file, "sources", path);
  if (has_attr(file, "created_by", path)) info.created_by = read_string_attr(file, "created_by", path);
  if (has_attr(file, "config", path)) info.config = read_string_attr(file, "config", path);
  return info;
}

std::string shape_text(const std::vector<hsize_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? " x " : "") + std::to_string(dims[i]);
  return s + "]";
}

// Opens dataset `name`, checks its type class and that its shape is `expected` (a -1 entry takes any
// extent and is filled in from the file).
Hid open_dataset(hid_t file, const char* name, H5T_class_t cls, std::vector<int64_t>& expected,
                 const std::string& path) {
  if (h5(H5Lexists(file, name, H5P_DEFAULT), path, std::string("looking for dataset ") + name) <= 0)
    fail(path, std::string("missing dataset '") + name + "'");
  Hid ds(h5(H5Dopen2(file, name, H5P_DEFAULT), path, std::string("opening dataset ") + name), H5Dclose);
  Hid type(h5(H5Dget_type(ds), path, std::string("reading dataset ") + name), H5Tclose);
  if (H5Tget_class(type) != cls)
    fail(path, std::string("dataset '") + name + "' has the wrong type (expected " +
                   (cls == H5T_INTEGER ? "integers" : "floats") + ")");
  Hid space(h5(H5Dget_space(ds), path, std::string("reading dataset ") + name), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space);
  std::vector<hsize_t> dims(static_cast<size_t>(std::max(rank, 0)));
  if (rank > 0) H5Sget_simple_extent_dims(space, dims.data(), nullptr);
  bool ok = rank == static_cast<int>(expected.size());
  for (size_t i = 0; ok && i < expected.size(); ++i)
    ok = expected[i] < 0 || dims[i] == static_cast<hsize_t>(expected[i]);
  if (!ok) {
    std::string text = "[";
    for (size_t i = 0; i < expected.size(); ++i)
      text += (i ? " x " : "") + (expected[i] < 0 ? std::string("*") : std::to_string(expected[i]));
    fail(path, std::string("dataset '") + name + "' is " + shape_text(dims) + ", expected " + text + "]");
  }
  for (size_t i = 0; i < expected.size(); ++i) expected[i] = static_cast<int64_t>(dims[i]);
  return ds;
}

template <typename T>
void read_all(hid_t ds, hid_t mem_type, std::vector<T>& out, size_t n, const char* name, const std::string& path) {
  out.resize(n);
  if (n > 0)
    h5(H5Dread(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()), path, std::string("reading dataset ") + name);
}

}  // namespace

// ---- reading ---------------------------------------------------------------------------------------------

FeatureFileInfo read_feature_info(const std::string& path) {
  hdf5::Quiet quiet;
  Hid file = open_for_reading(path);
  FeatureFileInfo info = read_info(file, path);
  std::vector<int64_t> tokens_shape = {-1}, offsets_shape = {-1};
  open_dataset(file, "tokens", H5T_INTEGER, tokens_shape, path);
  open_dataset(file, "offsets", H5T_INTEGER, offsets_shape, path);
  if (offsets_shape[0] < 1) fail(path, "dataset 'offsets' is empty (expected S + 1 >= 1 entries)");
  info.n_rows = tokens_shape[0];
  info.n_sequences = static_cast<int>(offsets_shape[0] - 1);
  return info;
}

FeatureData read_features(const std::string& path) {
  hdf5::Quiet quiet;
  Hid file = open_for_reading(path);
  const FeatureFileInfo info = read_info(file, path);
  FeatureData d;
  d.hidden_size = info.hidden_size;
  d.vocab_size = info.vocab_size;
  d.topk = info.topk;
  d.feature = info.feature;
  d.target_sha256 = info.target_sha256;

  std::vector<int64_t> tokens_shape = {-1};
  Hid tokens = open_dataset(file, "tokens", H5T_INTEGER, tokens_shape, path);
  const int64_t N = tokens_shape[0];
  std::vector<int64_t> offsets_shape = {-1};
  Hid offsets = open_dataset(file, "offsets", H5T_INTEGER, offsets_shape, path);
  if (offsets_shape[0] < 1) fail(path, "dataset 'offsets' is empty (expected S + 1 >= 1 entries)");
  const int64_t S = offsets_shape[0] - 1;
  std::vector<int64_t> prompt_shape = {S}, hidden_shape = {N, info.hidden_size}, ids_shape = {N, info.topk},
                       probs_shape = {N, info.topk};
  Hid prompt_len = open_dataset(file, "prompt_len", H5T_INTEGER, prompt_shape, path);
  Hid hidden = open_dataset(file, "hidden", H5T_FLOAT, hidden_shape, path);
  Hid topk_ids = open_dataset(file, "topk_ids", H5T_INTEGER, ids_shape, path);
  Hid topk_probs = open_dataset(file, "topk_probs", H5T_FLOAT, probs_shape, path);

  const size_t n = static_cast<size_t>(N), nk = n * static_cast<size_t>(info.topk);
  read_all(tokens, H5T_NATIVE_INT32, d.tokens, n, "tokens", path);
  read_all(offsets, H5T_NATIVE_INT64, d.offsets, static_cast<size_t>(S + 1), "offsets", path);
  read_all(prompt_len, H5T_NATIVE_INT32, d.prompt_len, static_cast<size_t>(S), "prompt_len", path);
  read_all(topk_ids, H5T_NATIVE_INT32, d.topk_ids, nk, "topk_ids", path);
  read_all(topk_probs, H5T_NATIVE_FLOAT, d.topk_probs, nk, "topk_probs", path);
  {
    std::vector<uint16_t> half;
    const Hid f16 = half_type();
    read_all(hidden, f16, half, n * static_cast<size_t>(info.hidden_size), "hidden", path);
    d.hidden.resize(half.size());
    for (size_t i = 0; i < half.size(); ++i) d.hidden[i] = cpu::fp16_to_fp32(half[i]);
  }

  // The row structure and the id ranges: a trainer indexes with these, so a bad value is the file's fault.
  if (d.offsets[0] != 0 || d.offsets[static_cast<size_t>(S)] != N)
    fail(path, "offsets run from " + std::to_string(d.offsets[0]) + " to " + std::to_string(d.offsets.back()) +
                   ", expected 0 to the row count " + std::to_string(N));
  for (int64_t s = 0; s < S; ++s) {
    const int64_t len = d.offsets[s + 1] - d.offsets[s];
    if (len < 0) fail(path, "offsets decrease at sequence " + std::to_string(s));
    if (d.prompt_len[s] < 0 || d.prompt_len[s] > len)
      fail(path, "prompt_len[" + std::to_string(s) + "] = " + std::to_string(d.prompt_len[s]) + ", expected 0.." +
                     std::to_string(len) + " (the sequence's length)");
  }
  const auto bad_id = [&](int32_t t) { return t < 0 || t >= info.vocab_size; };
  if (auto it = std::find_if(d.tokens.begin(), d.tokens.end(), bad_id); it != d.tokens.end())
    fail(path, "tokens[" + std::to_string(it - d.tokens.begin()) + "] = " + std::to_string(*it) +
                   ", expected an id below vocab_size " + std::to_string(info.vocab_size));
  if (auto it = std::find_if(d.topk_ids.begin(), d.topk_ids.end(), bad_id); it != d.topk_ids.end())
    fail(path, "topk_ids holds " + std::to_string(*it) + ", expected ids below vocab_size " +
                   std::to_string(info.vocab_size));
  if (auto it = std::find_if(d.topk_probs.begin(), d.topk_probs.end(), [](float p) { return !(p >= 0.f && p <= 1.f); });
      it != d.topk_probs.end())
    fail(path, "topk_probs holds " + std::to_string(*it) + ", expected probabilities in [0, 1]");
  return d;
}

std::string target_sha256(const std::string& model_path) {
  std::error_code ec;
  if (!fs::is_directory(model_path, ec)) return sha256_file(model_path);
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(model_path))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::string listing;
  for (const auto& f : files) listing += sha256_file(f.string()) + "  " + f.filename().string() + "\n";
  return sha256_hex(listing);
}

// ---- writing ---------------------------------------------------------------------------------------------

struct FeatureWriter::Impl {
  std::string path, tmp;
  FeatureFileInfo info;
  Hid half;
  Hid file, tokens, hidden, topk_ids, topk_probs;
  std::vector<int64_t> offsets = {0};
  std::vector<int32_t> prompt_len;
  std::vector<uint16_t> half_rows;  // scratch: one sequence's hidden as float16 bits
  bool committed = false;

  // Not committed (an error, a kill of the writer object, a move-assignment over it): drop PATH.tmp.
  ~Impl() {
    if (committed) return;
    hdf5::Quiet quiet;
    tokens.reset();
    hidden.reset();
    topk_ids.reset();
    topk_probs.reset();
    file.reset();
    std::remove(tmp.c_str());
  }

  // A chunked dataset of `cols` columns (0 = one-dimensional) that grows along its rows, chunks of ~256 KiB.
  Hid create_rows(const char* name, hid_t type, hsize_t cols) {
    const size_t elem = H5Tget_size(type);
    const hsize_t row_bytes = std::max<hsize_t>(1, cols) * elem;
    const hsize_t chunk_rows = std::max<hsize_t>(1, (hsize_t{256} << 10) / row_bytes);
    const int rank = cols ? 2 : 1;
    const hsize_t dims[2] = {0, cols}, maxdims[2] = {H5S_UNLIMITED, cols}, chunk[2] = {chunk_rows, cols};
    Hid space(h5(H5Screate_simple(rank, dims, maxdims), tmp, std::string("creating dataset ") + name), H5Sclose);
    Hid dcpl(h5(H5Pcreate(H5P_DATASET_CREATE), tmp, "a dataset property list"), H5Pclose);
    h5(H5Pset_chunk(dcpl, rank, chunk), tmp, std::string("chunking dataset ") + name);
    return Hid(h5(H5Dcreate2(file, name, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), tmp,
                  std::string("creating dataset ") + name),
               H5Dclose);
  }

  // Appends rows x cols values (memory type mem_type) at the end of ds.
  void append_rows(hid_t ds, const char* name, hid_t mem_type, const void* data, hsize_t rows, hsize_t cols) {
    if (rows == 0) return;
    const int rank = cols ? 2 : 1;
    const hsize_t old_rows = static_cast<hsize_t>(offsets.back());
    const hsize_t new_dims[2] = {old_rows + rows, cols};
    const std::string doing = std::string("appending to dataset ") + name;
    h5(H5Dset_extent(ds, new_dims), tmp, doing);
    Hid file_space(h5(H5Dget_space(ds), tmp, doing), H5Sclose);
    const hsize_t start[2] = {old_rows, 0}, count[2] = {rows, cols};
    h5(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, start, nullptr, count, nullptr), tmp, doing);
    Hid mem_space(h5(H5Screate_simple(rank, count, nullptr), tmp, doing), H5Sclose);
    h5(H5Dwrite(ds, mem_type, mem_space, file_space, H5P_DEFAULT, data), tmp, doing);
  }

  template <typename T>
  void write_fixed(const char* name, hid_t file_type, hid_t mem_type, const std::vector<T>& values) {
    const hsize_t dims[1] = {values.size()};
    Hid space(h5(H5Screate_simple(1, dims, nullptr), tmp, std::string("creating dataset ") + name), H5Sclose);
    Hid ds(h5(H5Dcreate2(file, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), tmp,
              std::string("creating dataset ") + name),
           H5Dclose);
    if (!values.empty())
      h5(H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), tmp,
         std::string("writing dataset ") + name);
  }
};

FeatureWriter::FeatureWriter(std::string path, const FeatureFileInfo& info) : impl_(std::make_unique<Impl>()) {
  Impl& w = *impl_;
  w.path = std::move(path);
  w.tmp = w.path + ".tmp";
  w.info = info;
  SPECDEC_CHECK(info.hidden_size > 0 && info.vocab_size > 0 && info.topk > 0 && info.topk <= info.vocab_size,
                "features file '", w.path, "': hidden_size, vocab_size, topk > 0 and topk <= vocab_size, got ",
                info.hidden_size, ", ", info.vocab_size, ", ", info.topk);
  hdf5::Quiet quiet;
  w.half = half_type();
  w.file =
      Hid(h5(H5Fcreate(w.tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), w.tmp, "creating the file"), H5Fclose);
  write_attr(w.file, "format", std::string(kFormat), w.tmp);
  write_attr(w.file, "version", kVersion, w.tmp);
  write_attr(w.file, "hidden_size", info.hidden_size, w.tmp);
  write_attr(w.file, "vocab_size", info.vocab_size, w.tmp);
  write_attr(w.file, "topk", info.topk, w.tmp);
  write_attr(w.file, "feature", info.feature, w.tmp);
  write_attr(w.file, "target_path", info.target_path, w.tmp);
  write_attr(w.file, "target_sha256", info.target_sha256, w.tmp);
  write_attr(w.file, "sources", info.sources, w.tmp);
  if (!info.created_by.empty()) write_attr(w.file, "created_by", info.created_by, w.tmp);
  if (!info.config.empty()) write_attr(w.file, "config", info.config, w.tmp);
  const hsize_t H = static_cast<hsize_t>(info.hidden_size), K = static_cast<hsize_t>(info.topk);
  w.tokens = w.create_rows("tokens", H5T_STD_I32LE, 0);
  w.hidden = w.create_rows("hidden", w.half, H);
  w.topk_ids = w.create_rows("topk_ids", H5T_STD_I32LE, K);
  w.topk_probs = w.create_rows("topk_probs", H5T_IEEE_F32LE, K);
}

FeatureWriter::FeatureWriter(FeatureWriter&&) noexcept = default;
FeatureWriter& FeatureWriter::operator=(FeatureWriter&&) noexcept = default;

FeatureWriter::~FeatureWriter() = default;

void FeatureWriter::append(std::span<const int32_t> tokens, int prompt_len, std::span<const float> hidden,
                           std::span<const int32_t> topk_ids, std::span<const float> topk_probs) {
  Impl& w = *impl_;
  SPECDEC_CHECK(!w.committed, "features file '", w.path, "': append after commit");
  const size_t T = tokens.size(), H = static_cast<size_t>(w.info.hidden_size), K = static_cast<size_t>(w.info.topk);
  SPECDEC_CHECK(hidden.size() == T * H && topk_ids.size() == T * K && topk_probs.size() == T * K, "features file '",
                w.path, "': a sequence of ", T, " tokens needs ", T * H, " hidden and ", T * K, " top-k values, got ",
                hidden.size(), ", ", topk_ids.size(), " and ", topk_probs.size());
  SPECDEC_CHECK(prompt_len >= 0 && static_cast<size_t>(prompt_len) <= T, "features file '", w.path,
                "': prompt_len in 0..", T, ", got ", prompt_len);
  w.half_rows.resize(hidden.size());
  for (size_t i = 0; i < hidden.size(); ++i) {
    w.half_rows[i] = cpu::fp32_to_fp16(hidden[i]);
    // 0x7c00 in the exponent bits: inf or nan, from a non-finite input or one beyond float16's 65504.
    SPECDEC_CHECK((w.half_rows[i] & 0x7c00u) != 0x7c00u, "features file '", w.path, "': hidden value ", hidden[i],
                  " (sequence ", w.prompt_len.size(), ", row ", i / H, ") does not fit float16");
  }
  hdf5::Quiet quiet;
  w.append_rows(w.tokens, "tokens", H5T_NATIVE_INT32, tokens.data(), T, 0);
  w.append_rows(w.hidden, "hidden", w.half, w.half_rows.data(), T, H);
  w.append_rows(w.topk_ids, "topk_ids", H5T_NATIVE_INT32, topk_ids.data(), T, K);
  w.append_rows(w.topk_probs, "topk_probs", H5T_NATIVE_FLOAT, topk_probs.data(), T, K);
  w.offsets.push_back(w.offsets.back() + static_cast<int64_t>(T));
  w.prompt_len.push_back(prompt_len);
}

void FeatureWriter::commit() {
  Impl& w = *impl_;
  SPECDEC_CHECK(!w.committed, "features file '", w.path, "': committed twice");
  {
    hdf5::Quiet quiet;
    w.write_fixed("offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, w.offsets);
    w.write_fixed("prompt_len", H5T_STD_I32LE, H5T_NATIVE_INT32, w.prompt_len);
    w.tokens.reset();
    w.hidden.reset();
    w.topk_ids.reset();
    w.topk_probs.reset();
    h5(w.file.reset(), w.tmp, "closing the file");
  }
  // The bytes on disk before the name: a crash after the rename must not leave a file with holes.
  const int fd = ::open(w.tmp.c_str(), O_RDONLY);
  const bool synced = fd >= 0 && ::fsync(fd) == 0;
  const int sync_errno = errno;
  if (fd >= 0) ::close(fd);
  SPECDEC_CHECK(synced, "features file '", w.tmp, "': fsync failed (", std::strerror(sync_errno), ")");
  SPECDEC_CHECK(std::rename(w.tmp.c_str(), w.path.c_str()) == 0, "features file '", w.path, "': renaming ", w.tmp,
                " failed (", std::strerror(errno), ")");
  const fs::path dir = fs::path(w.path).parent_path().empty() ? fs::path(".") : fs::path(w.path).parent_path();
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY); dfd >= 0) {
    ::fsync(dfd);  // the rename itself durable; a folder that cannot be opened still got the rename
    ::close(dfd);
  }
  w.committed = true;
}

const std::string& FeatureWriter::path() const { return impl_->path; }
int64_t FeatureWriter::n_rows() const { return impl_->offsets.back(); }
int FeatureWriter::n_sequences() const { return static_cast<int>(impl_->prompt_len.size()); }

}  // namespace specdec::train
