// draft_model: loads any model specdec loads (llama2.c, GGUF, safetensors) as the drafter, refusing one
// whose vocabulary differs from the target's; it runs on the target's device (DrafterEnv::make_model).
#include "drafters/draft_model.h"

#include "core/error.h"
#include "core/loading.h"
#include "core/backends/cpu/llama_cpu.h"
#include "drafters/model_drafter.h"

namespace specdec::drafters {

DrafterInfo draft_model_info() {
  return {"draft_model", "a smaller model with the same vocabulary drafts a chain, or a tree (tree_width, tree_depth)",
          [](const DrafterEnv& env, const DrafterOptions& opt) -> std::unique_ptr<Drafter> {
            const std::string path = opt.get("model", "");
            ModelDrafterParams p;
            p.tree_width = opt.get_int("tree_width", 1);
            p.tree_depth = opt.get_int("tree_depth", 1);
            p.n_layers = opt.get_int("layers", -1);
            opt.check_all_used();
            SPECDEC_CHECK(!path.empty(), "[", opt.section(), "] model = PATH: the draft model file is required");
            // The model is loaded once per run (DrafterEnv::shared) and shared by the run's drafters, which then
            // draft their chains in one forward_batch per position in the batched loop.
            struct Shared {
              std::shared_ptr<Model> model;
            };
            const auto make = [&] {
              auto loaded = load_model(path);
              const int V = env.target->config().vocab_size;
              SPECDEC_CHECK(loaded->config.vocab_size == V, path, ": draft model vocabulary of ",
                            loaded->config.vocab_size, " tokens does not match the target's ", V,
                            " (a drafter must share the target's tokenizer)");
              // On the target's device when the caller says how (DrafterEnv::make_model), else on the CPU.
              auto sh = std::make_shared<Shared>();
              sh->model = env.make_model ? env.make_model(loaded) : std::make_shared<LlamaCpu>(loaded);
              SPECDEC_CHECK(sh->model != nullptr, path, ": the model factory made no draft model");
              return sh;
            };
            const std::shared_ptr<const Shared> shared =
                env.shared ? env.shared->get_or_make<Shared>("draft_model:" + path, make) : make();
            Model& ref = *shared->model;
            return std::make_unique<ModelDrafter>(ref, std::const_pointer_cast<Shared>(shared), env, p);
          }};
}

}  // namespace specdec::drafters
