// specdec collect on the real stories260K model over small synthetic training files in the three formats:
// each row's feature and top-k against a fresh forward over the same tokens, the sequences against the
// records, self mode against greedy decoding, resume after a stop equal to an uninterrupted run, the
// refusal of evaluation sets, and the one-line errors of damaged features files.
#include <hdf5.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/sha256.h"
#include "core/speculative/decoder.h"
#include "drafters/train/collect.h"
#include "drafters/train/features.h"
#include "kernels/cpu/dtype.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/features.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

namespace fs = std::filesystem;
using namespace specdec;
using namespace specdec::train;
using specdec::test::error_of;

namespace {

fs::path scratch() { return specdec::test::scratch_dir("collect"); }

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Three tiny training files, one per format (GSM8K with a calculator annotation, self-instruct with an
// empty and a non-empty input, T0), in words the stories model knows.
struct TrainingFiles {
  std::string gsm8k = (scratch() / "data" / "train" / "tiny_gsm8k.jsonl").string();
  std::string instruct = (scratch() / "data" / "train" / "tiny_instruct.jsonl").string();
  std::string t0 = (scratch() / "data" / "train" / "tiny_t0.jsonl").string();
  TrainingFiles() {
    write_file(
        gsm8k,
        R"({"question": "Tom had two cats. He got one more. How many cats does Tom have?", "answer": "Tom has 2+1 = <<2+1=3>>3 cats.\n#### 3"})"
        "\n"
        R"({"question": "Lily saw a big dog in the park.", "answer": "The dog was happy and ran to Lily."})"
        "\n\n"
        R"({"question": "Once upon a time there was a little girl named Sue.", "answer": "She liked to play with her red ball in the sun every day."})"
        "\n");
    write_file(
        instruct,
        R"({"id": "t1", "instruction": "Tell a story about a bird.", "instances": [{"input": "", "output": "The bird flew up to the tree and sang."}, {"input": "The bird is blue.", "output": "The blue bird was very happy."}]})"
        "\n");
    write_file(
        t0,
        R"({"template": "x", "prompt": "Ben and Mia went to the park.", "completion": "They played on the slide."})"
        "\n"
        R"({"template": "y", "prompt": "The sun was hot.", "completion": "Tim went to swim in the lake with his mom."})"
        "\n");
  }
  std::vector<std::string> all() const { return {gsm8k, instruct, t0}; }
};

const TrainingFiles& files() {
  static TrainingFiles f;
  return f;
}

CollectConfig base_config(const std::string& out_name) {
  CollectConfig c;
  c.model = specdec::test::stories_model();
  c.tokenizer = specdec::test::stories_tokenizer();
  c.prompt_files = files().all();
  c.topk = 5;
  c.max_tokens = 40;      // cuts the longest sequences
  c.prefill_chunk = 7;    // chunk edges inside every sequence
  c.shard_sequences = 2;  // 7 sequences: shards of 2, 2, 2, 1
  c.out = (scratch() / out_name).string();
  fs::remove(c.out);
  fs::remove_all(c.out + ".parts");
  return c;
}

// base_config in self mode: the target's responses of at most max_new_tokens, sequences of at most 64 tokens.
CollectConfig self_config(const std::string& out_name, int max_new_tokens) {
  CollectConfig c = base_config(out_name);
  c.mode = CollectMode::kSelf;
  c.max_new_tokens = max_new_tokens;
  c.max_tokens = 64;
  return c;
}

// The sequence collect builds for a record (reference mode, no chat template: stories260K has none).
std::vector<TokenId> expected_sequence(const TrainingRecord& r, int max_tokens, int* prompt_len) {
  const Tokenizer& tok = *specdec::test::stories().tok;
  std::vector<TokenId> x = tok.encode(r.prompt, tok.add_bos_default());
  *prompt_len = static_cast<int>(x.size());
  const auto answer = tok.encode(r.answer, false);
  x.insert(x.end(), answer.begin(), answer.end());
  x.push_back(tok.eos());
  if (static_cast<int>(x.size()) > max_tokens) x.resize(static_cast<size_t>(max_tokens));
  return x;
}

std::vector<TrainingRecord> all_records() {
  std::vector<TrainingRecord> all;
  for (const auto& f : files().all()) {
    auto one = load_training_records(f);
    all.insert(all.end(), one.begin(), one.end());
  }
  return all;
}

void check_same_data(const FeatureData& a, const FeatureData& b) {
  specdec::test::check_same_features(a, b);
  CHECK(a.target_sha256 == b.target_sha256);
}

}  // namespace

TEST_CASE("training records: the three formats") {
  const auto g = load_training_records(files().gsm8k);
  REQUIRE(g.size() == 3);  // the blank line is no record
  CHECK(g[0].id == "tiny_gsm8k:0");
  CHECK(g[0].answer == "Tom has 2+1 = 3 cats.\n#### 3");  // the calculator annotation removed
  CHECK(g[2].id == "tiny_gsm8k:2");
  const auto s = load_training_records(files().instruct);
  REQUIRE(s.size() == 2);  // one record per instance
  CHECK(s[0].id == "tiny_instruct:0/0");
  CHECK(s[0].prompt == "Tell a story about a bird.");
  CHECK(s[1].id == "tiny_instruct:0/1");
  CHECK(s[1].prompt == "Tell a story about a bird.\n\nThe bird is blue.");
  CHECK(s[1].answer == "The blue bird was very happy.");
  const auto t = load_training_records(files().t0);
  REQUIRE(t.size() == 2);
  CHECK(t[1].prompt == "The sun was hot.");
  CHECK(t[1].answer == "Tim went to swim in the lake with his mom.");

  const std::string bad = (scratch() / "bad_format.jsonl").string();
  write_file(bad, "{\"question\": \"q\", \"answer\": \"a\"}\n{\"turns\": [\"hello\"]}\n");
  CHECK_THAT(error_of([&] { load_training_records(bad); }),
             Catch::Contains(bad + ":2") && Catch::Contains("not a training record"));
}

TEST_CASE("top_k_softmax: the k largest, ties by the lower id, softmax in double") {
  const std::vector<float> logits = {1.f, 3.f, 3.f, 2.f, 3.f, -1.f};
  int32_t ids[4];
  float probs[4];
  top_k_softmax(logits.data(), 6, 4, ids, probs);
  CHECK(std::vector<int32_t>(ids, ids + 4) == std::vector<int32_t>{1, 2, 4, 3});
  double z = 0;
  for (float l : logits) z += std::exp(static_cast<double>(l) - 3.0);
  CHECK(probs[0] == static_cast<float>(1.0 / z));
  CHECK(probs[1] == probs[0]);
  CHECK(probs[3] == static_cast<float>(std::exp(-1.0) / z));
  // k = V: the full order; the equal maxima keep id order.
  int32_t all[6];
  float p[6];
  top_k_softmax(logits.data(), 6, 6, all, p);
  CHECK(std::vector<int32_t>(all, all + 6) == std::vector<int32_t>{1, 2, 4, 3, 0, 5});
}

TEST_CASE("collect (reference): sequences, rows against a fresh forward, top-k against its softmax") {
  CollectConfig cfg = base_config("reference.h5");
  cfg.shuffle = false;  // file order: sequence s is record s
  int64_t started_total = -1, seen = 0;
  CollectCallbacks cb;
  cb.on_start = [&](int64_t total, int64_t resumed) {
    started_total = total;
    CHECK(resumed == 0);
  };
  cb.on_sequence = [&](const std::string&, int64_t tokens) {
    ++seen;
    CHECK(tokens > 0);
  };
  const CollectSummary sum = collect(cfg, cb);
  CHECK(sum.complete);
  CHECK(sum.sequences == 7);
  CHECK(started_total == 7);
  CHECK(seen == 7);
  CHECK(sum.new_sequences == 7);
  CHECK(sum.file_bytes == static_cast<int64_t>(fs::file_size(cfg.out)));
  CHECK_FALSE(fs::exists(cfg.out + ".parts"));
  CHECK_FALSE(fs::exists(cfg.out + ".tmp"));

  const FeatureData d = read_features(cfg.out);
  auto& st = specdec::test::stories();
  const int H = st.model.config().dim, V = st.model.config().vocab_size, K = cfg.topk;
  REQUIRE(d.hidden_size == H);
  REQUIRE(d.vocab_size == V);
  REQUIRE(d.topk == K);
  CHECK(d.feature == "final_norm");
  CHECK(d.target_sha256 == specdec::sha256_file(cfg.model));
  REQUIRE(d.n_sequences() == 7);
  CHECK(d.n_rows() == sum.tokens);
  REQUIRE(d.offsets.front() == 0);
  REQUIRE(d.offsets.back() == d.n_rows());

  const auto records = all_records();
  REQUIRE(records.size() == 7);
  bool some_cut = false;
  for (int s = 0; s < 7; ++s) {
    INFO("sequence " << s << " (" << records[s].id << ")");
    const int64_t b = d.offsets[s], e = d.offsets[s + 1];
    const int T = static_cast<int>(e - b);
    int prompt_len = 0;
    const auto want = expected_sequence(records[s], cfg.max_tokens, &prompt_len);
    CHECK(std::vector<TokenId>(d.tokens.begin() + b, d.tokens.begin() + e) == want);
    CHECK(d.prompt_len[s] == prompt_len);
    CHECK(prompt_len < T);
    some_cut |= T == cfg.max_tokens;

    // A fresh forward over the whole sequence at once (the collector read it in chunks of 7).
    auto cache = st.model.new_cache(T);
    ForwardResult fresh;
    st.model.forward(*cache, ForwardRequest{.tokens = want, .want_hidden = true}, fresh);
    for (int t = 0; t < T; ++t) {
      for (int h = 0; h < H; ++h) {
        const float ref = fresh.hidden[static_cast<size_t>(t) * H + h];
        const float got = d.hidden[static_cast<size_t>(b + t) * H + h];
        // float16 keeps 11 significant bits: half an ulp is 2^-11 relative (subnormals: 2^-25 absolute).
        if (std::fabs(got - ref) > std::ldexp(std::fabs(ref), -11) + 3e-8f) {
          FAIL_CHECK("hidden[" << t << "][" << h << "] = " << got << ", fresh forward " << ref);
          break;
        }
      }
      const float* row = fresh.logits.data() + static_cast<size_t>(t) * V;
      double max_l = -INFINITY, z = 0;
      for (int v = 0; v < V; ++v) max_l = std::max<double>(max_l, row[v]);
      for (int v = 0; v < V; ++v) z += std::exp(row[v] - max_l);
      float prev = 2.f;
      for (int j = 0; j < K; ++j) {
        const int32_t id = d.topk_ids[static_cast<size_t>(b + t) * K + j];
        const float p = d.topk_probs[static_cast<size_t>(b + t) * K + j];
        const double want_p = std::exp(row[id] - max_l) / z;
        CHECK(std::fabs(p - want_p) <= 1e-5 * want_p + 1e-9);
        CHECK(p <= prev);
        prev = p;
        // No token outside the top-k is likelier than the k-th.
        if (j == K - 1) {
          int larger = 0;
          for (int v = 0; v < V; ++v) larger += row[v] > row[id];
          CHECK(larger <= K - 1);
        }
      }
    }
  }
  CHECK(some_cut);  // max_tokens = 40 cut at least one sequence
}

TEST_CASE("collect: the seeded shuffle reorders the same sequences; prompts that fill max_tokens are skipped") {
  auto sequences = [](const FeatureData& d) {
    std::vector<std::vector<int32_t>> out;
    for (int s = 0; s < d.n_sequences(); ++s)
      out.emplace_back(d.tokens.begin() + d.offsets[s], d.tokens.begin() + d.offsets[s + 1]);
    return out;
  };
  CollectConfig a = base_config("seed0.h5"), b = base_config("seed1.h5"), plain = base_config("no_shuffle.h5");
  b.seed = 1;
  plain.shuffle = false;
  for (auto* c : {&a, &b, &plain}) REQUIRE(collect(*c).complete);
  auto sa = sequences(read_features(a.out)), sb = sequences(read_features(b.out)),
       sp = sequences(read_features(plain.out));
  CHECK(sa != sb);
  CHECK(sa != sp);
  std::sort(sa.begin(), sa.end());
  std::sort(sb.begin(), sb.end());
  std::sort(sp.begin(), sp.end());
  CHECK(sa == sb);
  CHECK(sa == sp);

  // max_tokens = 12: the records whose templated prompt has 12 tokens or more are passed over.
  CollectConfig tight = base_config("tight.h5");
  tight.max_tokens = 12;
  int64_t want_skipped = 0;
  const Tokenizer& tok = *specdec::test::stories().tok;
  for (const auto& r : all_records()) want_skipped += tok.encode(r.prompt, tok.add_bos_default()).size() >= 12;
  REQUIRE(want_skipped > 0);
  REQUIRE(want_skipped < 7);
  const CollectSummary sum = collect(tight);
  CHECK(sum.skipped == want_skipped);
  CHECK(sum.sequences == 7 - want_skipped);
  const FeatureData d = read_features(tight.out);
  for (int s = 0; s < d.n_sequences(); ++s) {
    CHECK(d.prompt_len[s] < 12);
    CHECK(d.offsets[s + 1] - d.offsets[s] <= 12);
  }
  CHECK_THAT(read_feature_info(tight.out).sources, Catch::Contains("\"skipped\":" + std::to_string(want_skipped)));
}

TEST_CASE("collect (self): the response is the target's greedy decode, and each row's top-1 is the next token") {
  CollectConfig cfg = self_config("self.h5", 12);  // decoded in batches of 8 (the default)
  cfg.max_sequences = 3;
  const CollectSummary sum = collect(cfg);
  REQUIRE(sum.complete);
  const FeatureData d = read_features(cfg.out);
  REQUIRE(d.n_sequences() == 3);
  auto& st = specdec::test::stories();
  const auto rule = verifiers::make_acceptance_rule("greedy");
  for (int s = 0; s < 3; ++s) {
    const int64_t b = d.offsets[s], e = d.offsets[s + 1];
    const int P = d.prompt_len[s];
    const std::vector<TokenId> prompt(d.tokens.begin() + b, d.tokens.begin() + b + P);
    DecodeOptions opts;
    opts.max_new_tokens = cfg.max_new_tokens;
    opts.is_stop = [&](TokenId t) { return st.tok->is_end_of_generation(t); };
    const DecodeResult r = speculative_decode(st.model, nullptr, *rule, prompt, opts);
    CHECK(std::vector<TokenId>(d.tokens.begin() + b + P, d.tokens.begin() + e) == r.tokens);
    for (int64_t row = b + P - 1; row + 1 < e; ++row) {
      INFO("sequence " << s << " row " << row - b);
      CHECK(d.topk_ids[static_cast<size_t>(row) * d.topk] == d.tokens[static_cast<size_t>(row + 1)]);
    }
  }
}

TEST_CASE("collect (self): decoding sequences in batches gives the same data as one at a time") {
  // 7 sequences in shards of 3: batches of 2 leave a sequence alone in a step, 5 spans a whole shard.
  CollectConfig one = self_config("self_b1.h5", 16);
  one.shard_sequences = 3;
  one.batch = 1;
  REQUIRE(collect(one).complete);
  const FeatureData want = read_features(one.out);
  REQUIRE(want.n_sequences() == 7);
  for (const int batch : {2, 5}) {
    CollectConfig many = one;
    many.out = (scratch() / ("self_b" + std::to_string(batch) + ".h5")).string();
    many.batch = batch;
    fs::remove(many.out);
    fs::remove_all(many.out + ".parts");
    REQUIRE(collect(many).complete);
    INFO("batch " << batch);
    check_same_data(want, read_features(many.out));
  }
}

TEST_CASE("collect: a run stopped after two shards and resumed equals an uninterrupted one") {
  CollectConfig whole = base_config("whole.h5");
  REQUIRE(collect(whole).complete);

  CollectConfig cut = base_config("resumed.h5");
  cut.stop_after_shards = 2;
  const CollectSummary first = collect(cut);
  CHECK_FALSE(first.complete);
  CHECK(first.sequences == 4);
  CHECK_FALSE(fs::exists(cut.out));
  CHECK(fs::exists(fs::path(cut.out + ".parts") / "part-000000.h5"));
  CHECK(fs::exists(fs::path(cut.out + ".parts") / "part-000001.h5"));
  // What a kill in the middle of the third shard leaves behind.
  write_file(fs::path(cut.out + ".parts") / "part-000002.h5.tmp", "half a shard");

  // Without --resume the interrupted collect is not overwritten.
  cut.stop_after_shards = 0;
  CHECK_THAT(error_of([&] { collect(cut); }), Catch::Contains(cut.out + ".parts") && Catch::Contains("--resume"));
  // Another config cannot continue it.
  CollectConfig other = cut;
  other.resume = true;
  other.topk = 4;
  CHECK_THAT(error_of([&] { collect(other); }), Catch::Contains("part-00000") && Catch::Contains("another config"));

  cut.resume = true;
  int64_t resumed = -1;
  CollectCallbacks cb;
  cb.on_start = [&](int64_t, int64_t r) { resumed = r; };
  const CollectSummary second = collect(cut, cb);
  CHECK(second.complete);
  CHECK(resumed == 4);
  CHECK(second.new_sequences == 3);
  CHECK(second.sequences == 7);
  CHECK_FALSE(fs::exists(cut.out + ".parts"));
  check_same_data(read_features(whole.out), read_features(cut.out));

  // Resuming a finished collect collects nothing; a fresh run onto it is refused.
  const CollectSummary third = collect(cut);
  CHECK(third.already_complete);
  CHECK(third.new_sequences == 0);
  CHECK(third.sequences == 7);
  cut.resume = false;
  CHECK_THAT(error_of([&] { collect(cut); }), Catch::Contains(cut.out) && Catch::Contains("exists"));
}

TEST_CASE("collect refuses evaluation prompt sets") {
  // mt_bench under another name and folder: refused by its sha256.
  const std::string renamed = (scratch() / "data" / "train" / "my_chat_prompts.jsonl").string();
  fs::copy_file(specdec::test::asset("data/prompts/mt_bench_question.jsonl"), renamed,
                fs::copy_options::overwrite_existing);
  const std::string msg = error_of([&] { check_training_file(renamed); });
  CHECK_THAT(msg, Catch::Contains(renamed) && Catch::Contains("evaluation set mt_bench_question.jsonl"));
  CHECK(msg.find('\n') == std::string::npos);
  CollectConfig cfg = base_config("refused.h5");
  cfg.prompt_files = {files().gsm8k, renamed};
  CHECK_THAT(error_of([&] { collect(cfg); }), Catch::Contains(renamed) && Catch::Contains("refused"));
  CHECK_FALSE(fs::exists(cfg.out + ".parts"));

  // Any file under a data/prompts folder, whatever it holds.
  const std::string under = (scratch() / "data" / "prompts" / "tiny_gsm8k.jsonl").string();
  fs::create_directories(fs::path(under).parent_path());
  fs::copy_file(files().gsm8k, under, fs::copy_options::overwrite_existing);
  CHECK_THAT(error_of([&] { check_training_file(under); }), Catch::Contains(under) && Catch::Contains("data/prompts"));
  // The shared evaluation sets themselves.
  for (const char* f : {"spec_bench_question.jsonl", "gsm8k_test.jsonl"})
    CHECK_THAT(error_of([&] { check_training_file(specdec::test::asset(std::string("data/prompts/") + f)); }),
               Catch::Contains("refused"));
  // A training file passes and comes back with its sha256.
  CHECK(check_training_file(files().t0).size() == 64);
}

TEST_CASE("features files: damaged, foreign and truncated files give one-line errors naming them") {
  CollectConfig cfg = base_config("to_damage.h5");
  cfg.max_sequences = 2;
  REQUIRE(collect(cfg).complete);
  const auto size = fs::file_size(cfg.out);

  const std::string truncated = (scratch() / "truncated.h5").string();
  fs::copy_file(cfg.out, truncated, fs::copy_options::overwrite_existing);
  fs::resize_file(truncated, size / 2);
  std::string msg = error_of([&] { read_features(truncated); });
  CHECK_THAT(msg, Catch::Contains(truncated) && Catch::Contains("truncated"));
  CHECK(msg.find('\n') == std::string::npos);

  const std::string text = (scratch() / "not_hdf5.h5").string();
  write_file(text, "this is not HDF5\n");
  msg = error_of([&] { read_features(text); });
  CHECK_THAT(msg, Catch::Contains(text) && Catch::Contains("not an HDF5 file"));

  const std::string foreign = (scratch() / "foreign.h5").string();
  {
    const hid_t f = H5Fcreate(foreign.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    REQUIRE(f >= 0);
    H5Fclose(f);
  }
  CHECK_THAT(error_of([&] { read_features(foreign); }),
             Catch::Contains(foreign) && Catch::Contains("not a features file"));
  CHECK_THAT(error_of([&] { read_features((scratch() / "missing.h5").string()); }),
             Catch::Contains("missing.h5") && Catch::Contains("no such file"));
}

TEST_CASE("FeatureWriter: round trip, float16 rounding, atomic commit, inconsistent shapes") {
  FeatureFileInfo info;
  info.hidden_size = 3;
  info.vocab_size = 10;
  info.topk = 2;
  info.target_path = "model.bin";
  info.target_sha256 = std::string(64, 'a');
  info.sources = "{}";
  const std::string path = (scratch() / "written.h5").string();
  fs::remove(path);
  {
    FeatureWriter w(path, info);
    w.append(std::vector<int32_t>{1, 2}, 1, std::vector<float>{0.1f, -2.5f, 1e-6f, 3.f, 65504.f, -0.f},
             std::vector<int32_t>{4, 5, 6, 7}, std::vector<float>{0.5f, 0.25f, 0.6f, 0.1f});
    w.append(std::vector<int32_t>{}, 0, {}, {}, {});  // an empty sequence is allowed
    CHECK(fs::exists(path + ".tmp"));
    CHECK_FALSE(fs::exists(path));
    CHECK_THAT(error_of([&] {
                 w.append(std::vector<int32_t>{1}, 0, std::vector<float>{1.f, 2.f}, {}, {});
               }),
               Catch::Contains("needs 3 hidden"));
    CHECK_THAT(error_of([&] {
                 w.append(std::vector<int32_t>{1}, 0, std::vector<float>{1.f, 70000.f, 0.f}, std::vector<int32_t>{1, 2},
                          std::vector<float>{0.5f, 0.5f});
               }),
               Catch::Contains("does not fit float16"));
    w.commit();
  }
  CHECK_FALSE(fs::exists(path + ".tmp"));
  const FeatureData d = read_features(path);
  CHECK(d.tokens == std::vector<int32_t>{1, 2});
  CHECK(d.offsets == std::vector<int64_t>{0, 2, 2});
  CHECK(d.prompt_len == std::vector<int32_t>{1, 0});
  std::vector<float> want;
  for (float x : {0.1f, -2.5f, 1e-6f, 3.f, 65504.f, -0.f}) want.push_back(cpu::fp16_to_fp32(cpu::fp32_to_fp16(x)));
  CHECK(d.hidden == want);
  CHECK(d.hidden[0] != 0.1f);  // really rounded to float16
  CHECK(d.topk_ids == std::vector<int32_t>{4, 5, 6, 7});
  CHECK(d.topk_probs == std::vector<float>{0.5f, 0.25f, 0.6f, 0.1f});
  const FeatureFileInfo back = read_feature_info(path);
  CHECK(back.n_rows == 2);
  CHECK(back.n_sequences == 2);
  CHECK(back.target_path == "model.bin");
  CHECK(back.created_by.empty());

  // A writer dropped without commit leaves nothing.
  const std::string dropped = (scratch() / "dropped.h5").string();
  fs::remove(dropped);
  { FeatureWriter w(dropped, info); }
  CHECK_FALSE(fs::exists(dropped));
  CHECK_FALSE(fs::exists(dropped + ".tmp"));
  // Nor one replaced by move-assignment.
  const std::string replaced = (scratch() / "replaced.h5").string(), empty = (scratch() / "empty.h5").string();
  fs::remove(empty);
  FeatureWriter a(replaced, info);
  CHECK(fs::exists(replaced + ".tmp"));
  a = FeatureWriter(empty, info);
  CHECK_FALSE(fs::exists(replaced + ".tmp"));
  a.commit();
  CHECK_FALSE(fs::exists(replaced));
  CHECK(read_feature_info(empty).n_sequences == 0);
}
