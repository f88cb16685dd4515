// SmolLM2-135M-Instruct (Q4_1 GGUF) against llama.cpp, a reference nobody here wrote: goldens made by
// scripts/reference/llamacpp_reference.py (llama-cpp-python, CPU) and committed under tests/golden/llamacpp.
//  - tokenizer parity: the prompt ids of every prompt in the three prompt files, and tricky strings;
//  - teacher-forced logits: the top-5 logits llama.cpp saw at each of its 64 greedy positions;
//  - free-running greedy: our continuation equals llama.cpp's, or first diverges at a position where
//    llama.cpp's own top-2 logits are within kTieGap (a near tie that either engine may break).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "core/generate.h"
#include "core/loading.h"
#include "core/backends/cpu/llama_cpu.h"
#include "tests/support/assets.h"

using namespace specdec;
using nlohmann::json;

namespace {

// Tolerances, justified by measurement (the WARN line prints the figures of every run):
//  - Both engines read the same Q4_1 / Q8_0 weights and quantize activations to 8-bit blocks, but
//    llama.cpp also rounds Q, K, V and the attention weights to fp16 (its default f16 KV cache) while
//    specdec keeps them in fp32. On logits of magnitude 20..30 the engines then differ by a median of
//    ~0.17 and at most ~1.2 over the top-5 values. llama.cpp is not even consistent with itself at this
//    scale: re-feeding its own tokens as one batch instead of one at a time moves its top-5 logits by up
//    to 0.92 (median 0.21; tests/golden/llamacpp/README.md). For scale: activation quantization alone moves
//    specdec's own logits by up to ~0.4 against exact fp32 activations, whereas a real bug (a wrong RoPE
//    base, a missing norm, a permuted head) moves them by several units and flips most greedy tokens.
constexpr double kLogitMaxTol = 1.5;   // any single top-5 logit
constexpr double kLogitMeanTol = 0.3;  // mean over all compared values
// A greedy divergence is accepted only at a position where llama.cpp's own top-1/top-2 gap is below
// this: within the engines' measured logit difference, so either engine may legitimately break the tie.
constexpr double kTieGap = 1.0;

std::string golden(const std::string& name) {
  return std::string(SPECDEC_SOURCE_DIR) + "/tests/golden/llamacpp/" + name;
}
std::string smollm2() { return std::string(SPECDEC_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf"; }

std::vector<json> read_jsonl(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::vector<json> rows;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) rows.push_back(json::parse(line));
  return rows;
}

struct Smol {
  std::shared_ptr<const LoadedModel> loaded;
  std::unique_ptr<LlamaCpu> model;
  std::unique_ptr<Tokenizer> tok;
};
Smol& smol() {
  static Smol s = [] {
    INFO("the default model must be installed by scripts/setup: " << smollm2());
    REQUIRE(std::filesystem::exists(smollm2()));
    Smol s;
    s.loaded = load_model(smollm2());
    s.model = std::make_unique<LlamaCpu>(s.loaded);
    s.tok = load_tokenizer(*s.loaded, "");
    return s;
  }();
  return s;
}

}  // namespace

TEST_CASE("tokenizer parity with llama.cpp on every prompt of the three prompt files", "[golden][tokenizer]") {
  auto& s = smol();
  const auto rows = read_jsonl(golden("smollm2_tokens.jsonl"));
  REQUIRE(rows.size() == 480 + 80 + 1319);
  int mismatches = 0;
  for (const auto& r : rows) {
    const auto ids = s.tok->encode(r["text"].get<std::string>(), s.tok->add_bos_default(), false);
    if (ids != r["ids"].get<std::vector<TokenId>>()) {
      ++mismatches;
      UNSCOPED_INFO("mismatch: " << r["set"] << ":" << r["index"]);
    }
  }
  REQUIRE(mismatches == 0);
  for (const auto& r : read_jsonl(golden("smollm2_tokens_tricky.jsonl"))) {
    INFO("text " << r["text"] << " special " << r["special"]);
    REQUIRE(s.tok->encode(r["text"].get<std::string>(), false, r["special"].get<bool>()) ==
            r["ids"].get<std::vector<TokenId>>());
  }
}

TEST_CASE("greedy continuations and top-5 logits agree with llama.cpp", "[golden][model]") {
  auto& s = smol();
  const auto rows = read_jsonl(golden("smollm2_greedy.jsonl"));
  REQUIRE(rows.size() >= 12);
  const int V = s.model->config().vocab_size;
  int full_matches = 0, tie_divergences = 0;
  double max_diff = 0, sum_diff = 0;
  long n_diff = 0;
  for (const auto& r : rows) {
    const auto prompt = r["prompt_ids"].get<std::vector<TokenId>>();
    const auto ref = r["generated_ids"].get<std::vector<TokenId>>();
    const auto& top5 = r["top5"];
    INFO("prompt " << r["set"] << ":" << r["index"] << " (" << r["category"] << ")");
    REQUIRE(s.tok->encode(r["prompt_text"].get<std::string>(), false, true) == prompt);

    // Teacher forcing: prompt + llama.cpp's tokens in one block; logits at the generated positions.
    std::vector<TokenId> all = prompt;
    all.insert(all.end(), ref.begin(), ref.end() - 1);
    auto cache = s.model->new_cache(static_cast<int>(all.size()));
    ForwardResult fr;
    s.model->forward(*cache, {.tokens = all, .n_logits = static_cast<int>(ref.size())}, fr);
    for (size_t j = 0; j < ref.size(); ++j) {
      const float* lg = fr.logits.data() + j * V;
      for (const auto& pair : top5[j]) {
        const double d = std::fabs(lg[pair[0].get<int>()] - pair[1].get<double>());
        max_diff = std::max(max_diff, d);
        sum_diff += d;
        ++n_diff;
        CHECK(d < kLogitMaxTol);
      }
    }

    // Free-running greedy.
    GenerateOptions g;
    g.max_new_tokens = static_cast<int>(ref.size());
    const auto ours = generate(*s.model, prompt, g).tokens;
    size_t j = 0;
    while (j < ref.size() && ours[j] == ref[j]) ++j;
    if (j == ref.size()) {
      ++full_matches;
    } else {
      const double gap = top5[j][0][1].get<double>() - top5[j][1][1].get<double>();
      INFO("diverged at position " << j << " where llama.cpp's top-2 gap is " << gap);
      REQUIRE(gap < kTieGap);
      ++tie_divergences;
    }
  }
  REQUIRE(sum_diff / n_diff < kLogitMeanTol);
  WARN("llama.cpp parity: " << full_matches << "/" << rows.size() << " prompts match in full, " << tie_divergences
                            << " diverge at a near tie; top-5 logit |diff| max " << max_diff << ", mean "
                            << sum_diff / n_diff << " over " << n_diff << " values");
}

TEST_CASE("quantized forward is batch-invariant: a block equals single-token steps exactly", "[model]") {
  auto& s = smol();
  const int V = s.model->config().vocab_size;
  const auto prompt = s.tok->encode("The quick brown fox jumps over the lazy dog because", false);
  auto block_cache = s.model->new_cache(64), step_cache = s.model->new_cache(64);
  ForwardResult block, step;
  s.model->forward(*block_cache, {.tokens = prompt}, block);
  for (size_t t = 0; t < prompt.size(); ++t) {
    s.model->forward(*step_cache, {.tokens = {&prompt[t], 1}}, step);
    REQUIRE(std::equal(step.logits.begin(), step.logits.end(), block.logits.begin() + t * V));
  }
}
