// load_tokenizer: picks the tokenizer source for a model and checks it matches the model's vocabulary.
#include "core/loading.h"

#include <filesystem>

#include "core/error.h"

namespace specdec {

std::unique_ptr<Tokenizer> load_tokenizer(const LoadedModel& model, const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  const int V = model.config.vocab_size;
  std::unique_ptr<Tokenizer> tok;
  if (!tokenizer_path.empty()) {
    if (fs::path(tokenizer_path).extension() == ".json")
      tok = load_hf_tokenizer_json(tokenizer_path);
    else
      tok = load_llama2c_tokenizer(tokenizer_path, V);
  } else {
    SPECDEC_FAIL(model.path, ": this ", model.format,
                 " model carries no tokenizer: pass --tokenizer PATH (llama2.c tokenizer.bin or tokenizer.json)");
  }
  SPECDEC_CHECK(tok->vocab_size() == V, (tokenizer_path.empty() ? model.path : tokenizer_path), ": tokenizer has ",
                tok->vocab_size(), " tokens but the model ", model.path, " has a vocabulary of ", V);
  return tok;
}

}  // namespace specdec
