// Internal to the results log (results_log.cpp, results_read.cpp): RAII handles over the HDF5 C API, the
// one error path for HDF5 failures, the on-disk row layouts of docs/hdf5-schema.md and table I/O.
// Not a public header: only the results log's own sources include it.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/hdf5_handles.h"
#include "experiments/results_log.h"
#include "experiments/results_schema.h"

namespace specdec::results::h5 {

using hdf5::Hid;
using hdf5::Quiet;

// "results log '<path>': <what> (HDF5: <innermost error of the HDF5 stack>)"; clears the stack.
std::string message(const std::string& path, const std::string& what);

}  // namespace specdec::results::h5

// SPECDEC_H5(call, path, "what failed", ...): evaluates an HDF5 call; a negative result throws
// specdec::Error naming the file, what we were doing and HDF5's own reason. Returns the call's value.
#define SPECDEC_H5(call, path, ...)                                                                                    \
  ([&]() {                                                                                                             \
    auto r_ = (call);                                                                                                  \
    if (r_ < 0) [[unlikely]]                                                                                           \
      ::specdec::detail::throw_error(__FILE__, __LINE__,                                                               \
                                     ::specdec::results::h5::message((path), ::specdec::detail::concat(__VA_ARGS__))); \
    return r_;                                                                                                         \
  }())

namespace specdec::results::h5 {

// ---- on-disk rows ---------------------------------------------------------------------------------
// Each table is a packed compound of the columns results_schema.h lists for its row type, in that order;
// memory buffers use the same packed layout (rows are encoded field by field, so no struct padding or
// std::string ever reaches HDF5). Reading builds the layout of the columns the file's table has: a
// version 1 table lacks the newer columns, which keep the row's defaults.

// Table names under /runs/<name>/.
inline constexpr const char* kRequests = "requests";
inline constexpr const char* kSteps = "steps";
inline constexpr const char* kDraftTokens = "draft_tokens";
inline constexpr const char* kOutputs = "outputs";
inline constexpr const char* kOutputTokens = "output_tokens";

// The packed compound of one row type: its HDF5 type, its size, and per column its offset (-1: the column
// is not in this layout).
struct Layout {
  Hid type;
  size_t size = 0;
  std::vector<long> offset;
};
// A fixed-length, null-terminated UTF-8 string type of `bytes` bytes.
Hid fixed_string(size_t bytes);
// Copies a string into a fixed-length field; throws naming the file when it does not fit.
void copy_fixed(char* dst, size_t bytes, const std::string& s, const std::string& path, const char* field);
std::string from_fixed(const char* src, size_t bytes);

template <class T>
hid_t native_type() {
  if constexpr (std::is_same_v<T, bool> || std::is_same_v<T, int8_t>)
    return H5T_NATIVE_INT8;
  else if constexpr (std::is_same_v<T, int32_t>)
    return H5T_NATIVE_INT32;
  else if constexpr (std::is_same_v<T, int64_t>)
    return H5T_NATIVE_INT64;
  else if constexpr (std::is_same_v<T, float>)
    return H5T_NATIVE_FLOAT;
  else {
    static_assert(std::is_same_v<T, double>);
    return H5T_NATIVE_DOUBLE;
  }
}

// All columns of Row (file_type < 0), or those of them that `file_type` (a table's compound) has.
template <class Row>
Layout layout(hid_t file_type = H5I_INVALID_HID) {
  Layout l;
  schema::for_each_field<Row>([&](const auto& f) {
    const bool present = file_type < 0 || H5Tget_member_index(file_type, f.name) >= 0;
    l.offset.push_back(present ? static_cast<long>(l.size) : -1L);
    if (present) l.size += static_cast<size_t>(f.bytes);
  });
  l.type = Hid(H5Tcreate(H5T_COMPOUND, l.size), H5Tclose);
  size_t i = 0;
  schema::for_each_field<Row>([&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    const long off = l.offset[i++];
    if (off < 0) return;
    if constexpr (std::is_same_v<T, std::string>) {
      // Reading: the file's own string type (its character set: HDF5 converts no ASCII <-> UTF-8), our size.
      Hid s = file_type < 0
                  ? fixed_string(static_cast<size_t>(f.bytes))
                  : Hid(H5Tget_member_type(file_type, static_cast<unsigned>(H5Tget_member_index(file_type, f.name))),
                        H5Tclose);
      if (file_type >= 0 && H5Tget_class(s) == H5T_STRING && H5Tis_variable_str(s) <= 0)
        H5Tset_size(s, static_cast<size_t>(f.bytes));
      else if (file_type >= 0)
        s = fixed_string(static_cast<size_t>(f.bytes));
      H5Tinsert(l.type, f.name, static_cast<size_t>(off), s);
    } else {
      H5Tinsert(l.type, f.name, static_cast<size_t>(off), native_type<T>());
    }
  });
  return l;
}

template <class Row>
void encode(const Layout& l, const Row& r, char* dst, const std::string& path) {
  size_t i = 0;
  schema::for_each_field<Row>([&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    const long off = l.offset[i++];
    if (off < 0) return;
    char* p = dst + off;
    if constexpr (std::is_same_v<T, std::string>) {
      copy_fixed(p, static_cast<size_t>(f.bytes), r.*f.member, path, f.name);
    } else if constexpr (std::is_same_v<T, bool>) {
      const int8_t b = (r.*f.member) ? 1 : 0;
      std::memcpy(p, &b, 1);
    } else {
      std::memcpy(p, &(r.*f.member), sizeof(T));
    }
  });
}

template <class Row>
Row decode(const Layout& l, const char* src) {
  Row r{};
  size_t i = 0;
  schema::for_each_field<Row>([&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    const long off = l.offset[i++];
    if (off < 0) return;
    const char* p = src + off;
    if constexpr (std::is_same_v<T, std::string>) {
      r.*f.member = from_fixed(p, static_cast<size_t>(f.bytes));
    } else if constexpr (std::is_same_v<T, bool>) {
      int8_t b;
      std::memcpy(&b, p, 1);
      r.*f.member = b != 0;
    } else {
      std::memcpy(&(r.*f.member), p, sizeof(T));
    }
  });
  return r;
}

template <class Row>
std::vector<char> encode_rows(const Layout& l, const std::vector<Row>& rows, const std::string& path) {
  std::vector<char> buf(rows.size() * l.size, 0);
  for (size_t i = 0; i < rows.size(); ++i) encode(l, rows[i], buf.data() + i * l.size, path);
  return buf;
}

// ---- files -----------------------------------------------------------------------------------------
// File access list: latest format (superblock v3, needed for SWMR); clear_flags adds the library's
// "clear_status_flags" property (what h5clear -s uses) so a file left flagged "open for write" by a
// killed writer opens (a read-only open clears the flags in memory only).
Hid file_access(bool clear_flags);
// Opens for reading: SWMR read first (valid while a SWMR writer runs or after it was killed), then a
// plain read-only open that ignores the status flags. Throws naming the file.
Hid open_for_read(const std::string& path);

// ---- attributes -------------------------------------------------------------------------------------
void write_string_attr(const std::string& path, hid_t loc, const std::string& obj, const std::string& name,
                       const std::string& value);
std::string read_string_attr(const std::string& path, hid_t loc, const std::string& obj, const std::string& name);
bool has_attr(hid_t loc, const std::string& name);
std::vector<std::string> attr_names(const std::string& path, hid_t loc, const std::string& obj);
// Checks schema_version (kOldestSchemaVersion..kSchemaVersion; stored in *version when given).
FileInfo read_file_info(const std::string& path, hid_t file, int* version = nullptr);
RunInfo read_run_info(const std::string& path, hid_t file, const std::string& run);
std::vector<std::string> list_runs(const std::string& path, hid_t file);  // creation order

// ---- tables -----------------------------------------------------------------------------------------
std::string run_path(const std::string& run);                       // "/runs/<run>"
std::string table_path(const std::string& run, const char* table);  // "/runs/<run>/<table>"
Hid open_table(const std::string& path, hid_t file, const std::string& run, const char* table);
hsize_t table_size(const std::string& path, hid_t ds, const std::string& obj);
void set_table_size(const std::string& path, hid_t ds, const std::string& obj, hsize_t n);
// Appends n rows of memtype at the end of a 1-D table.
void append_rows(const std::string& path, hid_t ds, const std::string& obj, hid_t memtype, const void* rows, size_t n);
// Reads the whole table as memtype into `out` (sized by the caller via table_size).
void read_rows(const std::string& path, hid_t ds, const std::string& obj, hid_t memtype, void* out);

// A compound of request_id alone: reads that column of any table.
Hid id_only_type();

// Appends rows of Row at the end of its table.
template <class Row>
void append_table(const std::string& path, hid_t ds, const std::string& obj, const std::vector<Row>& rows) {
  if (rows.empty()) return;
  const Layout l = layout<Row>();
  const std::vector<char> buf = encode_rows(l, rows, path);
  append_rows(path, ds, obj, l.type, buf.data(), rows.size());
}

// Reads the whole table of Row (the columns the file has; the others keep their defaults).
template <class Row>
std::vector<Row> read_table(const std::string& path, hid_t ds, const std::string& obj) {
  Hid ftype(H5Dget_type(ds), H5Tclose);
  SPECDEC_CHECK(ftype.valid() && H5Tget_class(ftype) == H5T_COMPOUND, "results log '", path, "': ", obj,
                " is not a table of records");
  const Layout l = layout<Row>(ftype);
  const hsize_t n = table_size(path, ds, obj);
  std::vector<char> buf(static_cast<size_t>(n) * l.size);
  if (n > 0) read_rows(path, ds, obj, l.type, buf.data());
  std::vector<Row> rows;
  rows.reserve(static_cast<size_t>(n));
  for (hsize_t i = 0; i < n; ++i) rows.push_back(decode<Row>(l, buf.data() + i * l.size));
  return rows;
}
template <class Row>
std::vector<Row> read_run_table(const std::string& path, hid_t file, const std::string& run) {
  const char* table = schema::Table<Row>::name;
  Hid ds = open_table(path, file, run, table);
  return read_table<Row>(path, ds, table_path(run, table));
}

}  // namespace specdec::results::h5
