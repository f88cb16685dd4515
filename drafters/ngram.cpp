// ngram / prompt lookup: deterministic proposals (q one-hot), no model at all.
#include "drafters/ngram.h"

#include <fstream>
#include <iterator>
#include <map>
#include <tuple>
#include <unordered_map>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"

namespace specdec::drafters {
namespace {

// Hash of the n tokens starting at p.
uint64_t hash_ngram(const TokenId* p, int n) {
  uint64_t h = 1469598103934665603ull ^ static_cast<uint64_t>(n);
  for (int i = 0; i < n; ++i) h = (h ^ static_cast<uint32_t>(p[i])) * 1099511628211ull;
  return h;
}

// A static index of a corpus: for each n-gram length, the position just after its last occurrence.
struct CorpusIndex {
  std::vector<TokenId> tokens;
  std::vector<std::unordered_map<uint64_t, int>> next_pos;  // [n] -> hash -> position after the n-gram
};

class NgramDrafter final : public Drafter {
 public:
  NgramDrafter(int min_n, int max_n, std::shared_ptr<const CorpusIndex> corpus)
      : min_n_(min_n), max_n_(max_n), corpus_(std::move(corpus)) {}

  void begin(std::span<const TokenId> prompt, const TargetFeatures&) override {
    ctx_.assign(prompt.begin(), prompt.end());
  }
  void accept(std::span<const TokenId> accepted, const TargetFeatures&) override {
    ctx_.insert(ctx_.end(), accepted.begin(), accepted.end());
  }

  DraftProposal propose(int k) override {
    DraftProposal p;
    const int len = static_cast<int>(ctx_.size());
    for (int n = std::min(max_n_, len - 1); n >= min_n_; --n) {
      const TokenId* suffix = ctx_.data() + len - n;
      // Most recent earlier occurrence: scan backwards from the position before the suffix itself.
      for (int start = len - n - 1; start >= 0; --start) {
        if (!std::equal(suffix, suffix + n, ctx_.data() + start)) continue;
        const int from = start + n;
        for (int i = 0; i < k && from + i < len; ++i) p.tokens.push_back(ctx_[from + i]);
        return p;
      }
      if (corpus_ && n < static_cast<int>(corpus_->next_pos.size())) {
        const auto& idx = corpus_->next_pos[n];
        auto it = idx.find(hash_ngram(suffix, n));
        if (it != idx.end()) {
          const int from = it->second;
          // Guard against hash collisions: the n-gram before `from` must really match.
          if (std::equal(suffix, suffix + n, corpus_->tokens.data() + from - n)) {
            for (int i = 0; i < k && from + i < static_cast<int>(corpus_->tokens.size()); ++i)
              p.tokens.push_back(corpus_->tokens[from + i]);
            return p;
          }
        }
      }
    }
    return p;
  }

 private:
  int min_n_, max_n_;
  std::shared_ptr<const CorpusIndex> corpus_;
  std::vector<TokenId> ctx_;
};

std::shared_ptr<const CorpusIndex> build_corpus(const std::string& path, const Tokenizer& tok, int max_n) {
  std::ifstream in(path, std::ios::binary);
  SPECDEC_CHECK(in.good(), path, ": cannot open the n-gram corpus file");
  const std::string text{std::istreambuf_iterator<char>(in), {}};
  auto idx = std::make_shared<CorpusIndex>();
  idx->tokens = tok.encode(text, false);
  idx->next_pos.resize(max_n + 1);
  const int len = static_cast<int>(idx->tokens.size());
  for (int n = 1; n <= max_n; ++n)
    for (int s = 0; s + n < len; ++s) idx->next_pos[n][hash_ngram(idx->tokens.data() + s, n)] = s + n;
  return idx;
}

}  // namespace

DrafterInfo ngram_info() {
  return {"ngram", "prompt lookup: the longest earlier match of the context's suffix proposes what followed it",
          [](const DrafterEnv& env, const DrafterOptions& opt) -> std::unique_ptr<Drafter> {
            const int max_n = opt.get_int("max_n", 3), min_n = opt.get_int("min_n", 1);
            const std::string corpus = opt.get("corpus", "");
            opt.check_all_used();
            SPECDEC_CHECK(min_n >= 1 && max_n >= min_n, "[", opt.section(),
                          "] 1 <= min_n <= max_n, got min_n = ", min_n, " and max_n = ", max_n);
            std::shared_ptr<const CorpusIndex> idx;
            if (!corpus.empty()) {
              SPECDEC_CHECK(env.tokenizer != nullptr, "[", opt.section(), "] corpus needs the target's tokenizer");
              // Built once per run when the maker shares state (DrafterEnv::shared), else per drafter.
              auto build = [&] { return build_corpus(corpus, *env.tokenizer, max_n); };
              idx = env.shared ? env.shared->get_or_make<CorpusIndex>(
                                     "ngram.corpus\n" + corpus + "\n" + std::to_string(max_n), build)
                               : build();
            }
            return std::make_unique<NgramDrafter>(min_n, max_n, idx);
          }};
}

}  // namespace specdec::drafters
