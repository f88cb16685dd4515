// The one list of built-in drafters.
#include "drafters/register_builtin.h"

#include "drafters/draft_model.h"
#include "drafters/eagle/eagle_drafter.h"
#include "drafters/early_exit.h"
#include "drafters/medusa/medusa_drafter.h"
#include "drafters/ngram.h"
#include "drafters/reference.h"

namespace specdec::drafters {

void register_builtin(DrafterRegistry& r) {
  r.add(ngram_info());
  r.add(draft_model_info());
  r.add(early_exit_info());
  r.add(synthetic_info());
  r.add(oracle_info());
  r.add(medusa::medusa_info());
  r.add(eagle::eagle_info());
}

DrafterRegistry& default_registry() {
  static DrafterRegistry registry = [] {
    DrafterRegistry r;
    register_builtin(r);
    return r;
  }();
  return registry;
}

}  // namespace specdec::drafters
