// oracle and synthetic: drafters over a recorded AR output (DrafterEnv::reference).
#include "drafters/reference.h"

#include "core/error.h"
#include "core/sampling/philox.h"

namespace specdec::drafters {
namespace {

class ReferenceDrafter final : public Drafter {
 public:
  // profile empty: the oracle. Otherwise profile[i] = P(position i+1 right | position i right).
  ReferenceDrafter(const DrafterEnv& env, std::vector<double> profile)
      : ref_(*env.reference),
        profile_(std::move(profile)),
        seed_(drafter_seed(env.seed)),
        request_(env.request),
        V_(env.target->config().vocab_size) {}

  void begin(std::span<const TokenId>, const TargetFeatures&) override {
    pos_ = 0;
    step_ = 0;
  }
  void accept(std::span<const TokenId> accepted, const TargetFeatures&) override { pos_ += accepted.size(); }

  DraftProposal propose(int k) override {
    DraftProposal p;
    bool right = true;
    for (int i = 0; i < k && pos_ + i < ref_.size(); ++i) {
      const TokenId truth = ref_[pos_ + i];
      if (right && !profile_.empty()) {
        const double a = profile_[std::min<size_t>(i, profile_.size() - 1)];
        right = uniform(seed_, request_, step_, static_cast<uint32_t>(i)) < a;
      }
      // A wrong token is any token but the truth; later positions no longer matter.
      p.tokens.push_back(right ? truth : (truth + 1) % V_);
    }
    ++step_;
    return p;
  }

 private:
  const std::vector<TokenId>& ref_;
  std::vector<double> profile_;
  uint64_t seed_, request_;
  int V_;
  size_t pos_ = 0;
  uint32_t step_ = 0;
};

void require_reference(const DrafterEnv& env, const char* name) {
  SPECDEC_CHECK(env.reference != nullptr, "drafter '", name,
                "' needs the target's AR output of the same prompt (the runner's AR baseline provides it)");
}

}  // namespace

DrafterInfo oracle_info() {
  DrafterInfo info{"oracle", "proposes the target's own AR continuation (upper bound; greedy)",
                   [](const DrafterEnv& env, const DrafterOptions& opt) -> std::unique_ptr<Drafter> {
                     opt.check_all_used();
                     require_reference(env, "oracle");
                     return std::make_unique<ReferenceDrafter>(env, std::vector<double>{});
                   }};
  info.needs_reference = true;
  return info;
}

DrafterInfo synthetic_info() {
  DrafterInfo info{"synthetic", "accepts with a configured per-position conditional profile (acceptance = a1,a2,...)",
                   [](const DrafterEnv& env, const DrafterOptions& opt) -> std::unique_ptr<Drafter> {
                     auto profile = opt.get_doubles("acceptance", {0.8});
                     opt.check_all_used();
                     require_reference(env, "synthetic");
                     for (double a : profile)
                       SPECDEC_CHECK(a >= 0 && a <= 1, "[", opt.section(), "] acceptance values in [0, 1], got ", a);
                     return std::make_unique<ReferenceDrafter>(env, std::move(profile));
                   }};
  info.needs_reference = true;
  return info;
}

}  // namespace specdec::drafters
