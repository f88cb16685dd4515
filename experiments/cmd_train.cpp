// specdec train medusa: trains Medusa heads on features collected by `specdec collect` (drafters/medusa/
// train_medusa.h does the work). The config is an INI file of plain keys (no sections); --key value on the
// command line overrides it. Writes the heads (safetensors, metadata inside) and the metadata as OUT.json.
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/model/loader.h"
#include "core/sha256.h"
#include "drafters/medusa/train_medusa.h"
#include "drafters/train/features.h"
#include "experiments/cli.h"
#include "experiments/config.h"
#include "experiments/progress.h"

namespace po = boost::program_options;

namespace specdec::cli {

namespace {

struct TrainOptions {
  std::string model, data, out, checkpoint;
  medusa::MedusaTrainConfig cfg;
};

// Every config key, bound to where it goes. The same description parses the file and the command line.
po::options_description config_keys(TrainOptions& o) {
  medusa::MedusaTrainConfig& c = o.cfg;
  po::options_description d("config keys (in CONFIG.ini as key = value; --key value on the command line wins)");
  d.add_options()
      ("model", po::value(&o.model), "the target model the features were collected from (its LM head is frozen "
                                      "and shared by the heads)")
      ("data", po::value(&o.data), "features file(s) of specdec collect, comma-separated")
      ("out", po::value(&o.out), "the heads file to write (safetensors; the metadata also as OUT.json)")
      ("checkpoint", po::value(&o.checkpoint), "the checkpoint file (default OUT.ckpt)")
      ("heads", po::value(&c.n_heads)->default_value(c.n_heads), "Medusa heads (head k predicts t + k + 2)")
      ("layers", po::value(&c.n_layers)->default_value(c.n_layers), "residual SiLU blocks per head")
      ("epochs", po::value(&c.epochs)->default_value(c.epochs), "passes over the training rows")
      ("steps", po::value(&c.steps)->default_value(c.steps), "optimiser steps (> 0 overrides epochs)")
      ("batch", po::value(&c.batch)->default_value(c.batch), "rows per step")
      ("lr", po::value(&c.lr)->default_value(c.lr, "0.001"), "peak learning rate")
      ("min_lr", po::value(&c.min_lr)->default_value(c.min_lr), "the cosine decay's floor")
      ("warmup", po::value(&c.warmup)->default_value(c.warmup), "linear warm-up steps")
      ("weight_decay", po::value(&c.weight_decay)->default_value(c.weight_decay), "AdamW's decoupled weight decay "
                                                                                   "(block matrices only)")
      ("clip", po::value(&c.clip)->default_value(c.clip), "global gradient norm limit (0: none)")
      ("init_scale", po::value(&c.init_scale)->default_value(c.init_scale), "0: zero blocks (heads start as the "
                                                                            "target's next-token prediction); else "
                                                                            "uniform in [-s, s]")
      ("seed", po::value(&c.seed)->default_value(c.seed), "held-out split, row order, initial weights")
      ("threads", po::value(&c.threads)->default_value(c.threads), "Eigen/OpenMP threads (0: OMP_NUM_THREADS or "
                                                                   "all cores); results are reproducible per count")
      ("checkpoint_every", po::value(&c.checkpoint_every)->default_value(c.checkpoint_every),
       "steps between checkpoints (0: none)")
      ("heldout_fraction", po::value(&c.heldout_fraction)->default_value(c.heldout_fraction, "0.05"),
       "fraction of the sequences held out for evaluation")
      ("response_only", po::value(&c.response_only)->default_value(c.response_only, "false"),
       "train and evaluate only where the label row is a response row")
      ("train_vocab", po::value(&c.train_vocab)->default_value(c.train_vocab),
       "0 = full vocabulary; N = the loss over the N most frequent label tokens (faster by V/N; evaluation stays "
       "full)");
  return d;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t b = item.find_first_not_of(" \t"), e = item.find_last_not_of(" \t");
    if (b != std::string::npos) out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

std::vector<std::string> key_names(const po::options_description& d) {
  std::vector<std::string> names;
  for (const auto& opt : d.options()) names.push_back(opt->long_name());
  return names;
}

std::string fixed(double v, int digits) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// One line per head: "epoch  step  head  train_loss  heldout_loss  top1 top2 top3 top5 top10".
// With a training vocabulary, every epoch's table starts with a line saying what the train column is over.
std::string epoch_table(const medusa::EpochReport& e, bool header) {
  std::string s;
  if (e.train_vocab > 0)
    s += "train_vocab = " + std::to_string(e.train_vocab) + " (" + fixed(100.0 * e.train_vocab_coverage, 2) +
         "% of the training label mass): train_loss over these ids, held-out figures over the full vocabulary\n";
  if (header) s += "epoch     step  head  train_loss  heldout_loss   top1   top2   top3   top5  top10\n";
  for (size_t k = 0; k < e.heldout.size(); ++k) {
    char buf[200];
    const auto& h = e.heldout[k];
    const std::string train = e.train.empty() ? "-" : fixed(e.train[k].loss, 4);
    std::snprintf(buf, sizeof buf, "%5d %8lld %5zu %11s %13s %6s %6s %6s %6s %6s", e.epoch,
                  static_cast<long long>(e.step), k, train.c_str(), fixed(h.loss, 4).c_str(),
                  fixed(h.topk[0], 3).c_str(), fixed(h.topk[1], 3).c_str(), fixed(h.topk[2], 3).c_str(),
                  fixed(h.topk[4], 3).c_str(), fixed(h.topk[9], 3).c_str());
    s += buf;
    if (k + 1 < e.heldout.size()) s += "\n";
  }
  return s;
}

int train_medusa_command(const std::vector<std::string>& args) {
  TrainOptions o;
  std::string config_path;
  bool resume = false, quiet = false;
  po::options_description keys = config_keys(o);
  po::options_description cmd(
      "specdec train medusa: train Medusa heads on features collected by specdec collect\n\n"
      "usage: specdec train medusa CONFIG.ini [--key value ...] [--resume] [--quiet]\n\n"
      "Head k learns the target's distribution k + 2 tokens ahead from its final-norm hidden state (soft\n"
      "cross-entropy against its top-k; docs/training.md). Each epoch prints the held-out loss and top-i\n"
      "accuracies per head; OUT gets the heads with that table in their metadata (accuracy_topk).\n\noptions");
  cmd.add_options()
      ("help,h", "show this help")
      ("config", po::value(&config_path), "the training config (INI of the keys below)")
      ("resume", po::bool_switch(&resume), "continue from the checkpoint (same data and config)")
      ("quiet,q", po::bool_switch(&quiet), "no progress display or per-epoch table (the final table is printed)");
  po::options_description all;
  all.add(cmd).add(keys);
  po::positional_options_description pos;
  pos.add("config", 1);
  po::variables_map vm;
  try {
    // No prefix guessing: --epoch must not silently mean --epochs.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::store(po::command_line_parser(args).options(all).positional(pos).style(style).run(), vm);
  } catch (const po::unknown_option& e) {
    std::string name = e.get_option_name();
    name.erase(0, name.find_first_not_of('-'));
    const std::string suggestion = experiments::closest_match(name, key_names(keys));
    SPECDEC_FAIL("specdec train medusa: ", e.what(), suggestion.empty() ? "" : " (did you mean --" + suggestion + "?)");
  } catch (const po::error& e) {
    SPECDEC_FAIL("specdec train medusa: ", e.what());
  }
  if (vm.count("help")) {
    std::cout << cmd << "\n" << keys << "\n";
    return 0;
  }
  SPECDEC_CHECK(vm.count("config"), "a config file: specdec train medusa CONFIG.ini (see --help)");
  config_path = vm["config"].as<std::string>();
  {
    std::ifstream in(config_path);
    SPECDEC_CHECK(in.good(), config_path, ": cannot open the training config");
    po::parsed_options parsed(&keys);
    try {
      parsed = po::parse_config_file(in, keys, /*allow_unregistered=*/true);
    } catch (const po::error& e) {
      SPECDEC_FAIL(config_path, ": ", e.what());
    }
    for (const auto& opt : parsed.options)
      if (opt.unregistered) {
        const std::string suggestion = experiments::closest_match(opt.string_key, key_names(keys));
        SPECDEC_FAIL(config_path, ": unknown key '", opt.string_key, "'",
                     suggestion.empty() ? "" : " (did you mean '" + suggestion + "'?)",
                     "; specdec train medusa --help lists the keys");
      }
    try {
      po::store(parsed, vm);  // values from the command line, stored first, win
      po::notify(vm);
    } catch (const po::error& e) {
      SPECDEC_FAIL(config_path, ": ", e.what());
    }
  }
  SPECDEC_CHECK(!o.model.empty(), config_path, ": key 'model' is missing (the target model)");
  SPECDEC_CHECK(!o.data.empty(), config_path, ": key 'data' is missing (features files of specdec collect)");
  SPECDEC_CHECK(!o.out.empty(), config_path, ": key 'out' is missing (the heads file to write)");
  medusa::MedusaTrainConfig& c = o.cfg;
  c.model_path = o.model;
  c.checkpoint_path = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;
  set_threads(c.threads);
  // The output folders now, not after hours of training.
  for (const std::string& path : {o.out, c.checkpoint_path}) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    SPECDEC_CHECK(!ec, path, ": cannot create its folder (", ec.message(), ")");
  }

  const std::shared_ptr<const LoadedModel> model = load_model(o.model);
  const std::string model_sha = train::target_sha256(o.model);
  train::FeatureData data;
  for (const std::string& path : split_list(o.data)) {
    medusa::append_features(data, train::read_features(path), path);
    c.data_files.push_back({path, std::filesystem::file_size(path), sha256_file(path)});
  }
  SPECDEC_CHECK(data.target_sha256 == model_sha, o.data, ": features of the target with sha256 ", data.target_sha256,
                ", the model ", o.model, " has ", model_sha);
  SPECDEC_CHECK(data.hidden_size == model->config.dim && data.vocab_size == model->config.vocab_size, o.data,
                ": features of hidden size ", data.hidden_size, " and vocabulary ", data.vocab_size, ", the model ",
                o.model, " has ", model->config.dim, " and ", model->config.vocab_size);
  SPECDEC_CHECK(data.feature == "final_norm", o.data, ": feature '", data.feature,
                "', Medusa heads read 'final_norm' (the final-norm hidden state)");
  const std::vector<float> lm = medusa::lm_head_f32(*model);
  std::printf("specdec train medusa: %lld rows in %d sequences (%s), H = %d, V = %d, %d heads x %d blocks, %d threads\n",
              static_cast<long long>(data.n_rows()), data.n_sequences(), o.data.c_str(), data.hidden_size,
              data.vocab_size, c.n_heads, c.n_layers, c.threads > 0 ? c.threads : omp_get_max_threads());

  const experiments::Progress::Mode mode = experiments::Progress::detect(quiet);
  std::optional<experiments::Progress> progress;
  bool table_header = true;
  medusa::TrainCallbacks cb;
  cb.on_step = [&](int64_t step, int64_t total, int64_t rows, double loss, float lr) {
    if (!progress) progress.emplace(mode, total, step - 1, stdout, "rows");
    char label[64];
    std::snprintf(label, sizeof label, "loss %.4f lr %.2e", loss, lr);
    progress->pair_done(rows, label);
  };
  cb.on_epoch = [&](const medusa::EpochReport& e) {
    const std::string text = epoch_table(e, table_header);
    table_header = false;
    if (progress) {
      progress->note(text);
    } else if (!quiet) {
      std::printf("%s\n", text.c_str());
      std::fflush(stdout);
    }
  };
  cb.on_checkpoint = [&](const std::string& path, int64_t step) {
    if (progress && mode == experiments::Progress::Mode::kPlain)
      progress->note("checkpoint: " + path + " at step " + std::to_string(step));
  };
  const medusa::MedusaTrainResult r = medusa::train_medusa(data, lm, c, cb, resume);
  if (progress) progress->finish();
  if (quiet) std::printf("%s\n", epoch_table(r.epochs.back(), true).c_str());

  medusa::save_medusa_heads(r.heads, o.out);
  {
    const std::string json_path = o.out + ".json";
    std::ofstream js(json_path);
    js << nlohmann::json::parse(r.heads.metadata_json).dump(2) << "\n";
    SPECDEC_CHECK(js.good(), json_path, ": cannot write the metadata");
  }
  std::printf("wrote %s (+ .json): %lld steps, %lld training rows, %lld held-out rows, %.1f s; training steps: "
              "%.0f rows/s\n",
              o.out.c_str(), static_cast<long long>(r.steps), static_cast<long long>(r.train_rows),
              static_cast<long long>(r.heldout_rows), r.wall_s,
              r.step_s > 0 ? static_cast<double>(r.rows_stepped) / r.step_s : 0.0);
  return 0;
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  SPECDEC_CHECK(!args.empty() && args[0] != "--help" && args[0] != "-h",
                "a drafter to train: specdec train medusa CONFIG.ini (specdec train medusa --help)");
  SPECDEC_CHECK(args[0] == "medusa", "specdec train ", args[0], ": unknown drafter to train; known: medusa");
  return train_medusa_command({args.begin() + 1, args.end()});
}

}  // namespace specdec::cli
