// The results log's write-ahead journal (results_journal.h). Layout, little-endian:
//   header  "SPDJRNL2" (the format of schema version 2; "SPDJRNL1" journals are refused with a message)
//   record  u32 magic 0x4345524a ("JREC") | u8 type | u32 payload bytes | payload | u32 CRC-32 of type+payload
// types: 1 FileInfo, 2 RunInfo, 3 Request. Strings are u32 length + bytes; rows are written field by field.
#include "experiments/results_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <type_traits>
#include <utility>

#include "core/error.h"
#include "experiments/results_schema.h"

namespace specdec::results::journal {
namespace {

// The last byte is the journal format: the schema version since 2 (the rows' columns follow results_schema.h).
constexpr char kHeader[8] = {'S', 'P', 'D', 'J', 'R', 'N', 'L', '3'};
constexpr uint32_t kRecordMagic = 0x4345524au;
enum : uint8_t { kInfo = 1, kRun = 2, kRequest = 3 };
constexpr uint32_t kMaxPayload = 1u << 30;  // a sanity bound: a longer length is a torn or corrupt record

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xedb88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

// ---- encoding ---------------------------------------------------------------------------------------
// Each record type lists its fields once, in fields(io, record); Out writes them and In reads them back,
// so the two directions cannot drift apart. Plain values are raw bytes, bools one byte, strings and
// vectors a u32 count then their elements, maps a u32 count then key/value pairs.

template <typename Io>
void fields(Io& io, StepRow& s);
template <typename Io>
void fields(Io& io, DraftTokenRow& d);

// A vector element: a number as raw bytes, a row field by field (never a struct's padding).
template <typename Io, typename T>
void element(Io& io, T& x) {
  if constexpr (std::is_arithmetic_v<T>)
    io(x);
  else
    fields(io, x);
}

class Out {
 public:
  template <typename T>
  void operator()(const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      (*this)(static_cast<uint8_t>(v));
    } else if constexpr (std::is_same_v<T, std::string>) {
      (*this)(static_cast<uint32_t>(v.size()));
      s_ += v;
    } else {
      static_assert(std::is_arithmetic_v<T>);
      s_.append(reinterpret_cast<const char*>(&v), sizeof v);
    }
  }
  template <typename T>
  void operator()(const std::vector<T>& v) {
    (*this)(static_cast<uint32_t>(v.size()));
    for (const T& x : v) element(*this, const_cast<T&>(x));  // Out only reads
  }
  void operator()(const std::map<std::string, std::string>& m) {
    (*this)(static_cast<uint32_t>(m.size()));
    for (const auto& [k, v] : m) (*this)(k), (*this)(v);
  }
  std::string take() { return std::move(s_); }

 private:
  std::string s_;
};

class In {
 public:
  In(const char* p, size_t n) : p_(p), end_(p + n) {}
  template <typename T>
  void operator()(T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      uint8_t b;
      (*this)(b);
      v = b != 0;
    } else if constexpr (std::is_same_v<T, std::string>) {
      uint32_t n;
      (*this)(n);
      need(n);
      v.assign(p_, n);
      p_ += n;
    } else {
      static_assert(std::is_arithmetic_v<T>);
      need(sizeof v);
      std::memcpy(&v, p_, sizeof v);
      p_ += sizeof v;
    }
  }
  template <typename T>
  void operator()(std::vector<T>& v) {
    uint32_t n;
    (*this)(n);
    need(n);  // every element takes at least a byte: a corrupt count cannot allocate wildly
    v.resize(n);
    for (T& x : v) element(*this, x);
  }
  void operator()(std::map<std::string, std::string>& m) {
    uint32_t n;
    (*this)(n);
    for (uint32_t i = 0; i < n; ++i) {
      std::string k, v;
      (*this)(k), (*this)(v);
      m[std::move(k)] = std::move(v);
    }
  }
  bool done() const { return p_ == end_; }

 private:
  void need(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) throw std::out_of_range("journal record shorter than its fields");
  }
  const char* p_;
  const char* end_;
};

template <typename Io>
void fields(Io& io, FileInfo& i) {
  io(i.specdec_version), io(i.config_text), io(i.host_json), io(i.seeds), io(i.start_time);
}
template <typename Io>
void fields(Io& io, RunInfo& r) {
  io(r.name), io(r.attrs);
}
// The table rows: every column results_schema.h lists, in its order.
template <typename Io, typename Row>
void table_fields(Io& io, Row& r) {
  schema::for_each_field<Row>([&](const auto& f) { io(r.*f.member); });
}
template <typename Io>
void fields(Io& io, StepRow& s) {
  table_fields(io, s);
}
template <typename Io>
void fields(Io& io, DraftTokenRow& d) {
  table_fields(io, d);
}
template <typename Io>
void fields(Io& io, Request& r) {
  io(r.run);
  table_fields(io, r.row);
  io(r.steps), io(r.drafts), io(r.tokens);
}

template <typename Record>
std::string encode(const Record& r) {
  Out o;
  fields(o, const_cast<Record&>(r));  // Out only reads
  return o.take();
}
template <typename Record>
Record decode(In& in) {
  Record r{};
  fields(in, r);
  return r;
}

void write_all(int fd, const std::string& path, const char* p, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    SPECDEC_CHECK(w > 0, "results journal '", path, "': write failed: ", std::strerror(errno));
    p += w;
    n -= static_cast<size_t>(w);
  }
}

}  // namespace

std::string path_for(const std::string& results_path) { return results_path + ".journal"; }

Contents read(const std::string& journal_path) {
  std::ifstream f(journal_path, std::ios::binary);
  SPECDEC_CHECK(f.good(), "results journal '", journal_path, "': cannot open it for reading");
  const std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  Contents c;
  c.file_bytes = data.size();
  SPECDEC_CHECK(!(data.size() >= sizeof kHeader && std::memcmp(data.data(), kHeader, sizeof kHeader - 1) == 0 &&
                  data[sizeof kHeader - 1] != kHeader[sizeof kHeader - 1]),
                "results journal '", journal_path, "': written by another specdec version (journal format '",
                data.substr(0, sizeof kHeader), "', this build reads '", std::string(kHeader, sizeof kHeader),
                "'); repair or resume it with the build that wrote it, or move it away");
  SPECDEC_CHECK(data.size() >= sizeof kHeader && std::memcmp(data.data(), kHeader, sizeof kHeader) == 0,
                "results journal '", journal_path, "': not a specdec results journal (wrong magic)");
  size_t pos = sizeof kHeader;
  c.valid_bytes = pos;
  constexpr size_t kFrame = 4 + 1 + 4 + 4;
  while (data.size() - pos >= kFrame) {
    uint32_t magic, len;
    std::memcpy(&magic, data.data() + pos, 4);
    const auto type = static_cast<uint8_t>(data[pos + 4]);
    std::memcpy(&len, data.data() + pos + 5, 4);
    if (magic != kRecordMagic || len > kMaxPayload || data.size() - pos - kFrame < len) break;
    const auto* typed = reinterpret_cast<const uint8_t*>(data.data() + pos + 4);
    const uint32_t crc = crc32(reinterpret_cast<const uint8_t*>(data.data() + pos + 9), len, crc32(typed, 1));
    uint32_t stored;
    std::memcpy(&stored, data.data() + pos + 9 + len, 4);
    if (crc != stored) break;
    In in(data.data() + pos + 9, len);
    try {
      if (type == kInfo) {
        c.info = decode<FileInfo>(in);
        c.has_info = true;
      } else if (type == kRun) {
        c.runs.push_back(decode<RunInfo>(in));
      } else if (type == kRequest) {
        c.requests.push_back(decode<Request>(in));
      } else {
        break;
      }
    } catch (const std::out_of_range&) {
      break;  // a record whose CRC matches but whose fields do not parse: treat as the end
    }
    if (!in.done()) break;
    pos += kFrame + len;
    c.valid_bytes = pos;
  }
  return c;
}

std::vector<RunData> to_runs(const Contents& c) {
  std::vector<RunData> runs;
  for (const RunInfo& info : c.runs) {
    RunData d;
    d.info = info;
    runs.push_back(std::move(d));
  }
  for (const Request& r : c.requests) {
    RunData* run = nullptr;
    for (auto& d : runs)
      if (d.info.name == r.run) run = &d;
    if (run) add_request(*run, r);  // a request of an undeclared run cannot be written: left out
  }
  return runs;
}

std::vector<Request> split_requests(const RunData& run) {
  std::vector<Request> out;
  std::map<int64_t, size_t> index;
  for (const auto& q : run.requests) {
    index[q.request_id] = out.size();
    Request r{run.info.name, q, {}, {}, {}};
    if (auto o = run.outputs.find(q.request_id); o != run.outputs.end()) r.tokens = o->second;
    out.push_back(std::move(r));
  }
  for (const auto& s : run.steps)
    if (auto i = index.find(s.request_id); i != index.end()) out[i->second].steps.push_back(s);
  for (const auto& d : run.draft_tokens)
    if (auto i = index.find(d.request_id); i != index.end()) out[i->second].drafts.push_back(d);
  return out;
}

void add_request(RunData& run, const Request& r) {
  run.requests.push_back(r.row);
  run.steps.insert(run.steps.end(), r.steps.begin(), r.steps.end());
  run.draft_tokens.insert(run.draft_tokens.end(), r.drafts.begin(), r.drafts.end());
  run.outputs[r.row.request_id] = r.tokens;
}

Writer Writer::create(const std::string& journal_path, const FileInfo& info) {
  const int fd = ::open(journal_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  SPECDEC_CHECK(fd >= 0, "results journal '", journal_path, "': cannot create it: ", std::strerror(errno));
  Writer w(journal_path, fd);
  write_all(fd, journal_path, kHeader, sizeof kHeader);
  w.write_record(kInfo, encode(info), /*sync=*/true);
  return w;
}

Writer Writer::append_to(const std::string& journal_path, uint64_t valid_bytes) {
  const int fd = ::open(journal_path.c_str(), O_WRONLY | O_CLOEXEC);
  SPECDEC_CHECK(fd >= 0, "results journal '", journal_path, "': cannot open it for appending: ", std::strerror(errno));
  Writer w(journal_path, fd);
  SPECDEC_CHECK(::ftruncate(fd, static_cast<off_t>(valid_bytes)) == 0 &&
                    ::lseek(fd, static_cast<off_t>(valid_bytes), SEEK_SET) == static_cast<off_t>(valid_bytes),
                "results journal '", journal_path, "': cannot cut its torn tail: ", std::strerror(errno));
  return w;
}

Writer::Writer(Writer&& o) noexcept : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)) {}
Writer& Writer::operator=(Writer&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(o.path_);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}
Writer::~Writer() {
  if (fd_ >= 0) ::close(fd_);
}

void Writer::add_run(const RunInfo& run) { write_record(kRun, encode(run), /*sync=*/true); }
void Writer::add_request(const Request& r) { write_record(kRequest, encode(r), /*sync=*/true); }

void Writer::write_record(uint8_t type, const std::string& payload, bool sync) {
  SPECDEC_CHECK(payload.size() <= kMaxPayload, "results journal '", path_, "': a record of ", payload.size(),
                " bytes (at most ", kMaxPayload, ")");
  std::string rec;
  rec.reserve(payload.size() + 13);
  const auto len = static_cast<uint32_t>(payload.size());
  const uint32_t crc = crc32(reinterpret_cast<const uint8_t*>(payload.data()), payload.size(), crc32(&type, 1));
  rec.append(reinterpret_cast<const char*>(&kRecordMagic), 4);
  rec.push_back(static_cast<char>(type));
  rec.append(reinterpret_cast<const char*>(&len), 4);
  rec += payload;
  rec.append(reinterpret_cast<const char*>(&crc), 4);
  write_all(fd_, path_, rec.data(), rec.size());  // one write: a kill leaves a prefix of it at worst
  if (sync)
    SPECDEC_CHECK(::fdatasync(fd_) == 0, "results journal '", path_, "': fdatasync failed: ", std::strerror(errno));
}

}  // namespace specdec::results::journal
