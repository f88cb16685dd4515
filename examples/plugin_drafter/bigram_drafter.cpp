// An example specdec drafter plugin, built out of tree: "bigram" proposes, after the last token, the token
// that has most often followed it so far in this sequence (prompt + output), then continues from that
// token to a chain of up to k. No model, deterministic proposals (q one-hot): cheap drafts that pay off on
// repetitive text. Compiled with -DEXAMPLE_BAD_ABI it reports a wrong plugin ABI version, so specdec's
// tests can check the mismatch error.
#include <span>
#include <unordered_map>

#include "core/error.h"
#include "core/speculative/drafter.h"

namespace {

using specdec::DraftProposal;
using specdec::TargetFeatures;
using specdec::TokenId;

class BigramDrafter final : public specdec::Drafter {
 public:
  explicit BigramDrafter(int min_count) : min_count_(min_count) {}

  void begin(std::span<const TokenId> prompt, const TargetFeatures&) override {
    counts_.clear();
    best_.clear();
    last_ = kNone;
    observe(prompt);
  }

  // A chain: last -> best(last) -> best(best(last)) ... until k tokens or a token without a follower seen
  // min_count times. The chain may cycle (a b a b ...): that is exactly the repetition it bets on.
  DraftProposal propose(int max_tokens) override {
    DraftProposal p;
    TokenId t = last_;
    while (p.size() < max_tokens) {
      const auto it = best_.find(t);
      if (it == best_.end() || it->second.count < min_count_) break;
      t = it->second.token;
      p.tokens.push_back(t);
    }
    return p;
  }

  void accept(std::span<const TokenId> accepted, const TargetFeatures&) override { observe(accepted); }

 private:
  static constexpr TokenId kNone = -1;
  struct Follower {
    TokenId token;
    int count;
  };

  // Counts each (previous, next) pair and keeps, per previous token, its most frequent follower (ties go to
  // the most recent one), so propose() is O(k) whatever the context length.
  void observe(std::span<const TokenId> tokens) {
    for (const TokenId t : tokens) {
      if (last_ != kNone) {
        const int c = ++counts_[last_][t];
        auto [it, fresh] = best_.try_emplace(last_, Follower{t, c});
        if (!fresh && c >= it->second.count) it->second = {t, c};
      }
      last_ = t;
    }
  }

  int min_count_;
  std::unordered_map<TokenId, std::unordered_map<TokenId, int>> counts_;  // previous -> next -> count
  std::unordered_map<TokenId, Follower> best_;                            // previous -> most frequent next
  TokenId last_ = kNone;
};

specdec::DrafterInfo bigram_info() {
  return {"bigram",
          "(example plugin) the token that most often followed the last one in this sequence, chained k times "
          "(min_count = N: only followers seen N times)",
          [](const specdec::DrafterEnv&, const specdec::DrafterOptions& opt) -> std::unique_ptr<specdec::Drafter> {
            // get_int / check_all_used are specdec functions: they resolve against the loading executable.
            const int min_count = opt.get_int("min_count", 1);
            opt.check_all_used();
            // Errors are thrown like specdec's own (a header-only specdec::Error): the CLI prints one line.
            SPECDEC_CHECK(min_count >= 1, "[", opt.section(), "] min_count >= 1, got ", min_count);
            return std::make_unique<BigramDrafter>(min_count);
          }};
}

}  // namespace

// ---- the plugin ABI: two C functions (see core/speculative/drafter.h) --------------------------------
extern "C" {

__attribute__((visibility("default"))) int specdec_plugin_abi_version(void) {
#ifdef EXAMPLE_BAD_ABI
  return SPECDEC_PLUGIN_ABI_VERSION + 1;  // as if built against newer headers: specdec must refuse it
#else
  return SPECDEC_PLUGIN_ABI_VERSION;
#endif
}

__attribute__((visibility("default"))) void specdec_plugin_register(specdec::DrafterRegistry* registry) {
  registry->add(bigram_info());  // add() is virtual: called through the host's vtable
}

}  // extern "C"
