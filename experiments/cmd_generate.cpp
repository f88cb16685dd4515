// specdec generate: load a model and its tokenizer, stream generated text, end with tokens/s.
#include <omp.h>

#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "core/generate.h"
#include "core/model/llama_cpu.h"
#include "core/loading.h"
#include "experiments/cli.h"

namespace po = boost::program_options;

namespace specdec::cli {

void set_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

int cmd_generate(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, prompt;
  GenerateOptions opts;
  int threads = 0;
  bool chat = false;
  po::options_description desc(
      "specdec generate: generate text from a prompt and report tokens/s\n\n"
      "usage: specdec generate --model PATH [--tokenizer PATH] --prompt TEXT [options]\n\noptions");
  desc.add_options()
      ("help,h", "show this help")
      ("model,m", po::value(&model_path)->required(),
       "model file: llama2.c checkpoint (.bin), GGUF (.gguf) or a safetensors folder")
      ("tokenizer,t", po::value(&tokenizer_path),
       "tokenizer file: llama2.c tokenizer.bin (required for llama2.c models; GGUF models carry their own)")
      ("prompt,p", po::value(&prompt)->default_value(""), "prompt text; empty starts from BOS")
      ("chat", po::bool_switch(&chat), "wrap the prompt in the model's chat template (instruct models)")
      ("max-new-tokens,n", po::value(&opts.max_new_tokens)->default_value(256),
       "maximum number of tokens to generate (clipped to the model's context)")
      ("temperature", po::value(&opts.sampling.temperature)->default_value(0.f),
       "sampling temperature; 0 = greedy")
      ("top-k", po::value(&opts.sampling.top_k)->default_value(0), "keep the k most likely tokens; 0 = off")
      ("top-p", po::value(&opts.sampling.top_p)->default_value(1.f), "nucleus sampling mass; 1 = off")
      ("seed,s", po::value(&opts.seed)->default_value(0), "random seed (sampling at temperature > 0)")
      ("threads", po::value(&threads)->default_value(0), "CPU threads; 0 = OMP_NUM_THREADS or all cores");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  po::notify(vm);
  opts.sampling.validate();
  set_threads(threads);

  auto loaded = load_model(model_path);
  LlamaCpu model(loaded);
  auto tok = load_tokenizer(*loaded, tokenizer_path);

  std::string text = prompt;
  if (chat) {
    const ChatMessage msg{"user", prompt};
    text = tok->apply_chat_template({&msg, 1}, true);
  }
  std::vector<TokenId> ids = tok->encode(text, tok->add_bos_default(), /*parse_special=*/chat);
  if (ids.empty()) ids.push_back(tok->bos());
  opts.is_stop = [&](TokenId t) { return tok->is_end_of_generation(t); };

  if (!chat) std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
  TokenId prev = ids.back();
  const GenerateResult res = generate(model, ids, opts, [&](TokenId t) {
    if (!tok->is_end_of_generation(t)) {
      const std::string piece = tok->decode_token(prev, t);
      std::fwrite(piece.data(), 1, piece.size(), stdout);
      std::fflush(stdout);
    }
    prev = t;
  });
  std::fputs("\n", stdout);  // end the text with a newline, as llama2.c's run.c does
  std::fflush(stdout);
  const int n = static_cast<int>(res.tokens.size());
  std::fprintf(stderr, "\n%d prompt tokens in %.3f s (%.1f tok/s); %d new tokens in %.3f s: %.1f tok/s%s\n",
               res.prompt_tokens, res.prefill_seconds, res.prompt_tokens / std::max(res.prefill_seconds, 1e-9), n,
               res.decode_seconds, n > 1 ? (n - 1) / std::max(res.decode_seconds, 1e-9) : 0.0,
               res.stopped ? " (stopped at end of generation)" : "");
  return 0;
}

}  // namespace specdec::cli
