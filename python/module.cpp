// specdec._specdec: the Python module's C++ half (pybind11). Thin over the library: models, tokenizers,
// one forward, a decode (AR or speculative, any registered drafter or a Python one), an experiment run.
// The typed public API and its documentation are python/specdec/__init__.py. Every forward and decode runs
// with the GIL released; Python drafters take it back per call (drafter_adapter.h).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "experiments/backend.h"
#include "experiments/cli.h"
#include "experiments/config.h"
#include "experiments/runner.h"
#include "python/drafter_adapter.h"
#include "specdec_version.h"
#include "verifiers/rules.h"

namespace py = pybind11;

namespace specdec::python {
namespace {

// A vector handed to numpy without a copy: the array owns it (through a capsule) from now on.
template <class T>
py::array_t<T> to_numpy(std::vector<T>&& v, std::vector<py::ssize_t> shape) {
  auto* owned = new std::vector<T>(std::move(v));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(std::move(shape), owned->data(), owner);
}

std::vector<TokenId> token_vector(const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& a) {
  SPECDEC_CHECK(a.ndim() == 1, "tokens as a 1-D integer array, got ", a.ndim(), "-D");
  return {a.data(), a.data() + a.size()};
}

// A model, its tokenizer and the device it runs on.
class PyModel {
 public:
  PyModel(const std::string& path, const std::string& tokenizer, const std::string& device) : device_(device) {
    py::gil_scoped_release nogil;
    loaded_ = load_model(path);
    model_ = experiments::make_model(loaded_, device);
    tok_ = load_tokenizer(*loaded_, tokenizer);
  }

  py::dict config() const {
    const ModelConfig& c = loaded_->config;
    py::dict d;
    d["arch"] = c.arch, d["dim"] = c.dim, d["hidden_dim"] = c.hidden_dim, d["n_layers"] = c.n_layers;
    d["n_heads"] = c.n_heads, d["n_kv_heads"] = c.n_kv_heads, d["head_dim"] = c.head_dim;
    d["vocab_size"] = c.vocab_size, d["max_seq_len"] = c.max_seq_len, d["rope_theta"] = c.rope_theta;
    d["rms_eps"] = c.rms_eps, d["tied_embeddings"] = c.tied_embeddings, d["path"] = loaded_->path;
    d["device"] = device_, d["bos"] = tok_->bos(), d["eos"] = tok_->eos(), d["add_bos"] = tok_->add_bos_default();
    return d;
  }

  py::array_t<int32_t> tokenize(const std::string& text, bool add_bos, bool special) const {
    std::vector<TokenId> ids = tok_->encode(text, add_bos, special);
    const auto n = static_cast<py::ssize_t>(ids.size());
    return to_numpy(std::move(ids), {n});
  }
  std::string chat_prompt(const std::string& user) const {
    const ChatMessage msg{"user", user};
    return tok_->apply_chat_template({&msg, 1}, true);
  }
  std::string detokenize(const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& tokens) const {
    return tok_->decode(token_vector(tokens));
  }

  // One forward of a fresh sequence: logits (T x V) and, when asked, the final-norm hidden states (T x H)
  // and the outputs of `layers` (T x len(layers) x H), each handed to numpy without a copy.
  py::tuple forward(const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& tokens_in, bool hidden,
                    const std::vector<int32_t>& layers) {
    const std::vector<TokenId> tokens = token_vector(tokens_in);
    const auto T = static_cast<py::ssize_t>(tokens.size());
    SPECDEC_CHECK(T > 0, "forward: at least one token");
    ForwardResult fr;
    {
      py::gil_scoped_release nogil;
      const std::lock_guard<std::mutex> lock(mu_);
      const auto cache = model_->new_cache(static_cast<int>(T));
      ForwardRequest req;
      req.tokens = tokens;
      req.want_hidden = hidden;
      req.layer_outputs = layers;
      model_->forward(*cache, req, fr);
    }
    const ModelConfig& c = loaded_->config;
    py::object h = py::none(), lo = py::none();
    if (hidden) h = to_numpy(std::move(fr.hidden), {T, c.dim});
    if (!layers.empty())
      lo = to_numpy(std::move(fr.layer_outputs), {T, static_cast<py::ssize_t>(layers.size()), c.dim});
    return py::make_tuple(to_numpy(std::move(fr.logits), {T, c.vocab_size}), h, lo);
  }

  // Decodes `prompt`: AR when drafter is None, else speculatively with a registered drafter (a name or spec
  // string), a Python drafter class (made as the registry makes python:MODULE.CLASS) or a Python drafter
  // object. Returns the tokens, the per-step and per-draft-node records as columns, and SpecStats' figures.
  py::dict generate(const py::array_t<int64_t, py::array::c_style | py::array::forcecast>& prompt_in,
                    int max_new_tokens, float temperature, int top_k, float top_p, uint64_t seed,
                    const py::object& drafter_arg, int k, const std::map<std::string, std::string>& options,
                    const std::string& rule_name, const std::map<std::string, std::string>& rule_options,
                    bool stop_at_eos) {
    const std::vector<TokenId> prompt = token_vector(prompt_in);
    SPECDEC_CHECK(!prompt.empty(), "generate: a prompt of at least one token");
    DecodeOptions opts;
    opts.max_new_tokens = max_new_tokens;
    opts.k = k;
    opts.sampling.temperature = temperature;
    opts.sampling.top_k = top_k;
    opts.sampling.top_p = top_p;
    opts.sampling.validate();
    opts.seed = seed;
    if (stop_at_eos) opts.is_stop = [this](TokenId t) { return tok_->is_end_of_generation(t); };
    const std::string rname = !rule_name.empty() ? rule_name : opts.sampling.greedy() ? "greedy" : "speculative";
    const auto rule = verifiers::make_acceptance_rule(rname, DrafterOptions(rule_options, "rule." + rname));
    rule->check(opts.sampling);

    DecodeResult ar;
    DrafterEnv env{.target = model_.get(),
                   .tokenizer = tok_.get(),
                   .sampling = opts.sampling,
                   .seed = seed,
                   .reference = &ar.tokens,
                   .max_context = static_cast<int>(prompt.size()) + max_new_tokens + k + 1,
                   .make_model = experiments::model_factory(device_),
                   .target_path = loaded_->path};
    const DrafterInfo* info = nullptr;
    std::unique_ptr<Drafter> drafter;
    auto python_name = [](const py::handle& cls) { return "python:" + std::string(py::str(cls.attr("__qualname__"))); };
    if (py::isinstance<py::str>(drafter_arg)) {
      info = &drafters::default_registry().resolve(drafter_arg.cast<std::string>());
    } else if (py::isinstance<py::type>(drafter_arg)) {
      drafter = make_python_drafter(drafter_arg, python_name(drafter_arg), env, options);
    } else if (!drafter_arg.is_none()) {
      SPECDEC_CHECK(options.empty(),
                    "generate: options go to a drafter made here (a name or a class), not to a "
                    "drafter object");
      drafter = wrap_python_drafter(drafter_arg, python_name(py::type::handle_of(drafter_arg)), env);
    }
    const bool speculative = info || drafter;
    SPECDEC_CHECK(!speculative || k >= 1, "generate: k >= 1 draft tokens per step, got ", k);
    const DrafterOptions dopts(options, info ? info->name : "drafter");
    DecodeResult res;
    {
      py::gil_scoped_release nogil;
      const std::lock_guard<std::mutex> lock(mu_);  // taken without the GIL: a Python drafter needs it meanwhile
      if (info && !info->needs_reference) drafter = make_drafter(*info, env, dopts);
      if (!speculative || (info && info->needs_reference))
        ar = speculative_decode(*model_, nullptr, *rule, prompt, opts);
      if (info && !drafter) drafter = make_drafter(*info, env, dopts);  // oracle / synthetic: after the AR run
      if (speculative) {
        DecodeOptions spec = opts;
        spec.seed = verify_seed(info, seed);  // a stream disjoint from the reference's
        res = speculative_decode(*model_, drafter.get(), *rule, prompt, spec);
      } else {
        res = std::move(ar);
      }
      drafter.reset();  // a Python drafter is released here, with the GIL taken back by its destructor
    }
    return result_dict(std::move(res));
  }

 private:
  static py::dict result_dict(DecodeResult&& res) {
    const SpecStats st = res.stats();
    py::dict d;
    d["tau"] = st.tau(), d["acc_rate"] = st.drafted() ? st.acc_rate() : 0.0;
    d["drafted"] = st.drafted(), d["accepted"] = st.accepted();
    d["prompt_tokens"] = res.prompt_tokens, d["prefill_seconds"] = res.prefill_seconds;
    d["decode_seconds"] = res.decode_seconds, d["stopped"] = res.stopped;
    const auto n_steps = static_cast<py::ssize_t>(res.steps.size());
    auto step_column = [&](auto member) {
      using T = std::remove_cvref_t<decltype(res.steps[0].*member)>;
      std::vector<T> col;
      for (const StepRecord& s : res.steps) col.push_back(s.*member);
      return to_numpy(std::move(col), {n_steps});
    };
    py::dict steps;
    steps["step"] = step_column(&StepRecord::step), steps["n_proposed"] = step_column(&StepRecord::n_proposed);
    steps["n_accepted"] = step_column(&StepRecord::n_accepted),
    steps["n_emitted"] = step_column(&StepRecord::n_emitted);
    steps["max_depth"] = step_column(&StepRecord::max_depth),
    steps["context_len"] = step_column(&StepRecord::context_len);
    steps["t_draft_us"] = step_column(&StepRecord::t_draft_us),
    steps["t_verify_us"] = step_column(&StepRecord::t_verify_us);
    steps["t_forward_us"] = step_column(&StepRecord::t_forward_us);
    d["steps"] = steps;
    std::vector<int32_t> step, node, parent, depth, token;
    std::vector<double> p_target, q_draft, u;
    std::vector<uint8_t> visited, accepted;
    for (const StepRecord& s : res.steps)
      for (const DraftTokenRecord& n : s.nodes) {
        step.push_back(s.step), node.push_back(n.node), parent.push_back(n.parent), depth.push_back(n.depth);
        token.push_back(n.token), p_target.push_back(n.p_target), q_draft.push_back(n.q_draft), u.push_back(n.u);
        visited.push_back(n.visited), accepted.push_back(n.accepted);
      }
    const auto n_nodes = static_cast<py::ssize_t>(step.size());
    py::dict nodes;
    nodes["step"] = to_numpy(std::move(step), {n_nodes}), nodes["node"] = to_numpy(std::move(node), {n_nodes});
    nodes["parent"] = to_numpy(std::move(parent), {n_nodes}), nodes["depth"] = to_numpy(std::move(depth), {n_nodes});
    nodes["token"] = to_numpy(std::move(token), {n_nodes}),
    nodes["p_target"] = to_numpy(std::move(p_target), {n_nodes});
    nodes["q_draft"] = to_numpy(std::move(q_draft), {n_nodes}), nodes["u"] = to_numpy(std::move(u), {n_nodes});
    nodes["visited"] = to_numpy(std::move(visited), {n_nodes}).attr("astype")("bool");
    nodes["accepted"] = to_numpy(std::move(accepted), {n_nodes}).attr("astype")("bool");
    d["draft_tokens"] = nodes;
    const auto n_tokens = static_cast<py::ssize_t>(res.tokens.size());
    d["tokens"] = to_numpy(std::move(res.tokens), {n_tokens});
    return d;
  }

  std::mutex mu_;  // one forward or decode at a time: a backend's forward uses buffers of the model's own
  std::string device_;
  std::shared_ptr<const LoadedModel> loaded_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Tokenizer> tok_;
};

// `specdec run CONFIG --section.key=value ...`: returns the log's path.
std::string run_experiment(const std::string& config, std::vector<std::string> overrides, const std::string& out,
                           bool resume, const std::string& shard, bool quiet) {
  for (std::string& o : overrides)
    if (o.rfind("--", 0) != 0) o = "--" + o;
  std::vector<std::string> rest = overrides;
  const std::vector<experiments::ConfigOverride> parsed = experiments::take_overrides(rest);
  SPECDEC_CHECK(rest.empty(), "run: overrides as section.key=value, got '", rest.empty() ? "" : rest.front(), "'");
  py::gil_scoped_release nogil;
  const experiments::ExperimentConfig cfg = experiments::load_experiment_config(config, parsed);
  experiments::RunnerOptions opts;
  opts.out = out.empty() ? cfg.out_path() : out;
  opts.resume = resume;
  opts.quiet = quiet;
  opts.version = SPECDEC_GIT_SHA;
  if (!shard.empty()) std::tie(opts.shard_index, opts.shard_count) = experiments::parse_shard(shard);
  const int rc = experiments::run_experiment(cfg, opts);
  SPECDEC_CHECK(rc == 0, "run ", config, ": the runner exited with code ", rc);
  return opts.out;
}

}  // namespace
}  // namespace specdec::python

PYBIND11_MODULE(_specdec, m) {
  using specdec::python::PyModel;
  namespace sp = specdec::python;
  m.doc() = "specdec's C++ core; use the package specdec (python/specdec/__init__.py)";
  py::register_exception<specdec::Error>(m, "Error", PyExc_RuntimeError);
  // python:MODULE.CLASS drafters run in this interpreter (the binary loads the embedding plugin instead).
  if (!specdec::drafters::default_registry().contains("python"))
    specdec::drafters::default_registry().add(sp::python_drafter_info());
  m.attr("version") = SPECDEC_GIT_SHA;

  py::class_<PyModel>(m, "Model")
      .def(py::init<const std::string&, const std::string&, const std::string&>(), py::arg("path"),
           py::arg("tokenizer") = "", py::arg("device") = "cpu")
      .def("config", &PyModel::config)
      .def("tokenize", &PyModel::tokenize, py::arg("text"), py::arg("add_bos"), py::arg("special"))
      .def("chat_prompt", &PyModel::chat_prompt, py::arg("user"))
      .def("detokenize", &PyModel::detokenize, py::arg("tokens"))
      .def("forward", &PyModel::forward, py::arg("tokens"), py::arg("hidden"), py::arg("layers"))
      .def("generate", &PyModel::generate, py::arg("prompt"), py::arg("max_new_tokens"), py::arg("temperature"),
           py::arg("top_k"), py::arg("top_p"), py::arg("seed"), py::arg("drafter"), py::arg("k"), py::arg("options"),
           py::arg("rule"), py::arg("rule_options"), py::arg("stop_at_eos"));
  m.def("run_experiment", &sp::run_experiment, py::arg("config"), py::arg("overrides"), py::arg("out"),
        py::arg("resume"), py::arg("shard"), py::arg("quiet"));
  m.def("list_drafters", [] {
    std::vector<std::pair<std::string, std::string>> out;
    for (const specdec::DrafterInfo* info : specdec::drafters::default_registry().list())
      out.emplace_back(info->name, info->help);
    return out;
  });
  m.def("set_threads", &specdec::cli::set_threads, py::arg("n"));
}
