// early_exit (LayerSkip-style self-speculation): the target's first `layers` layers, then the final norm and
// LM head. No weight is copied: the drafter runs the very same Model object, and by default in the target's
// own KV cache (share_kv: those layers' keys and values of every accepted token are already there, written
// by the verification pass), so a step forwards only the last emitted token and the draft itself.
#include "drafters/early_exit.h"

#include "core/error.h"
#include "drafters/model_drafter.h"

namespace specdec::drafters {

DrafterInfo early_exit_info() {
  return {
      "early_exit",
      "the target's first L layers + final norm + LM head draft for it (layers = L, default 1/4; "
      "min_confidence = stop a chain where the draft's largest probability is below it, default 0 = off; share_kv = "
      "run in the target's KV cache, default true, false = a cache of its own)",
      [](const DrafterEnv& env, const DrafterOptions& opt) -> std::unique_ptr<Drafter> {
        const int L = env.target->config().n_layers;
        ModelDrafterParams p;
        p.n_layers = opt.get_int("layers", std::max(1, L / 4));
        p.tree_width = opt.get_int("tree_width", 1);
        p.tree_depth = opt.get_int("tree_depth", 1);
        p.min_confidence = opt.get_double("min_confidence", 0.0);
        p.share_target_kv = opt.get_bool("share_kv", true);
        opt.check_all_used();
        SPECDEC_CHECK(p.min_confidence >= 0.0 && p.min_confidence < 1.0, "[", opt.section(),
                      "] min_confidence in [0, 1), got ", p.min_confidence);
        SPECDEC_CHECK(p.n_layers >= 1 && p.n_layers < L, "[", opt.section(), "] layers in 1..", L - 1,
                      " (fewer than the target's ", L, "), got ", p.n_layers);
        return std::make_unique<ModelDrafter>(*env.target, nullptr, env, p);
      }};
}

}  // namespace specdec::drafters
