// specdec train medusa | eagle: trains Medusa heads or the EAGLE layer on features collected by `specdec
// collect` (drafters/medusa/train_medusa.h, drafters/eagle/train_eagle.h do the work). The config is an INI file
// of plain keys (no sections); --key value on the command line overrides it. Writes the weights (safetensors,
// metadata inside) and the metadata as OUT.json. Both commands share the parsing, the checks of the inputs and
// the progress display below.
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
#include "drafters/eagle/train_eagle.h"
#include "drafters/medusa/train_medusa.h"
#include "drafters/train/features.h"
#include "experiments/cli.h"
#include "experiments/config.h"
#include "experiments/progress.h"

namespace po = boost::program_options;

namespace specdec::cli {

namespace {

// The keys every trainer has: where the target, the features and the output are.
struct CommonOptions {
  std::string model, data, out, checkpoint;
};

void add_common_keys(po::options_description& d, CommonOptions& o, const char* model_help) {
  d.add_options()("model", po::value(&o.model), model_help)("data", po::value(&o.data),
                                                            "features file(s) of specdec collect, comma-separated")(
      "out", po::value(&o.out), "the weights file to write (safetensors; the metadata also as OUT.json)")(
      "checkpoint", po::value(&o.checkpoint), "the checkpoint file (default OUT.ckpt)");
}

// Keys both trainers have with the same meaning, in the places of --help where both list them.
template <typename Config>
void add_schedule_keys(po::options_description& d, Config& c) {
  d.add_options()("min_lr", po::value(&c.min_lr)->default_value(c.min_lr), "the cosine decay's floor")(
      "warmup", po::value(&c.warmup)->default_value(c.warmup), "linear warm-up steps");
}

template <typename Config>
void add_run_keys(po::options_description& d, Config& c) {
  d.add_options()("threads", po::value(&c.threads)->default_value(c.threads),
                  "Eigen/OpenMP threads (0: OMP_NUM_THREADS or all cores); results are reproducible per count")(
      "checkpoint_every", po::value(&c.checkpoint_every)->default_value(c.checkpoint_every),
      "steps between checkpoints (0: none)")("heldout_fraction",
                                             po::value(&c.heldout_fraction)->default_value(c.heldout_fraction, "0.05"),
                                             "fraction of the sequences held out for evaluation");
}

// Every config key, bound to where it goes. The same description parses the file and the command line.
po::options_description medusa_keys(CommonOptions& o, medusa::MedusaTrainConfig& c) {
  po::options_description d("config keys (in CONFIG.ini as key = value; --key value on the command line wins)");
  add_common_keys(d, o,
                  "the target model the features were collected from (its LM head is frozen and shared by "
                  "the heads)");
  d.add_options()("heads", po::value(&c.n_heads)->default_value(c.n_heads), "Medusa heads (head k predicts t + k + 2)")(
      "layers", po::value(&c.n_layers)->default_value(c.n_layers), "residual SiLU blocks per head")(
      "epochs", po::value(&c.epochs)->default_value(c.epochs), "passes over the training rows")(
      "steps", po::value(&c.steps)->default_value(c.steps), "optimiser steps (> 0 overrides epochs)")(
      "batch", po::value(&c.batch)->default_value(c.batch), "rows per step")(
      "lr", po::value(&c.lr)->default_value(c.lr, "0.001"), "peak learning rate");
  add_schedule_keys(d, c);
  d.add_options()("weight_decay", po::value(&c.weight_decay)->default_value(c.weight_decay),
                  "AdamW's decoupled weight decay "
                  "(block matrices only)")("clip", po::value(&c.clip)->default_value(c.clip),
                                           "global gradient norm limit (0: none)")(
      "init_scale", po::value(&c.init_scale)->default_value(c.init_scale),
      "0: zero blocks (heads start as the "
      "target's next-token prediction); else "
      "uniform in [-s, s]")("seed", po::value(&c.seed)->default_value(c.seed),
                            "held-out split, row order, initial weights");
  add_run_keys(d, c);
  d.add_options()("response_only", po::value(&c.response_only)->default_value(c.response_only, "false"),
                  "train and evaluate only where the label row is a response row")(
      "train_vocab", po::value(&c.train_vocab)->default_value(c.train_vocab),
      "0 = full vocabulary; N = the loss over the N most frequent label tokens (faster by V/N; evaluation stays "
      "full)");
  return d;
}

po::options_description eagle_keys(CommonOptions& o, eagle::EagleTrainConfig& c) {
  po::options_description d("config keys (in CONFIG.ini as key = value; --key value on the command line wins)");
  add_common_keys(d, o,
                  "the target model the features were collected from (its embedding and LM head are frozen; "
                  "the layer takes its shape)");
  d.add_options()("epochs", po::value(&c.epochs)->default_value(c.epochs), "passes over the training pairs")(
      "steps", po::value(&c.steps)->default_value(c.steps), "optimiser steps (> 0 overrides epochs)")(
      "batch", po::value(&c.batch)->default_value(c.batch), "chunks (sequences or max_len pieces) per step")(
      "max_len", po::value(&c.max_len)->default_value(c.max_len), "pairs per chunk (longer sequences are cut)")(
      "lr", po::value(&c.lr)->default_value(c.lr, "0.0005"), "peak learning rate");
  add_schedule_keys(d, c);
  d.add_options()("weight_decay", po::value(&c.weight_decay)->default_value(c.weight_decay),
                  "AdamW's decoupled weight decay "
                  "(matrices only)")("clip", po::value(&c.clip)->default_value(c.clip, "0.5"),
                                     "global gradient norm limit (0: none)")(
      "init_scale", po::value(&c.init_scale)->default_value(c.init_scale, "0.02"),
      "std of the initial matrices "
      "(fc's feature half starts near "
      "the identity)")("w_reg", po::value(&c.w_reg)->default_value(c.w_reg, "1.0"),
                       "weight of the feature regression (Smooth-L1)")(
      "w_ce", po::value(&c.w_ce)->default_value(c.w_ce, "0.1"), "weight of the readout's soft cross-entropy")(
      "noise", po::value(&c.noise)->default_value(c.noise), "uniform noise in [-noise, noise] on the input features")(
      "ttt_steps", po::value(&c.ttt_steps)->default_value(c.ttt_steps),
      "draft depths trained (EAGLE-3's training-time test: depth >= 2 reads the layer's own output; ~n x the cost)")(
      "ttt_decay", po::value(&c.ttt_decay)->default_value(c.ttt_decay, "0.8"), "depth j's loss weight ttt_decay^j")(
      "seed", po::value(&c.seed)->default_value(c.seed), "held-out split, chunk order, initial weights, noise");
  add_run_keys(d, c);
  d.add_options()("train_vocab", po::value(&c.train_vocab)->default_value(c.train_vocab),
                  "0 = full vocabulary; N = the cross-entropy over the N most frequent label tokens")(
      "draft_vocab", po::value(&c.draft_vocab)->default_value(c.draft_vocab),
      "0 = the drafter reads out all V tokens; N = the N most frequent label tokens (stored as d2t)");
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

// What both commands have once the arguments are parsed: the target, the features (checked against it) and
// the flags.
struct TrainInputs {
  std::shared_ptr<const LoadedModel> model;
  train::FeatureData data;
  std::vector<medusa::DataFileInfo> data_files;
  std::string checkpoint_path;
  bool resume = false, quiet = false;
};

// Parses `specdec train NAME CONFIG.ini [--key value ...] [--resume] [--quiet]` into keys' variables (the command
// line wins over the file), sets the thread count, creates the output folders, loads the target and the
// features; nullopt after --help. Every mistake is a one-line error naming the file, key or value.
std::optional<TrainInputs> parse_and_load(const std::string& name, const std::string& about,
                                          const std::vector<std::string>& args, po::options_description& keys,
                                          CommonOptions& o, const int& threads) {
  const std::string command = "specdec train " + name;
  TrainInputs in;
  std::string config_path;
  po::options_description cmd(command + ": " + about + "\n\nusage: " + command +
                              " CONFIG.ini [--key value ...] [--resume] [--quiet]\n\noptions");
  cmd.add_options()("help,h", "show this help")("config", po::value(&config_path),
                                                "the training config (INI of the keys below)")(
      "resume", po::bool_switch(&in.resume), "continue from the checkpoint (same data and config)")(
      "quiet,q", po::bool_switch(&in.quiet), "no progress display or per-epoch table (the final table is printed)");
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
    std::string opt = e.get_option_name();
    opt.erase(0, opt.find_first_not_of('-'));
    const std::string suggestion = experiments::closest_match(opt, key_names(keys));
    SPECDEC_FAIL(command, ": ", e.what(), suggestion.empty() ? "" : " (did you mean --" + suggestion + "?)");
  } catch (const po::error& e) {
    SPECDEC_FAIL(command, ": ", e.what());
  }
  if (vm.count("help")) {
    std::cout << cmd << "\n" << keys << "\n";
    return std::nullopt;
  }
  SPECDEC_CHECK(vm.count("config"), "a config file: ", command, " CONFIG.ini (see --help)");
  config_path = vm["config"].as<std::string>();
  {
    std::ifstream file(config_path);
    SPECDEC_CHECK(file.good(), config_path, ": cannot open the training config");
    po::parsed_options parsed(&keys);
    try {
      parsed = po::parse_config_file(file, keys, /*allow_unregistered=*/true);
    } catch (const po::error& e) {
      SPECDEC_FAIL(config_path, ": ", e.what());
    }
    for (const auto& opt : parsed.options)
      if (opt.unregistered) {
        const std::string suggestion = experiments::closest_match(opt.string_key, key_names(keys));
        SPECDEC_FAIL(config_path, ": unknown key '", opt.string_key, "'",
                     suggestion.empty() ? "" : " (did you mean '" + suggestion + "'?)", "; ", command,
                     " --help lists the keys");
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
  SPECDEC_CHECK(!o.out.empty(), config_path, ": key 'out' is missing (the weights file to write)");
  in.checkpoint_path = o.checkpoint.empty() ? o.out + ".ckpt" : o.checkpoint;
  set_threads(threads);
  // The output folders now, not after hours of training.
  for (const std::string& path : {o.out, in.checkpoint_path}) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    std::error_code ec;
    if (!parent.empty()) std::filesystem::create_directories(parent, ec);
    SPECDEC_CHECK(!ec, path, ": cannot create its folder (", ec.message(), ")");
  }

  in.model = load_model(o.model);
  const std::string model_sha = train::target_sha256(o.model);
  for (const std::string& path : split_list(o.data)) {
    medusa::append_features(in.data, train::read_features(path), path);
    in.data_files.push_back({path, std::filesystem::file_size(path), sha256_file(path)});
  }
  const train::FeatureData& data = in.data;
  SPECDEC_CHECK(data.target_sha256 == model_sha, o.data, ": features of the target with sha256 ", data.target_sha256,
                ", the model ", o.model, " has ", model_sha);
  SPECDEC_CHECK(data.hidden_size == in.model->config.dim && data.vocab_size == in.model->config.vocab_size, o.data,
                ": features of hidden size ", data.hidden_size, " and vocabulary ", data.vocab_size, ", the model ",
                o.model, " has ", in.model->config.dim, " and ", in.model->config.vocab_size);
  SPECDEC_CHECK(data.feature == "final_norm", o.data, ": feature '", data.feature, "', ", command,
                " reads 'final_norm' (the final-norm hidden state)");
  return in;
}

// The progress bar (or plain lines) of the training steps, the per-epoch tables, the checkpoints.
struct TrainDisplay {
  experiments::Progress::Mode mode;
  bool quiet;
  std::optional<experiments::Progress> progress;

  explicit TrainDisplay(bool q) : mode(experiments::Progress::detect(q)), quiet(q) {}
  void step(int64_t step, int64_t total, int64_t rows, double loss, float lr) {
    if (!progress) progress.emplace(mode, total, step - 1, stdout, "rows");
    char label[64];
    std::snprintf(label, sizeof label, "loss %.4f lr %.2e", loss, lr);
    progress->pair_done(rows, label);
  }
  void epoch(const std::string& text) {
    if (progress) {
      progress->note(text);
    } else if (!quiet) {
      std::printf("%s\n", text.c_str());
      std::fflush(stdout);
    }
  }
  void checkpoint(const std::string& path, int64_t step) {
    if (progress && mode == experiments::Progress::Mode::kPlain)
      progress->note("checkpoint: " + path + " at step " + std::to_string(step));
  }
  void finish() {
    if (progress) progress->finish();
  }
};

// A trainer's callbacks (medusa::TrainCallbacks, eagle::EagleTrainCallbacks) drawing on display; table(report,
// header) is an epoch's text, the first with the column header.
template <typename Callbacks, typename Report>
Callbacks display_callbacks(TrainDisplay& display, std::string (*table)(const Report&, bool)) {
  Callbacks cb;
  cb.on_step = [&display](int64_t step, int64_t total, int64_t rows, double loss, float lr) {
    display.step(step, total, rows, loss, lr);
  };
  cb.on_epoch = [&display, table, header = true](const Report& e) mutable {
    display.epoch(table(e, header));
    header = false;
  };
  cb.on_checkpoint = [&display](const std::string& path, int64_t step) { display.checkpoint(path, step); };
  return cb;
}

// OUT.json beside the weights, then the closing line.
void write_metadata_json(const std::string& out, const std::string& metadata_json) {
  const std::string json_path = out + ".json";
  std::ofstream js(json_path);
  js << nlohmann::json::parse(metadata_json).dump(2) << "\n";
  SPECDEC_CHECK(js.good(), json_path, ": cannot write the metadata");
}

void print_written(const std::string& out, int64_t steps, int64_t train_rows, int64_t heldout_rows, double wall_s,
                   int64_t rows_stepped, double step_s) {
  std::printf(
      "wrote %s (+ .json): %lld steps, %lld training rows, %lld held-out rows, %.1f s; training steps: "
      "%.0f rows/s\n",
      out.c_str(), static_cast<long long>(steps), static_cast<long long>(train_rows),
      static_cast<long long>(heldout_rows), wall_s, step_s > 0 ? static_cast<double>(rows_stepped) / step_s : 0.0);
}

// The config keys both trainers take from the command line and the loaded inputs (recorded in the metadata).
template <typename Config>
void set_inputs(Config& c, const CommonOptions& o, const TrainInputs& in) {
  c.model_path = o.model;
  c.checkpoint_path = in.checkpoint_path;
  c.data_files = in.data_files;
}

// Runs train(callbacks) behind the progress display; quiet: only the last epoch's table, once it is done.
template <typename Callbacks, typename Report, typename Train>
auto train_with_display(bool quiet, std::string (*table)(const Report&, bool), Train train) {
  TrainDisplay display(quiet);
  const auto cb = display_callbacks<Callbacks>(display, table);
  auto r = train(cb);  // not const: returned by move
  display.finish();
  if (quiet) std::printf("%s\n", table(r.epochs.back(), true).c_str());
  return r;
}

// Writes the trained weights with save, OUT.json beside them, then the closing line.
template <typename Result, typename Weights>
void write_result(const std::string& out, const Result& r, const Weights& weights,
                  void (*save)(const Weights&, const std::string&)) {
  save(weights, out);
  write_metadata_json(out, weights.metadata_json);
  print_written(out, r.steps, r.train_rows, r.heldout_rows, r.wall_s, r.rows_stepped, r.step_s);
}

int train_medusa_command(const std::vector<std::string>& args) {
  CommonOptions o;
  medusa::MedusaTrainConfig c;
  po::options_description keys = medusa_keys(o, c);
  std::optional<TrainInputs> in = parse_and_load(
      "medusa",
      "train Medusa heads on features collected by specdec collect\n\n"
      "Head k learns the target's distribution k + 2 tokens ahead from its final-norm hidden state (soft\n"
      "cross-entropy against its top-k; docs/training.md). Each epoch prints the held-out loss and top-i\n"
      "accuracies per head; OUT gets the heads with that table in their metadata (accuracy_topk).",
      args, keys, o, c.threads);
  if (!in) return 0;
  set_inputs(c, o, *in);
  const train::FeatureData& data = in->data;
  const std::vector<float> lm = medusa::lm_head_f32(*in->model);
  std::printf(
      "specdec train medusa: %lld rows in %d sequences (%s), H = %d, V = %d, %d heads x %d blocks, %d threads\n",
      static_cast<long long>(data.n_rows()), data.n_sequences(), o.data.c_str(), data.hidden_size, data.vocab_size,
      c.n_heads, c.n_layers, c.threads > 0 ? c.threads : omp_get_max_threads());

  const medusa::MedusaTrainResult r = train_with_display<medusa::TrainCallbacks>(
      in->quiet, &epoch_table,
      [&](const medusa::TrainCallbacks& cb) { return medusa::train_medusa(data, lm, c, cb, in->resume); });
  write_result(o.out, r, r.heads, &medusa::save_medusa_heads);
  return 0;
}

// "epoch  step  train_loss  heldout_loss  reg  ce  acc@1 .. acc@4" (held-out reg / ce: depth 1, ce over the readout;
// acc@d: EAGLE's accuracy at draft depth d over the drafter's readout), then a line of the held-out chain@d (right at
// every depth 1..d) and both over the responses' starts only (EagleMetrics).
std::string eagle_epoch_line(const eagle::EagleEpochReport& e, bool header) {
  std::string s;
  if (header && e.train_vocab > 0)
    s += "train_vocab = " + std::to_string(e.train_vocab) + " (" + fixed(100.0 * e.train_vocab_coverage, 2) +
         "% of the training label mass): train_loss's cross-entropy over these ids\n";
  if (header) s += "epoch     step  train_loss  heldout_loss  heldout_reg  heldout_ce  acc@1  acc@2  acc@3  acc@4\n";
  const eagle::EagleMetrics& h = e.heldout;
  const std::string train = e.epoch == 0 ? "-" : fixed(e.train.loss, 4);
  char buf[200];
  std::snprintf(buf, sizeof buf, "%5d %8lld %11s %13s %12s %11s %6s %6s %6s %6s", e.epoch,
                static_cast<long long>(e.step), train.c_str(), fixed(h.loss, 4).c_str(), fixed(h.reg, 4).c_str(),
                fixed(h.ce, 4).c_str(), fixed(h.acc[0], 3).c_str(), fixed(h.acc[1], 3).c_str(),
                fixed(h.acc[2], 3).c_str(), fixed(h.acc[3], 3).c_str());
  const auto four = [](const std::array<double, eagle::kEagleDepths>& x) {
    return fixed(x[0], 3) + " " + fixed(x[1], 3) + " " + fixed(x[2], 3) + " " + fixed(x[3], 3);
  };
  return s + buf + "\n      held-out chain@1..4 " + four(h.chain) + "; responses (" + std::to_string(h.resp_rows[0]) +
         " starts): acc@1..4 " + four(h.resp_acc) + ", chain@1..4 " + four(h.resp_chain) + ", a decode's P(1..4) " +
         four(h.walk);
}

int train_eagle_command(const std::vector<std::string>& args) {
  CommonOptions o;
  eagle::EagleTrainConfig c;
  po::options_description keys = eagle_keys(o, c);
  std::optional<TrainInputs> in = parse_and_load(
      "eagle",
      "train the EAGLE draft layer on features collected by specdec collect\n\n"
      "The layer reads (the embedding of token t+1, the target's final-norm feature at t) and predicts the\n"
      "feature at t+1: Smooth-L1 to it plus w_ce x soft cross-entropy of its LM readout (docs/training.md).\n"
      "Each epoch prints the held-out loss parts and the accuracy at draft depth 1..4; OUT gets the layer in\n"
      "EAGLE-1's tensor names with that table in its metadata (accuracy_by_depth).",
      args, keys, o, c.threads);
  if (!in) return 0;
  set_inputs(c, o, *in);
  const train::FeatureData& data = in->data;
  const std::vector<float> lm = medusa::lm_head_f32(*in->model);
  const std::vector<float> embed = eagle::embedding_f32(*in->model);
  const eagle::EagleConfig layer = eagle::EagleConfig::of_target(in->model->config);
  std::printf(
      "specdec train eagle: %lld rows in %d sequences (%s), H = %d, V = %d, %d heads / %d kv heads, I = %d, "
      "%d threads\n",
      static_cast<long long>(data.n_rows()), data.n_sequences(), o.data.c_str(), data.hidden_size, data.vocab_size,
      layer.n_heads, layer.n_kv_heads, layer.intermediate_size, c.threads > 0 ? c.threads : omp_get_max_threads());

  const eagle::EagleTrainResult r = train_with_display<eagle::EagleTrainCallbacks>(
      in->quiet, &eagle_epoch_line, [&](const eagle::EagleTrainCallbacks& cb) {
        return eagle::train_eagle(data, embed, lm, layer, c, cb, in->resume);
      });
  write_result(o.out, r, r.weights, &eagle::save_eagle_weights);
  return 0;
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) {
  SPECDEC_CHECK(!args.empty() && args[0] != "--help" && args[0] != "-h",
                "a drafter to train: specdec train medusa|eagle CONFIG.ini (specdec train medusa --help)");
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "medusa") return train_medusa_command(rest);
  if (args[0] == "eagle") return train_eagle_command(rest);
  SPECDEC_FAIL("specdec train ", args[0], ": unknown drafter to train; known: medusa, eagle");
}

}  // namespace specdec::cli
