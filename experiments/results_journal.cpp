// The results log's write-ahead journal (results_journal.h). Layout, little-endian:
//   header  "SPDJRNL1"
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

#include "core/error.h"

namespace specdec::results::journal {
namespace {

constexpr char kHeader[8] = {'S', 'P', 'D', 'J', 'R', 'N', 'L', '1'};
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

class Out {
 public:
  template <typename T>
  void pod(T v) {
    static_assert(std::is_trivially_copyable_v<T>);
    s_.append(reinterpret_cast<const char*>(&v), sizeof v);
  }
  void str(const std::string& v) {
    pod(static_cast<uint32_t>(v.size()));
    s_ += v;
  }
  std::string take() { return std::move(s_); }

 private:
  std::string s_;
};

class In {
 public:
  In(const char* p, size_t n) : p_(p), end_(p + n) {}
  template <typename T>
  T pod() {
    T v;
    need(sizeof v);
    std::memcpy(&v, p_, sizeof v);
    p_ += sizeof v;
    return v;
  }
  std::string str() {
    const auto n = pod<uint32_t>();
    need(n);
    std::string v(p_, n);
    p_ += n;
    return v;
  }
  bool done() const { return p_ == end_; }

 private:
  void need(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) throw std::out_of_range("journal record shorter than its fields");
  }
  const char* p_;
  const char* end_;
};

std::string encode(const FileInfo& i) {
  Out o;
  o.str(i.specdec_version);
  o.str(i.config_text);
  o.str(i.host_json);
  o.str(i.seeds);
  o.str(i.start_time);
  return o.take();
}
FileInfo decode_info(In& in) {
  FileInfo i;
  i.specdec_version = in.str();
  i.config_text = in.str();
  i.host_json = in.str();
  i.seeds = in.str();
  i.start_time = in.str();
  return i;
}

std::string encode(const RunInfo& r) {
  Out o;
  o.str(r.name);
  o.pod(static_cast<uint32_t>(r.attrs.size()));
  for (const auto& [k, v] : r.attrs) {
    o.str(k);
    o.str(v);
  }
  return o.take();
}
RunInfo decode_run(In& in) {
  RunInfo r;
  r.name = in.str();
  const auto n = in.pod<uint32_t>();
  for (uint32_t i = 0; i < n; ++i) {
    std::string k = in.str();
    r.attrs[k] = in.str();
  }
  return r;
}

std::string encode(const Request& r) {
  Out o;
  o.str(r.run);
  const RequestRow& q = r.row;
  o.pod(q.request_id);
  o.str(q.prompt_id);
  o.str(q.category);
  o.pod(q.repeat);
  o.pod(q.prompt_tokens);
  o.pod(q.new_tokens);
  o.pod(q.wall_time_s);
  o.pod(q.prefill_s);
  o.pod(q.decode_s);
  o.pod(q.steps);
  o.pod(q.tau);
  o.pod(static_cast<uint8_t>(q.stopped));
  o.pod(static_cast<uint32_t>(r.steps.size()));
  for (const StepRow& s : r.steps) {
    o.pod(s.request_id);
    o.pod(s.step);
    o.pod(s.n_proposed);
    o.pod(s.n_accepted);
    o.pod(s.tree_nodes);
    o.pod(s.max_depth);
    o.pod(s.t_draft_us);
    o.pod(s.t_verify_us);
    o.pod(s.context_len);
    o.pod(s.batch_size);
  }
  o.pod(static_cast<uint32_t>(r.drafts.size()));
  for (const DraftTokenRow& d : r.drafts) {
    o.pod(d.request_id);
    o.pod(d.step);
    o.pod(d.node);
    o.pod(d.parent);
    o.pod(d.depth);
    o.pod(d.token);
    o.pod(d.p_target);
    o.pod(d.q_draft);
    o.pod(d.u);
    o.pod(static_cast<uint8_t>(d.visited));
    o.pod(static_cast<uint8_t>(d.accepted));
  }
  o.pod(static_cast<uint32_t>(r.tokens.size()));
  for (TokenId t : r.tokens) o.pod(t);
  return o.take();
}
Request decode_request(In& in) {
  Request r;
  r.run = in.str();
  RequestRow& q = r.row;
  q.request_id = in.pod<int64_t>();
  q.prompt_id = in.str();
  q.category = in.str();
  q.repeat = in.pod<int32_t>();
  q.prompt_tokens = in.pod<int32_t>();
  q.new_tokens = in.pod<int32_t>();
  q.wall_time_s = in.pod<double>();
  q.prefill_s = in.pod<double>();
  q.decode_s = in.pod<double>();
  q.steps = in.pod<int32_t>();
  q.tau = in.pod<double>();
  q.stopped = in.pod<uint8_t>() != 0;
  r.steps.resize(in.pod<uint32_t>());
  for (StepRow& s : r.steps) {
    s.request_id = in.pod<int64_t>();
    s.step = in.pod<int32_t>();
    s.n_proposed = in.pod<int32_t>();
    s.n_accepted = in.pod<int32_t>();
    s.tree_nodes = in.pod<int32_t>();
    s.max_depth = in.pod<int32_t>();
    s.t_draft_us = in.pod<double>();
    s.t_verify_us = in.pod<double>();
    s.context_len = in.pod<int32_t>();
    s.batch_size = in.pod<int32_t>();
  }
  r.drafts.resize(in.pod<uint32_t>());
  for (DraftTokenRow& d : r.drafts) {
    d.request_id = in.pod<int64_t>();
    d.step = in.pod<int32_t>();
    d.node = in.pod<int32_t>();
    d.parent = in.pod<int32_t>();
    d.depth = in.pod<int32_t>();
    d.token = in.pod<TokenId>();
    d.p_target = in.pod<float>();
    d.q_draft = in.pod<float>();
    d.u = in.pod<float>();
    d.visited = in.pod<uint8_t>() != 0;
    d.accepted = in.pod<uint8_t>() != 0;
  }
  r.tokens.resize(in.pod<uint32_t>());
  for (TokenId& t : r.tokens) t = in.pod<TokenId>();
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
        c.info = decode_info(in);
        c.has_info = true;
      } else if (type == kRun) {
        c.runs.push_back(decode_run(in));
      } else if (type == kRequest) {
        c.requests.push_back(decode_request(in));
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
    if (!run) continue;  // a request of an undeclared run cannot be written; to_runs callers check
    run->requests.push_back(r.row);
    run->steps.insert(run->steps.end(), r.steps.begin(), r.steps.end());
    run->draft_tokens.insert(run->draft_tokens.end(), r.drafts.begin(), r.drafts.end());
    run->outputs[r.row.request_id] = r.tokens;
  }
  return runs;
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
  if (sync) SPECDEC_CHECK(::fdatasync(fd_) == 0, "results journal '", path_, "': fdatasync failed: ", std::strerror(errno));
}

}  // namespace specdec::results::journal
