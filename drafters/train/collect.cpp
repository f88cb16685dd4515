// specdec collect (collect.h): training records -> token sequences (chat template, cut to max_tokens) ->
// the target's chunked prefill with its final-norm states and logits -> top-k soft labels per token ->
// shard files written atomically -> one features file. The order and the content of the sequences depend
// only on the config (seeded shuffle, deterministic forward), which is what makes --resume exact.
#include "drafters/train/collect.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/sha256.h"
#include "core/speculative/batch_decoder.h"
#include "core/speculative/decoder.h"
#include "drafters/train/features.h"
#include "kernels/cpu/parallel.h"
#include "verifiers/rules.h"

namespace specdec::train {
namespace fs = std::filesystem;
namespace {

// The evaluation prompt sets (../shared/README.md): never training data.
struct EvaluationSet {
  const char* name;
  const char* sha256;
};
constexpr EvaluationSet kEvaluationSets[] = {
    {"spec_bench_question.jsonl", "4b6d33e79484f9841c487ee87d1cf6aa8c6066f61d5d482ff09e5a007fafdf04"},
    {"mt_bench_question.jsonl", "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7"},
    {"gsm8k_test.jsonl", "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"},
};

// Whether a folder of the path (as given or resolved through links) is a "prompts" inside a "data".
bool under_data_prompts(const fs::path& file) {
  auto check = [](const fs::path& p) {
    std::string prev;
    for (const auto& part : p.parent_path()) {
      if (prev == "data" && part == "prompts") return true;
      prev = part.string();
    }
    return false;
  };
  std::error_code ec;
  const fs::path resolved = fs::weakly_canonical(fs::absolute(file, ec), ec);
  return check(fs::absolute(file, ec).lexically_normal()) || (!ec && check(resolved));
}

// GSM8K marks calculator calls as <<48/2=24>> inside its answers: markup for a tool, not answer text.
std::string strip_calculator_annotations(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const size_t open = s.find("<<", i);
    const size_t close = open == std::string::npos ? std::string::npos : s.find(">>", open + 2);
    if (close == std::string::npos) {
      out.append(s, i, std::string::npos);
      break;
    }
    out.append(s, i, open - i);
    i = close + 2;
  }
  return out;
}

std::string string_field(const nlohmann::json& j, const char* key, const std::string& where) {
  SPECDEC_CHECK(j.contains(key) && j[key].is_string(), where, ": field '", key, "' as a string");
  return j[key].get<std::string>();
}

std::string fmt_float(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// A training sequence: the tokens the target reads (prompt, then the reference response in reference mode)
// and its place in the selection.
struct Sequence {
  std::string id;
  int64_t index = 0;            // in the selection: shard index / shard_sequences, self mode's request id
  std::vector<TokenId> tokens;  // cut to max_tokens
  int prompt_len = 0;
};

struct Selection {
  std::vector<Sequence> sequences;
  int64_t skipped = 0;
};

// Records of every file, in file order, then (shuffle) a Fisher-Yates permutation by a seeded mt19937_64
// (its output is fixed by the standard, so the order is the same everywhere); then tokenized in that order
// until max_sequences are taken. A record whose prompt alone fills max_tokens leaves no response: skipped.
Selection select_sequences(const CollectConfig& cfg, const std::vector<TrainingRecord>& records, const Tokenizer& tok,
                           bool chat, int max_tokens) {
  std::vector<size_t> order(records.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  if (cfg.shuffle) {
    std::mt19937_64 rng(cfg.seed);
    for (size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  }
  // The token that ends a response: ChatML's end of turn, else EOS (none when the vocabulary has neither).
  TokenId end_of_turn = tok.eos();  // -1 when none
  if (chat) end_of_turn = tok.find("<|im_end|>").value_or(end_of_turn);

  Selection sel;
  for (size_t r : order) {
    if (cfg.max_sequences > 0 && static_cast<int64_t>(sel.sequences.size()) >= cfg.max_sequences) break;
    const TrainingRecord& rec = records[r];
    Sequence s;
    s.id = rec.id;
    s.tokens = tok.encode_user_turn(rec.prompt, chat);
    s.prompt_len = static_cast<int>(s.tokens.size());
    if (s.prompt_len == 0 || s.prompt_len >= max_tokens) {
      ++sel.skipped;
      continue;
    }
    if (cfg.mode == CollectMode::kReference) {
      // The response encoded on its own, as the target would emit it after the prompt's last token.
      const std::vector<TokenId> answer = tok.encode(rec.answer, /*add_bos=*/false, /*parse_special=*/false);
      s.tokens.insert(s.tokens.end(), answer.begin(), answer.end());
      if (end_of_turn >= 0) s.tokens.push_back(end_of_turn);
      if (static_cast<int>(s.tokens.size()) > max_tokens) s.tokens.resize(static_cast<size_t>(max_tokens));
    }
    s.index = static_cast<int64_t>(sel.sequences.size());
    sel.sequences.push_back(std::move(s));
  }
  return sel;
}

// Reads x through the target in chunks of `chunk` tokens: hidden (T x H) = its final-norm states, ids and
// probs (T x K) = the top-k of each row's next-token distribution.
void read_sequence(Model& model, KVCache& cache, std::span<const TokenId> x, int chunk, int K,
                   std::vector<float>& hidden, std::vector<int32_t>& ids, std::vector<float>& probs) {
  const int T = static_cast<int>(x.size()), H = model.config().dim, V = model.config().vocab_size;
  hidden.resize(static_cast<size_t>(T) * H);
  ids.resize(static_cast<size_t>(T) * K);
  probs.resize(static_cast<size_t>(T) * K);
  cache.truncate(0);
  ForwardResult res;
  for (int c = 0; c < T; c += chunk) {
    const int n = std::min(chunk, T - c);
    const ForwardRequest req{.tokens = x.subspan(static_cast<size_t>(c), static_cast<size_t>(n)), .want_hidden = true};
    model.forward(cache, req, res);
    std::copy(res.hidden.begin(), res.hidden.begin() + static_cast<ptrdiff_t>(n) * H,
              hidden.begin() + static_cast<ptrdiff_t>(c) * H);
    const float* logits = res.logits.data();
    int32_t* out_ids = ids.data() + static_cast<size_t>(c) * K;
    float* out_probs = probs.data() + static_cast<size_t>(c) * K;
    cpu::parallel_for(n, [&](int i) {
      top_k_softmax(logits + static_cast<size_t>(i) * V, V, K, out_ids + static_cast<size_t>(i) * K,
                    out_probs + static_cast<size_t>(i) * K);
    });
  }
}

std::string shard_name(int64_t shard) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "part-%06lld.h5", static_cast<long long>(shard));
  return buf;
}

// The shard index of a finished shard's file name, or -1 for any other name.
int64_t shard_index(const std::string& name) {
  long long i = -1;
  char tail = 0;
  if (name.size() != shard_name(0).size() || std::sscanf(name.c_str(), "part-%6lld.h%c", &i, &tail) != 2 || tail != '5')
    return -1;
  return name == shard_name(i) ? i : -1;
}

void check_config(const CollectConfig& cfg) {
  SPECDEC_CHECK(!cfg.model.empty(), "collect: [target] model is required");
  SPECDEC_CHECK(!cfg.prompt_files.empty(), "collect: [data] files is required (training .jsonl files)");
  SPECDEC_CHECK(!cfg.out.empty(), "collect: an output path is required ([output] out or --out)");
  SPECDEC_CHECK(cfg.max_sequences >= 0, "collect: max_sequences >= 0, got ", cfg.max_sequences);
  SPECDEC_CHECK(cfg.max_tokens >= 2, "collect: max_tokens >= 2, got ", cfg.max_tokens);
  SPECDEC_CHECK(cfg.max_new_tokens >= 1, "collect: max_new_tokens >= 1, got ", cfg.max_new_tokens);
  SPECDEC_CHECK(std::isfinite(cfg.temperature) && cfg.temperature >= 0.f, "collect: temperature >= 0, got ",
                cfg.temperature);
  SPECDEC_CHECK(cfg.topk >= 1, "collect: topk >= 1, got ", cfg.topk);
  SPECDEC_CHECK(cfg.shard_sequences >= 1, "collect: shard_sequences >= 1, got ", cfg.shard_sequences);
  SPECDEC_CHECK(cfg.prefill_chunk >= 1, "collect: prefill_chunk >= 1, got ", cfg.prefill_chunk);
  SPECDEC_CHECK(cfg.threads >= 0, "collect: threads >= 0, got ", cfg.threads);
  SPECDEC_CHECK(cfg.batch >= 1, "collect: batch >= 1 (sequences decoded together in self mode), got ", cfg.batch);
}

// Self mode: the target's responses to seqs[first, last), decoded up to `batch` at a time by the batched loop
// (continuous batching: a finished sequence's place goes to the next). Request ids are the sequences' indices
// in the selection, so a sampled response does not depend on the batch or the shard.
std::vector<std::vector<TokenId>> decode_responses(Model& model, const AcceptanceRule& rule, const Tokenizer& tok,
                                                   const CollectConfig& cfg, std::span<const Sequence> seqs,
                                                   int max_tokens) {
  std::vector<BatchRequest> requests;
  for (const Sequence& seq : seqs) {
    BatchRequest r;
    r.prompt = seq.tokens;
    r.rule = &rule;
    r.opts.max_new_tokens = std::min(cfg.max_new_tokens, max_tokens - seq.prompt_len);
    r.opts.sampling.temperature = cfg.temperature;
    r.opts.seed = cfg.seed;
    r.opts.request = static_cast<uint64_t>(seq.index);
    r.opts.is_stop = [&tok](TokenId t) { return tok.is_end_of_generation(t); };
    requests.push_back(std::move(r));
  }
  // An AR step verifies one token per sequence: the step's token limit is never the binding one.
  BatchResult done =
      batch_decode(model, std::move(requests), {.max_sequences = cfg.batch, .max_tokens_per_step = cfg.batch});
  std::vector<std::vector<TokenId>> out;
  for (DecodeResult& r : done.results) out.push_back(std::move(r.tokens));
  return out;
}

}  // namespace

const char* mode_name(CollectMode mode) { return mode == CollectMode::kReference ? "reference" : "self"; }

std::string CollectConfig::to_ini() const {
  std::string files;
  for (const auto& f : prompt_files) files += (files.empty() ? "" : ", ") + f;
  std::ostringstream os;
  os << "[target]\n"
     << "model = " << model << "\n"
     << "tokenizer = " << tokenizer << "\n"
     << "chat = " << (chat ? (*chat ? "true" : "false") : "auto") << "\n"
     << "prefill_chunk = " << prefill_chunk << "\n\n"
     << "[data]\n"
     << "files = " << files << "\n"
     << "mode = " << mode_name(mode) << "\n"
     << "max_sequences = " << max_sequences << "\n"
     << "max_tokens = " << max_tokens << "\n"
     << "shuffle = " << (shuffle ? "true" : "false") << "\n"
     << "seed = " << seed << "\n\n"
     << "[self]\n"
     << "max_new_tokens = " << max_new_tokens << "\n"
     << "temperature = " << fmt_float(temperature) << "\n\n"
     << "[output]\n"
     << "topk = " << topk << "\n"
     << "shard_sequences = " << shard_sequences << "\n";
  return os.str();
}

std::string check_training_file(const std::string& path) {
  std::error_code ec;
  SPECDEC_CHECK(fs::is_regular_file(path, ec), path, ": no such training prompt file");
  if (under_data_prompts(path))
    SPECDEC_FAIL(path,
                 ": refused as training data: it lies under data/prompts, the evaluation prompt sets "
                 "(training prompts come from data/train)");
  const std::string sha = sha256_file(path);
  for (const auto& e : kEvaluationSets)
    if (sha == e.sha256)
      SPECDEC_FAIL(path, ": refused as training data: it is the evaluation set ", e.name, " (sha256 ", sha,
                   "); evaluation sets never feed a trainer");
  return sha;
}

std::vector<TrainingRecord> load_training_records(const std::string& path) {
  std::ifstream in(path);
  SPECDEC_CHECK(in.good(), path, ": cannot open the training prompt file");
  const std::string stem = fs::path(path).stem().string();
  std::vector<TrainingRecord> out;
  std::string line;
  int line_no = 0, index = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      SPECDEC_FAIL(where, ": not a JSON object (", e.what(), ")");
    }
    SPECDEC_CHECK(j.is_object(), where, ": a JSON object per line");
    const std::string id = stem + ":" + std::to_string(index++);
    if (j.contains("instances")) {  // self-instruct
      const std::string instruction = string_field(j, "instruction", where);
      SPECDEC_CHECK(j["instances"].is_array() && !j["instances"].empty(), where, ": 'instances' as a non-empty array");
      int k = 0;
      for (const auto& inst : j["instances"]) {
        SPECDEC_CHECK(inst.is_object(), where, ": each instance an object with input and output");
        const std::string input = string_field(inst, "input", where);
        out.push_back({id + "/" + std::to_string(k++), input.empty() ? instruction : instruction + "\n\n" + input,
                       string_field(inst, "output", where)});
      }
    } else if (j.contains("question") && j.contains("answer")) {  // GSM8K
      out.push_back(
          {id, string_field(j, "question", where), strip_calculator_annotations(string_field(j, "answer", where))});
    } else if (j.contains("prompt") && j.contains("completion")) {  // T0
      out.push_back({id, string_field(j, "prompt", where), string_field(j, "completion", where)});
    } else {
      SPECDEC_FAIL(where,
                   ": not a training record (expected fields question + answer, instruction + instances, "
                   "or prompt + completion)");
    }
  }
  SPECDEC_CHECK(!out.empty(), path, ": no training records in the file");
  return out;
}

void top_k_softmax(const float* logits, int V, int k, int32_t* ids, float* probs) {
  // One pass keeps the k best sorted (logit descending); ids arrive in increasing order and only a strictly
  // larger logit moves ahead, so equal logits stay in id order and a later equal one never displaces.
  int n = 0;
  float max_logit = -std::numeric_limits<float>::infinity();
  for (int v = 0; v < V; ++v) {
    const float l = logits[v];
    max_logit = std::max(max_logit, l);
    if (n == k && !(l > logits[ids[k - 1]])) continue;
    int j = n < k ? n++ : k - 1;
    while (j > 0 && logits[ids[j - 1]] < l) {
      ids[j] = ids[j - 1];
      --j;
    }
    ids[j] = v;
  }
  double sum = 0;
  for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(logits[v]) - max_logit);
  for (int i = 0; i < k; ++i)
    probs[i] = static_cast<float>(std::exp(static_cast<double>(logits[ids[i]]) - max_logit) / sum);
}

CollectSummary collect(const CollectConfig& cfg, const CollectCallbacks& callbacks) {
  check_config(cfg);
  auto note = [&](const std::string& text) {
    if (callbacks.on_note) callbacks.on_note(text);
  };
  if (cfg.threads > 0) omp_set_num_threads(cfg.threads);

  // Refuse evaluation sets before anything else is done.
  std::vector<std::string> file_sha;
  for (const auto& f : cfg.prompt_files) file_sha.push_back(check_training_file(f));

  const std::string parts = cfg.out + ".parts";
  std::error_code ec;
  const bool out_exists = fs::exists(cfg.out, ec), parts_exist = fs::exists(parts, ec);
  SPECDEC_CHECK(!out_exists || cfg.resume, cfg.out, ": the features file exists; remove it or choose another output");
  SPECDEC_CHECK(!parts_exist || cfg.resume, parts,
                ": holds the shards of an interrupted collect; pass --resume to continue it, or remove the folder");

  // The target, its tokenizer and the sequences.
  const auto loaded = load_model(cfg.model);
  LlamaCpu model(loaded);
  const auto tok = load_tokenizer(*loaded, cfg.tokenizer);
  const bool chat = cfg.chat.value_or(tok->chat_template() != ChatTemplateKind::kPlain);
  const ModelConfig& mc = model.config();
  SPECDEC_CHECK(cfg.topk <= mc.vocab_size, "collect: topk <= the vocabulary size ", mc.vocab_size, ", got ", cfg.topk);
  const int max_tokens = std::min(cfg.max_tokens, mc.max_seq_len);

  std::vector<TrainingRecord> records;
  nlohmann::json files = nlohmann::json::array();
  for (size_t i = 0; i < cfg.prompt_files.size(); ++i) {
    auto one = load_training_records(cfg.prompt_files[i]);
    files.push_back({{"path", cfg.prompt_files[i]}, {"sha256", file_sha[i]}, {"records", one.size()}});
    records.insert(records.end(), std::make_move_iterator(one.begin()), std::make_move_iterator(one.end()));
  }
  const Selection sel = select_sequences(cfg, records, *tok, chat, max_tokens);
  if (sel.skipped > 0)
    note(std::to_string(sel.skipped) +
         " records skipped: their prompt alone fills max_tokens = " + std::to_string(max_tokens));
  const int64_t S = static_cast<int64_t>(sel.sequences.size());
  SPECDEC_CHECK(S > 0, "collect: no sequences to collect (every record's prompt fills max_tokens = ", max_tokens, ")");

  FeatureFileInfo info;
  info.hidden_size = mc.dim;
  info.vocab_size = mc.vocab_size;
  info.topk = cfg.topk;
  info.feature = "final_norm";
  info.target_path = cfg.model;
  info.target_sha256 = target_sha256(cfg.model);
  info.sources =
      nlohmann::json{{"mode", mode_name(cfg.mode)}, {"files", files},          {"chat", chat}, {"sequences", S},
                     {"skipped", sel.skipped},      {"max_tokens", max_tokens}}
          .dump();
  info.created_by = cfg.created_by;
  info.config = cfg.to_ini();
  // A shard or OUT belongs to this collect when it was made from the same config, files and target.
  auto check_same = [&](const FeatureFileInfo& other, const std::string& path) {
    const char* what = other.config != info.config                 ? "another config"
                       : other.sources != info.sources             ? "other prompt files or another selection"
                       : other.target_sha256 != info.target_sha256 ? "another target model"
                                                                   : nullptr;
    if (what)
      SPECDEC_FAIL(path, ": written by a collect with ", what,
                   "; run with the same config, or remove it to start over");
  };

  CollectSummary sum;
  sum.out = cfg.out;
  if (out_exists) {  // --resume after the final rename: nothing left but a stale parts folder, maybe
    const FeatureFileInfo done = read_feature_info(cfg.out);
    check_same(done, cfg.out);
    fs::remove_all(parts, ec);
    sum.complete = sum.already_complete = true;
    sum.sequences = done.n_sequences;
    sum.tokens = done.n_rows;
    sum.skipped = sel.skipped;
    sum.file_bytes = static_cast<int64_t>(fs::file_size(cfg.out));
    return sum;
  }

  // Finished shards (a killed writer leaves only *.tmp files, which are dropped).
  const int64_t n_shards = (S + cfg.shard_sequences - 1) / cfg.shard_sequences;
  auto shard_count = [&](int64_t i) { return std::min<int64_t>(cfg.shard_sequences, S - i * cfg.shard_sequences); };
  std::vector<bool> finished(static_cast<size_t>(n_shards), false);
  if (fs::path(cfg.out).has_parent_path()) fs::create_directories(fs::path(cfg.out).parent_path());
  fs::create_directories(parts);
  int64_t resumed_sequences = 0;
  for (const auto& e : fs::directory_iterator(parts)) {
    const std::string name = e.path().filename().string();
    if (e.path().extension() == ".tmp") {
      fs::remove(e.path(), ec);
      continue;
    }
    const int64_t i = shard_index(name);
    SPECDEC_CHECK(i >= 0 && i < n_shards, e.path().string(),
                  ": not a shard of this collect (expected part-000000.h5 .. ", shard_name(n_shards - 1), ")");
    const FeatureFileInfo shard = read_feature_info(e.path().string());
    check_same(shard, e.path().string());
    SPECDEC_CHECK(shard.n_sequences == shard_count(i), e.path().string(), ": holds ", shard.n_sequences,
                  " sequences, expected ", shard_count(i), "; remove it and --resume");
    finished[static_cast<size_t>(i)] = true;
    resumed_sequences += shard.n_sequences;
    sum.tokens += shard.n_rows;
  }
  if (resumed_sequences > 0)
    note("resuming: " + std::to_string(resumed_sequences) + " of " + std::to_string(S) +
         " sequences are in finished shards");
  if (callbacks.on_start) callbacks.on_start(S, resumed_sequences);

  // Collect the missing shards, in order.
  const auto start = std::chrono::steady_clock::now();
  std::unique_ptr<AcceptanceRule> rule;
  if (cfg.mode == CollectMode::kSelf)
    rule = verifiers::make_acceptance_rule(cfg.temperature == 0.f ? "greedy" : "speculative");
  const auto cache = model.new_cache(max_tokens);
  std::vector<float> hidden, probs;
  std::vector<int32_t> ids;
  int written = 0;
  for (int64_t i = 0; i < n_shards; ++i) {
    if (finished[static_cast<size_t>(i)]) continue;
    FeatureWriter shard((fs::path(parts) / shard_name(i)).string(), info);
    const int64_t first = i * cfg.shard_sequences;
    const std::span<const Sequence> seqs =
        std::span<const Sequence>(sel.sequences)
            .subspan(static_cast<size_t>(first), static_cast<size_t>(shard_count(i)));
    std::vector<std::vector<TokenId>> responses;
    if (cfg.mode == CollectMode::kSelf) responses = decode_responses(model, *rule, *tok, cfg, seqs, max_tokens);
    for (size_t j = 0; j < seqs.size(); ++j) {
      const Sequence& seq = seqs[j];
      std::vector<TokenId> tokens = seq.tokens;
      if (cfg.mode == CollectMode::kSelf) tokens.insert(tokens.end(), responses[j].begin(), responses[j].end());
      read_sequence(model, *cache, tokens, cfg.prefill_chunk, cfg.topk, hidden, ids, probs);
      SPECDEC_CHECK(std::all_of(probs.begin(), probs.end(), [](float p) { return std::isfinite(p); }),
                    "collect: the target's logits are not finite on sequence ", seq.id);
      shard.append(tokens, seq.prompt_len, hidden, ids, probs);
      sum.new_sequences += 1;
      sum.new_tokens += static_cast<int64_t>(tokens.size());
      if (callbacks.on_sequence) callbacks.on_sequence(seq.id, static_cast<int64_t>(tokens.size()));
    }
    shard.commit();
    sum.tokens += shard.n_rows();
    if (cfg.stop_after_shards > 0 && ++written >= cfg.stop_after_shards) {
      sum.sequences = resumed_sequences + sum.new_sequences;
      sum.skipped = sel.skipped;
      sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      return sum;
    }
  }

  // Merge the shards into OUT (atomic), then drop them.
  {
    FeatureWriter merged(cfg.out, info);
    for (int64_t i = 0; i < n_shards; ++i) {
      const std::string path = (fs::path(parts) / shard_name(i)).string();
      const FeatureData d = read_features(path);
      SPECDEC_CHECK(d.n_sequences() == shard_count(i), path, ": holds ", d.n_sequences(), " sequences, expected ",
                    shard_count(i), "; remove it and --resume");
      const size_t H = static_cast<size_t>(d.hidden_size), K = static_cast<size_t>(d.topk);
      for (int s = 0; s < d.n_sequences(); ++s) {
        const size_t b = static_cast<size_t>(d.offsets[s]), e = static_cast<size_t>(d.offsets[s + 1]);
        merged.append(
            std::span(d.tokens).subspan(b, e - b), d.prompt_len[s], std::span(d.hidden).subspan(b * H, (e - b) * H),
            std::span(d.topk_ids).subspan(b * K, (e - b) * K), std::span(d.topk_probs).subspan(b * K, (e - b) * K));
      }
    }
    merged.commit();
    sum.sequences = merged.n_sequences();
    sum.tokens = merged.n_rows();
  }
  fs::remove_all(parts, ec);
  sum.complete = true;
  sum.skipped = sel.skipped;
  sum.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  sum.file_bytes = static_cast<int64_t>(fs::file_size(cfg.out));
  return sum;
}

}  // namespace specdec::train
