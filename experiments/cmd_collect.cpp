// specdec collect: the feature drafters' training data (drafters/train/collect.h) from an INI config
// ([target], [data], [self], [output]) with --section.key=value overrides, a progress bar and a summary.
// Parsing and display only; the work is train::collect.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "drafters/train/collect.h"
#include "experiments/cli.h"
#include "experiments/config.h"
#include "experiments/progress.h"
#include "experiments/prompts.h"
#include "specdec_version.h"

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace specdec::cli {
namespace {

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  return std::string(s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1));
}

// One value and where it came from ("in FILE" or "from --section.key"), for its error message.
struct Value {
  std::string key, text, origin;
  [[noreturn]] void fail(const std::string& expected) const {
    SPECDEC_FAIL(key, " = '", text, "': expected ", expected, " (", origin, ")");
  }
  template <typename T>
  T integer(T lo, T hi) const {
    const std::string s = trim(text);
    T x{};
    const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
    if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || x < lo || x > hi)
      fail("an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
    return x;
  }
  bool boolean() const {
    const std::string s = trim(text);
    if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
    if (s == "false" || s == "0" || s == "no" || s == "off") return false;
    fail("true or false");
  }
};

struct CollectSettings {
  train::CollectConfig cfg;
  std::string config_dir;
};

struct KeySpec {
  const char* key;  // "section.key"
  const char* default_text;
  const char* help;
  void (*set)(CollectSettings&, const Value&);
};

const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> kSchema = {
      {"target.model", "(required)", "the target: .gguf, llama2.c .bin or a safetensors folder",
       [](CollectSettings& s, const Value& v) {
         s.cfg.model = experiments::find_input_file(trim(v.text), s.config_dir);
       }},
      {"target.tokenizer", "", "tokenizer file (llama2.c .bin or tokenizer.json); empty = the model's own",
       [](CollectSettings& s, const Value& v) {
         const std::string t = trim(v.text);
         s.cfg.tokenizer = t.empty() ? "" : experiments::find_input_file(t, s.config_dir);
       }},
      {"target.chat", "auto", "apply the chat template: true | false | auto (= when the tokenizer has one)",
       [](CollectSettings& s, const Value& v) {
         if (trim(v.text) == "auto")
           s.cfg.chat.reset();
         else
           s.cfg.chat = v.boolean();
       }},
      {"target.threads", "0", "CPU threads; 0 = OMP_NUM_THREADS or all cores (the data does not depend on it)",
       [](CollectSettings& s, const Value& v) { s.cfg.threads = v.integer(0, 4096); }},
      {"target.prefill_chunk", "64", "tokens per forward when reading a sequence (bounds the logits to chunk x V)",
       [](CollectSettings& s, const Value& v) { s.cfg.prefill_chunk = v.integer(1, 1 << 16); }},
      {"data.files", "(required)",
       "training .jsonl files, a list (GSM8K question/answer, self-instruct, T0 prompt/completion); evaluation sets "
       "are refused",
       [](CollectSettings& s, const Value& v) {
         s.cfg.prompt_files.clear();
         std::stringstream ss(v.text);
         for (std::string item; std::getline(ss, item, ',');) {
           item = trim(item);
           if (item.empty()) v.fail("a comma-separated list of .jsonl files");
           s.cfg.prompt_files.push_back(experiments::find_input_file(item, s.config_dir));
         }
         if (s.cfg.prompt_files.empty()) v.fail("a comma-separated list of .jsonl files");
       }},
      {"data.mode", "reference",
       "reference = the dataset's answers read in one prefill pass; self = the target's own responses, decoded",
       [](CollectSettings& s, const Value& v) {
         const std::string m = trim(v.text);
         if (m == "reference")
           s.cfg.mode = train::CollectMode::kReference;
         else if (m == "self")
           s.cfg.mode = train::CollectMode::kSelf;
         else
           v.fail("reference or self");
       }},
      {"data.max_sequences", "0", "sequences to collect, the first in the (shuffled) order; 0 = every record",
       [](CollectSettings& s, const Value& v) { s.cfg.max_sequences = v.integer(0, 1 << 30); }},
      {"data.max_tokens", "512", "tokens per sequence, prompt + response (cut there; at most the model's context)",
       [](CollectSettings& s, const Value& v) { s.cfg.max_tokens = v.integer(2, 1 << 20); }},
      {"data.shuffle", "true", "take the records in a seeded random order (mixes the files) instead of file order",
       [](CollectSettings& s, const Value& v) { s.cfg.shuffle = v.boolean(); }},
      {"data.seed", "0", "seed of the shuffle and of self mode's sampling",
       [](CollectSettings& s, const Value& v) { s.cfg.seed = v.integer<uint64_t>(0, UINT64_MAX); }},
      {"self.max_new_tokens", "256", "self mode: response tokens decoded at most (within max_tokens)",
       [](CollectSettings& s, const Value& v) { s.cfg.max_new_tokens = v.integer(1, 1 << 20); }},
      {"self.temperature", "0", "self mode: 0 = greedy, else sampled at this temperature",
       [](CollectSettings& s, const Value& v) {
         const std::string t = trim(v.text);
         char* end = nullptr;
         const double x = t.empty() ? NAN : std::strtod(t.c_str(), &end);
         if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(x) || x < 0) v.fail("a number >= 0");
         s.cfg.temperature = static_cast<float>(x);
       }},
      {"self.batch", "8",
       "self mode: sequences decoded together, one target forward per step (the data does not depend on it)",
       [](CollectSettings& s, const Value& v) { s.cfg.batch = v.integer(1, 1024); }},
      {"output.out", "results/<config name>.features.h5", "the features file (--out overrides)",
       [](CollectSettings& s, const Value& v) { s.cfg.out = trim(v.text); }},
      {"output.topk", "8", "most likely next tokens stored per token (the soft labels)",
       [](CollectSettings& s, const Value& v) { s.cfg.topk = v.integer(1, 1 << 20); }},
      {"output.shard_sequences", "32", "sequences per shard file: the most a kill can lose",
       [](CollectSettings& s, const Value& v) { s.cfg.shard_sequences = v.integer(1, 1 << 20); }},
  };
  return kSchema;
}

std::string keys_help() {
  std::string out, section;
  for (const auto& k : schema()) {
    const std::string key = k.key, sec = key.substr(0, key.find('.'));
    if (sec != section) out += "  [" + (section = sec) + "]\n";
    std::string line = "    " + key.substr(key.find('.') + 1);
    line.resize(22, ' ');
    out += line + k.help + " (default: " + (*k.default_text ? k.default_text : "empty") + ")\n";
  }
  return out;
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& origin) {
  std::vector<std::string> keys;
  for (const auto& k : schema()) keys.push_back(k.key);
  const std::string suggestion = experiments::closest_match(key, keys);
  SPECDEC_FAIL("unknown key '", key, "' (", origin, ")",
               suggestion.empty() ? "; sections are [target], [data], [self], [output] (specdec collect --help)"
                                  : "; did you mean '" + suggestion + "'?");
}

train::CollectConfig load_config(const std::string& path, const std::vector<experiments::ConfigOverride>& overrides) {
  std::ifstream in(path);
  SPECDEC_CHECK(in.good(), path, ": cannot open the collect config");
  po::options_description none;
  po::parsed_options parsed(&none);
  try {
    parsed = po::parse_config_file(in, none, /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    SPECDEC_FAIL(path, ": ", e.what());
  }
  std::map<std::string, Value> values;
  for (const auto& opt : parsed.options) {
    SPECDEC_CHECK(!values.count(opt.string_key), path, ": '", opt.string_key,
                  "' is set twice (each key once per file)");
    values[opt.string_key] = {opt.string_key, opt.value.empty() ? "" : opt.value.front(), "in " + path};
  }
  for (const auto& o : overrides) values[o.key] = {o.key, o.value, "from --" + o.key};

  CollectSettings s;
  s.config_dir = fs::path(path).parent_path().string();
  for (const auto& [key, v] : values) {
    auto it = std::find_if(schema().begin(), schema().end(), [&](const KeySpec& k) { return key == k.key; });
    if (it == schema().end()) unknown_key(key, v.origin);
  }
  // In schema order, so each key's error names the first bad one the same way every time.
  for (const auto& k : schema())
    if (auto it = values.find(k.key); it != values.end()) k.set(s, it->second);
  SPECDEC_CHECK(!s.cfg.model.empty(), path,
                ": [target] model is required (a .gguf, llama2.c .bin or safetensors folder)");
  SPECDEC_CHECK(!s.cfg.prompt_files.empty(), path,
                ": [data] files is required (training .jsonl files, e.g. "
                "../shared/data/train/gsm8k_train.jsonl)");
  if (s.cfg.out.empty()) s.cfg.out = "results/" + fs::path(path).stem().string() + ".features.h5";
  return s.cfg;
}

std::string megabytes(int64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(bytes) / 1e6);
  return buf;
}

}  // namespace

int cmd_collect(const std::vector<std::string>& args_in) {
  std::vector<std::string> args = args_in;
  const std::vector<experiments::ConfigOverride> overrides = experiments::take_overrides(args);
  std::string config_path, out;
  bool resume = false, quiet = false;
  po::options_description desc(
      "specdec collect: training data for feature drafters (Medusa heads, EAGLE): per token of each training\n"
      "sequence the target's final-norm feature and its top-k next-token distribution, in one HDF5 file\n"
      "(docs/training-data.md)\n\n"
      "usage: specdec collect CONFIG.ini [--section.key=value ...] [--out FILE.h5] [--resume] [--quiet]\n\n"
      "Sequences are written in shards (OUT.parts/part-NNNNNN.h5, each complete when it appears); a killed run\n"
      "keeps every finished shard and --resume continues it. The shards are merged into OUT at the end.\n"
      "Evaluation prompt sets (data/prompts, or a file with their sha256) are refused.\n\noptions");
  desc.add_options()("help,h", "show this help (and every config key)")(
      "config", po::value(&config_path), "the collect config (INI), e.g. experiments/configs/collect_smollm2.ini")(
      "out,o", po::value(&out), "the features file (default: [output] out)")(
      "resume", po::bool_switch(&resume), "continue an interrupted collect from its finished shards (same config)")(
      "quiet,q", po::bool_switch(&quiet), "no progress display (the summary is still printed)");
  po::positional_options_description pos;
  pos.add("config", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\nconfig keys (--section.key=value on the command line overrides the file):\n" << keys_help();
    return 0;
  }
  po::notify(vm);
  SPECDEC_CHECK(!config_path.empty(), "a config file: specdec collect CONFIG.ini (see specdec collect --help)");

  train::CollectConfig cfg = load_config(config_path, overrides);
  if (!out.empty()) cfg.out = out;
  cfg.resume = resume;
  cfg.created_by = SPECDEC_GIT_SHA;
  set_threads(cfg.threads);

  std::unique_ptr<experiments::Progress> progress;
  train::CollectCallbacks cb;
  cb.on_start = [&](int64_t total, int64_t resumed) {
    progress = std::make_unique<experiments::Progress>(experiments::Progress::detect(quiet), total, resumed);
  };
  cb.on_sequence = [&](const std::string& id, int64_t tokens) { progress->pair_done(tokens, id); };
  cb.on_note = [&](const std::string& text) {
    if (progress)
      progress->note("note: " + text);
    else if (!quiet)
      std::fprintf(stderr, "note: %s\n", text.c_str());
  };
  std::printf("collect: target %s, %zu prompt file(s), mode %s -> %s\n", cfg.model.c_str(), cfg.prompt_files.size(),
              train::mode_name(cfg.mode), cfg.out.c_str());
  std::fflush(stdout);
  const train::CollectSummary sum = train::collect(cfg, cb);
  if (progress) progress->finish();

  if (sum.already_complete) {
    std::printf("%s is already complete: %lld sequences, %lld tokens, %s\n", sum.out.c_str(),
                static_cast<long long>(sum.sequences), static_cast<long long>(sum.tokens),
                megabytes(sum.file_bytes).c_str());
    return 0;
  }
  const double rate = sum.seconds > 0 ? static_cast<double>(sum.new_tokens) / sum.seconds : 0;
  std::printf(
      "collected %lld sequences, %lld tokens in %s (%.1f tokens/s)%s\n", static_cast<long long>(sum.new_sequences),
      static_cast<long long>(sum.new_tokens), experiments::Progress::format_duration(sum.seconds).c_str(), rate,
      sum.skipped ? (", " + std::to_string(sum.skipped) + " records skipped (prompt >= max_tokens)").c_str() : "");
  std::printf("%s: %lld sequences, %lld tokens, %s\n", sum.out.c_str(), static_cast<long long>(sum.sequences),
              static_cast<long long>(sum.tokens), megabytes(sum.file_bytes).c_str());
  return 0;
}

}  // namespace specdec::cli
