// load_tokenizer: picks the tokenizer source for a model and checks it matches the model's vocabulary.
#include "core/loading.h"

#include <filesystem>

#include "core/error.h"
#include "core/model/gguf.h"

namespace specdec {
namespace {

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const std::string& path) {
  const auto file = GgufFile::open(path);
  const GgufTokenizerMetadata m = read_gguf_tokenizer_metadata(*file);
  if (m.model == "llama") {
    SpmVocab v;  // keeps llama.cpp's defaults (bos 1, eos 2, unk 0) for absent keys
    v.tokens = m.tokens;
    v.scores = m.scores;
    v.token_types = m.token_types;
    v.merges = m.merges;
    if (m.bos_id >= 0) v.bos = m.bos_id;
    if (m.eos_id >= 0) v.eos = m.eos_id;
    if (m.unk_id >= 0) v.unk = m.unk_id;
    v.eot = m.eot_id;
    if (m.add_bos) v.add_bos = *m.add_bos;
    if (m.add_space_prefix) v.add_space_prefix = *m.add_space_prefix;
    return make_spm_tokenizer(v);
  }
  if (m.model == "gpt2") {
    BpeVocab v;
    v.tokens = m.tokens;
    v.token_types = m.token_types;
    v.merges = m.merges;
    v.bos = m.bos_id;
    v.eos = m.eos_id;
    v.eot = m.eot_id;
    v.add_bos = m.add_bos.value_or(false);
    v.pre = m.pre.empty() ? "gpt2" : m.pre;
    return make_bpe_tokenizer(v);
  }
  SPECDEC_FAIL(path, ": tokenizer.ggml.model '", m.model, "' is not supported (expected llama or gpt2)");
}

}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const LoadedModel& model, const std::string& tokenizer_path) {
  namespace fs = std::filesystem;
  const int V = model.config.vocab_size;
  std::unique_ptr<Tokenizer> tok;
  std::string source = tokenizer_path;
  if (!tokenizer_path.empty()) {
    SPECDEC_CHECK(fs::exists(tokenizer_path), tokenizer_path, ": tokenizer file not found");
    if (fs::path(tokenizer_path).extension() == ".json")
      tok = load_hf_tokenizer_json(tokenizer_path);
    else if (fs::path(tokenizer_path).extension() == ".gguf")
      tok = tokenizer_from_gguf(tokenizer_path);
    else
      tok = load_llama2c_tokenizer(tokenizer_path, V);
  } else if (model.format == "gguf") {
    source = model.path;
    tok = tokenizer_from_gguf(model.path);
  } else if (model.format == "safetensors") {
    const fs::path dir = fs::is_directory(model.path) ? fs::path(model.path) : fs::path(model.path).parent_path();
    source = (dir / "tokenizer.json").string();
    SPECDEC_CHECK(fs::exists(source), model.path, ": no tokenizer.json beside the model; pass --tokenizer PATH");
    tok = load_hf_tokenizer_json(source);
  } else {
    SPECDEC_FAIL(model.path, ": this ", model.format,
                 " model carries no tokenizer: pass --tokenizer PATH (llama2.c tokenizer.bin or tokenizer.json)");
  }
  SPECDEC_CHECK(tok->vocab_size() == V, source, ": tokenizer has ", tok->vocab_size(), " tokens but the model ",
                model.path, " has a vocabulary of ", V);
  return tok;
}

}  // namespace specdec
