// Bad input to speculative decoding is a one-line specdec::Error that names what was wrong: an unknown
// drafter, k < 1, a proposal wider than the verifier's max_tree_nodes or otherwise malformed, a draft model
// with another vocabulary, an unknown drafter option, a prompt that does not fit the context.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/backends/cpu/llama_cpu.h"
#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

using test::error_or_empty;
using test::one_line;

using test::stories;

// A drafter that proposes the same proposal every step: all of it whatever max_tokens allows, or (within
// budget) only its first max_tokens nodes, which is still a valid tree since parents[i] < i.
class FixedDrafter final : public Drafter {
 public:
  explicit FixedDrafter(DraftProposal p, bool within_budget = false) : p_(std::move(p)), within_(within_budget) {}
  void begin(std::span<const TokenId>, const TargetFeatures&) override {}
  DraftProposal propose(int max_tokens) override {
    DraftProposal p = p_;
    if (within_ && p.size() > max_tokens) {
      p.tokens.resize(max_tokens);
      if (!p.parents.empty()) p.parents.resize(max_tokens);
    }
    return p;
  }
  void accept(std::span<const TokenId>, const TargetFeatures&) override {}

 private:
  DraftProposal p_;
  bool within_;
};

std::string decode_error(Drafter* drafter, const DecodeOptions& opts) {
  auto& s = stories();
  auto rule = verifiers::make_greedy_rule();
  return error_or_empty([&] { speculative_decode(s.model, drafter, *rule, s.prompt, opts); });
}

// stories260K rewritten as a llama2.c version-1 checkpoint with a vocabulary of V tokens (the first V rows
// of its tied embedding), everything else unchanged. Layout: 256-byte header (magic, version, dim, hidden,
// layers, heads, kv_heads, vocab, seq_len, shared flag), then attention norms, ffn norms, final norm, the
// embedding, the rest.
std::string stories_with_vocab(int V) {
  const std::string src = test::stories_model();
  std::ifstream in(src, std::ios::binary);
  std::string bytes{std::istreambuf_iterator<char>(in), {}};
  int32_t hdr[9];
  REQUIRE(bytes.size() > 256);
  std::memcpy(hdr, bytes.data(), sizeof hdr);
  REQUIRE(hdr[0] == 0x616b3432);  // "ak42": the version-1 export
  REQUIRE(hdr[1] == 1);
  REQUIRE(bytes[36] == 1);  // tied embedding: no separate classifier to cut
  const int64_t H = hdr[2], L = hdr[4], V0 = hdr[7];
  REQUIRE(V < V0);
  const size_t emb = 256 + static_cast<size_t>(2 * L * H + H) * sizeof(float);
  std::string out = bytes.substr(0, emb + static_cast<size_t>(V * H) * sizeof(float));
  out += bytes.substr(emb + static_cast<size_t>(V0 * H) * sizeof(float));
  const int32_t v32 = V;
  std::memcpy(out.data() + 7 * sizeof(int32_t), &v32, sizeof v32);
  const auto path = (test::scratch_dir("decoder_errors") / ("stories_vocab" + std::to_string(V) + ".bin")).string();
  std::ofstream(path, std::ios::binary) << out;
  return path;
}

}  // namespace

TEST_CASE("an unknown drafter name lists the known ones", "[speculative][badinput]") {
  auto& registry = drafters::default_registry();
  const std::string e = error_or_empty([&] { registry.resolve("ngarm"); });
  CHECK_THAT(e, Catch::Contains("unknown drafter 'ngarm'"));
  for (const DrafterInfo* info : registry.list()) CHECK_THAT(e, Catch::Contains(info->name));
  CHECK_THAT(e, Catch::Contains("plugin:PATH.so:NAME"));
  CHECK(one_line(e));
}

TEST_CASE("k < 1 with a drafter is an error", "[speculative][badinput]") {
  FixedDrafter d({.tokens = {1}});
  for (int k : {0, -3}) {
    DecodeOptions opts;
    opts.max_new_tokens = 8;
    opts.k = k;
    const std::string e = decode_error(&d, opts);
    CHECK_THAT(e, Catch::Contains("k >= 1") && Catch::Contains("k = " + std::to_string(k)));
    CHECK(one_line(e));
    CHECK(decode_error(nullptr, opts).empty());  // AR ignores k
  }
}

TEST_CASE("a proposal wider than max_tree_nodes is rejected", "[speculative][badinput]") {
  // A 100-node tree: 10 children of the root, each with 9 children (deterministic, q one-hot).
  DraftProposal wide;
  for (int i = 0; i < 10; ++i) {
    wide.tokens.push_back(10 + i);
    wide.parents.push_back(-1);
    const int32_t parent = static_cast<int32_t>(wide.tokens.size()) - 1;
    for (int j = 0; j < 9; ++j) {
      wide.tokens.push_back(100 + j);
      wide.parents.push_back(parent);
    }
  }
  REQUIRE(wide.size() == 100);
  FixedDrafter d(wide);
  DecodeOptions opts;
  opts.max_new_tokens = 200;  // room enough that only max_tree_nodes limits the budget
  opts.k = 100;
  opts.max_tree_nodes = 64;
  // k above the verifier's limit is refused up front...
  const std::string e = decode_error(&d, opts);
  INFO(e);
  CHECK_THAT(e, Catch::Contains("max_tree_nodes (64") && Catch::Contains("got k = 100"));
  CHECK(one_line(e));
  // ...and a drafter that proposes more nodes than it was asked for is refused at the proposal.
  opts.k = 64;
  const std::string e2 = decode_error(&d, opts);
  INFO(e2);
  CHECK_THAT(e2, Catch::Contains("at most 64 draft nodes") && Catch::Contains("got 100"));
  CHECK(one_line(e2));
  opts.k = 100;
  // Within the limit the same tree is fine (trimmed to the budget near the end of the output).
  opts.max_tree_nodes = 128;
  opts.is_stop = [](TokenId) { return true; };  // one verification pass is enough (and 200 would be slow)
  FixedDrafter trimmed(wide, /*within_budget=*/true);
  CHECK(decode_error(&trimmed, opts).empty());
}

TEST_CASE("a malformed proposal is rejected", "[speculative][badinput]") {
  const int V = stories().model.config().vocab_size;
  DecodeOptions opts;
  opts.max_new_tokens = 8;
  opts.k = 4;
  struct Case {
    const char* name;
    DraftProposal p;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {"token out of range", {.tokens = {1, V}}, "got " + std::to_string(V)},
      {"negative token", {.tokens = {-2}}, "got -2"},
      {"parent after the node", {.tokens = {1, 2}, .parents = {-1, 1}}, "parent in -1..0, got 1"},
      {"parents of the wrong length", {.tokens = {1, 2}, .parents = {-1}}, "got 1"},
      {"q of the wrong size", {.tokens = {1}, .q = std::vector<float>(V - 1, 0.f)}, std::to_string(V - 1)},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    FixedDrafter d(c.p);
    const std::string e = decode_error(&d, opts);
    CHECK_THAT(e, Catch::Contains(c.expect));
    CHECK(one_line(e));
  }
}

TEST_CASE("a draft model with another vocabulary names the file and both sizes", "[speculative][badinput]") {
  auto& s = stories();
  const std::string other = stories_with_vocab(300);
  REQUIRE(load_model(other)->config.vocab_size == 300);  // the rewritten file itself is valid
  DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get()};
  const auto& info = drafters::default_registry().get("draft_model");
  const std::string e = error_or_empty([&] { info.factory(env, DrafterOptions({{"model", other}}, "draft_model")); });
  CHECK_THAT(e, Catch::Contains(other) && Catch::Contains("300") && Catch::Contains("512"));
  CHECK(one_line(e));

  const std::string missing = (test::scratch_dir("decoder_errors") / "no_such_draft.bin").string();
  const std::string e2 = error_or_empty([&] {
    info.factory(env, DrafterOptions({{"model", missing}}, "draft_model"));
  });
  CHECK_THAT(e2, Catch::Contains(missing));
  CHECK(one_line(e2));
  const std::string e3 = error_or_empty([&] { info.factory(env, DrafterOptions({}, "draft_model")); });
  CHECK_THAT(e3, Catch::Contains("model = PATH"));
  CHECK(one_line(e3));
}

TEST_CASE("an unknown drafter option names the key and lists the known ones", "[speculative][badinput]") {
  auto& s = stories();
  DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get()};
  auto& registry = drafters::default_registry();
  const std::string e = error_or_empty([&] {
    registry.get("early_exit").factory(env, DrafterOptions({{"layer", "2"}}, "drafter.ee"));
  });
  CHECK_THAT(e, Catch::Contains("[drafter.ee] unknown key 'layer'"));
  for (const char* known : {"layers", "tree_width", "tree_depth"}) CHECK_THAT(e, Catch::Contains(known));
  CHECK(one_line(e));
  const std::string e2 = error_or_empty([&] {
    registry.get("draft_model")
        .factory(env, DrafterOptions({{"model", test::stories_model()}, {"tree_widht", "2"}}, "draft_model"));
  });
  CHECK_THAT(e2, Catch::Contains("unknown key 'tree_widht'") && Catch::Contains("tree_width"));
  CHECK(one_line(e2));
}

TEST_CASE("a prompt longer than the context is an error", "[speculative][badinput]") {
  auto& s = stories();
  const int ctx = s.model.config().max_seq_len;
  const std::vector<TokenId> prompt(ctx + 88, 5);
  auto rule = verifiers::make_greedy_rule();
  DecodeOptions opts;
  opts.max_new_tokens = 4;
  const std::string e = error_or_empty([&] { speculative_decode(s.model, nullptr, *rule, prompt, opts); });
  CHECK_THAT(e, Catch::Contains(std::to_string(ctx)) && Catch::Contains(std::to_string(ctx + 88)));
  CHECK(one_line(e));
  // Exactly the context is too long as well (no room for one new token); one less fits.
  const std::vector<TokenId> full(ctx, 5), fits(ctx - 1, 5);
  CHECK(one_line(error_or_empty([&] { speculative_decode(s.model, nullptr, *rule, full, opts); })));
  CHECK(speculative_decode(s.model, nullptr, *rule, fits, opts).tokens.size() == 1);
}

// ---- q rows (validity issue, point 3) ----------------------------------------------------------------

namespace {
// A chain proposal of one node (token `token`) whose q row is `row` padded with zeros to V.
DraftProposal one_node_with_q(TokenId token, std::vector<float> row) {
  const int V = stories().model.config().vocab_size;
  DraftProposal p;
  p.tokens = {token};
  p.q.assign(static_cast<size_t>(V), 0.f);
  std::copy(row.begin(), row.end(), p.q.begin());
  return p;
}
std::string q_error(std::vector<float> row) {
  FixedDrafter d(one_node_with_q(1, std::move(row)));
  DecodeOptions opts;
  opts.max_new_tokens = 4;
  opts.k = 1;
  return decode_error(&d, opts);
}
}  // namespace

TEST_CASE("every q row must be a distribution; the error names the node", "[speculative][badinput]") {
  // The reviewer's case: q reported as (0.45, 0.05) for tokens drawn from (0.9, 0.1). Only the proposed
  // token's entry was checked before (0.05 > 0 passed), and the verifier used the wrong law.
  const std::string half = q_error({0.45f, 0.05f});
  CHECK_THAT(half, Catch::Contains("draft node 0") && Catch::Contains("sums to 1") && Catch::Contains("0.5"));
  CHECK(one_line(half));
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (const auto& [label, row] :
       std::vector<std::pair<const char*, std::vector<float>>>{{"negative", {1.2f, 0.5f, -0.7f}},
                                                               {"NaN", {0.5f, 0.5f, nan}},
                                                               {"inf", {0.5f, 0.5f, inf}},
                                                               {"above 1", {0.f, 2.f, -1.f}}}) {
    INFO(label);
    const std::string e = q_error(row);
    CHECK_THAT(e, Catch::Contains("draft node 0") && Catch::Contains("finite and in [0, 1]"));
    CHECK(one_line(e));
  }
  // Within the tolerance: accepted (the verifier divides by the sum).
  CHECK(q_error({0.5f, 0.5f + 0.5f * static_cast<float>(kQRowTolerance)}).empty());
  CHECK(q_error({0.2f, 0.8f}).empty());
  // A second node's bad row names node 1.
  {
    const int V = stories().model.config().vocab_size;
    DraftProposal p = one_node_with_q(1, {0.2f, 0.8f});
    p.tokens.push_back(1);
    p.q.resize(2 * static_cast<size_t>(V), 0.f);
    p.q[static_cast<size_t>(V) + 1] = 0.3f;
    FixedDrafter d(p);
    DecodeOptions opts;
    opts.max_new_tokens = 4;
    opts.k = 2;
    CHECK_THAT(decode_error(&d, opts), Catch::Contains("draft node 1"));
  }
}

TEST_CASE("a drafter factory that returns no drafter is an error, not an AR run", "[speculative][badinput]") {
  const DrafterInfo info{"null_drafter", "returns nothing",
                         [](const DrafterEnv&, const DrafterOptions&) { return std::unique_ptr<Drafter>(); }};
  DrafterEnv env{.target = &stories().model};
  const std::string e = error_or_empty([&] { make_drafter(info, env, DrafterOptions()); });
  CHECK_THAT(e, Catch::Contains("null_drafter") && Catch::Contains("returned no drafter"));
  CHECK(one_line(e));
}

TEST_CASE("rule greedy refuses a temperature above 0", "[speculative][badinput]") {
  auto& s = stories();
  auto greedy = verifiers::make_greedy_rule();
  DecodeOptions opts;
  opts.max_new_tokens = 4;
  opts.sampling.temperature = 0.7f;
  const std::string e = error_or_empty([&] { speculative_decode(s.model, nullptr, *greedy, s.prompt, opts); });
  CHECK_THAT(e, Catch::Contains("greedy") && Catch::Contains("temperature 0") && Catch::Contains("0.7"));
  CHECK(one_line(e));
  opts.sampling.temperature = 0.f;
  CHECK(error_or_empty([&] { speculative_decode(s.model, nullptr, *greedy, s.prompt, opts); }).empty());
  // The other rules decode at any temperature.
  opts.sampling.temperature = 0.7f;
  CHECK(error_or_empty([&] {
          speculative_decode(s.model, nullptr, *verifiers::make_speculative_rule(), s.prompt, opts);
        }).empty());
}
