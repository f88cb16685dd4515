// The Python drafter adapter (drafter_adapter.h): calls begin / propose / accept on a Python object with the
// GIL held, hands it numpy arrays, and turns what propose returns into a checked DraftProposal.
#include "python/drafter_adapter.h"

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <limits>
#include <utility>

#include "core/error.h"

namespace py = pybind11;

namespace specdec::python {
namespace {

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// Runs fn with the GIL held; a Python exception becomes a one-line specdec::Error "<where>: <Type>: <message>".
template <class F>
auto with_gil(const std::string& where, F&& fn) {
  py::gil_scoped_acquire gil;
  try {
    return fn();
  } catch (py::error_already_set& e) {
    SPECDEC_FAIL(where, ": ", first_line(e.what()));
  } catch (const py::cast_error& e) {
    SPECDEC_FAIL(where, ": ", first_line(e.what()));
  }
}

std::string type_name(const py::handle& h) { return py::str(py::type::handle_of(h).attr("__name__")); }

// Tokens to Python: a copy (the span's storage is the decoder's and changes after the call).
py::array_t<int32_t> tokens_array(std::span<const TokenId> tokens) {
  return py::array_t<int32_t>(static_cast<py::ssize_t>(tokens.size()), tokens.data());
}

// Features to Python: rows x width float32, a copy for the same reason; shape (0, 0) when none were asked for.
py::array_t<float> features_array(const TargetFeatures& f) {
  return py::array_t<float>({static_cast<py::ssize_t>(f.rows), static_cast<py::ssize_t>(f.width)}, f.data.data());
}

// A 1-D integer array (any integer dtype, or a list of ints) as int32 values; `what` names it in errors.
std::vector<int32_t> int_vector(const py::handle& h, const std::string& what) {
  const py::array a = py::array::ensure(h);
  SPECDEC_CHECK(a && a.ndim() == 1 && (a.dtype().kind() == 'i' || a.dtype().kind() == 'u' || a.size() == 0), what,
                ": a 1-D integer array, got ",
                a ? detail::concat(a.ndim(), "-D of dtype ", std::string(py::str(a.dtype()))) : type_name(h));
  const auto v = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(a);
  std::vector<int32_t> out(static_cast<size_t>(v.size()));
  for (py::ssize_t i = 0; i < v.size(); ++i) {
    const int64_t x = v.at(i);
    SPECDEC_CHECK(x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max(), what,
                  ": 32-bit values, got ", x, " at ", i);
    out[static_cast<size_t>(i)] = static_cast<int32_t>(x);
  }
  return out;
}

// What propose returned -> a DraftProposal checked against the target's vocabulary V (validate names the node).
DraftProposal to_proposal(const py::object& ret, const std::string& where, int V) {
  SPECDEC_CHECK(py::isinstance<py::tuple>(ret) && py::len(ret) == 3, where,
                ": expected a tuple (tokens, parents, q) (parents and q may be None), got ",
                py::isinstance<py::tuple>(ret) ? detail::concat("a tuple of ", py::len(ret)) : type_name(ret));
  const auto t = py::reinterpret_borrow<py::tuple>(ret);
  DraftProposal p;
  p.tokens = int_vector(t[0], where + ": tokens");
  const size_t n = p.tokens.size();
  if (!t[1].is_none()) {
    p.parents = int_vector(t[1], where + ": parents");
    SPECDEC_CHECK(p.parents.size() == n, where, ": one parent per token (", n, "), got ", p.parents.size());
  }
  if (!t[2].is_none()) {
    const py::array a = py::array::ensure(t[2]);
    SPECDEC_CHECK(a && a.ndim() == 2 && a.dtype().kind() == 'f', where, ": q a 2-D float array (tokens x ", V,
                  "), got ",
                  a ? detail::concat(a.ndim(), "-D of dtype ", std::string(py::str(a.dtype()))) : type_name(t[2]));
    SPECDEC_CHECK(static_cast<size_t>(a.shape(0)) == n && a.shape(1) == V, where, ": q of shape (", n, ", ", V,
                  ") (tokens x the target's vocabulary), got (", a.shape(0), ", ", a.shape(1), ")");
    // A copy: DraftProposal owns its q (the verifier reads it after the call returns).
    const auto q = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(a);
    p.q.assign(q.data(), q.data() + q.size());
  }
  try {
    p.validate(V);
  } catch (const Error& e) {
    SPECDEC_FAIL(where, ": ", e.what());
  }
  return p;
}

// Drafter::features() as a Python drafter states it: None, or a dict / object with final_norm (bool) and
// layers (ints), as FeatureSpec.
FeatureSpec to_feature_spec(const py::object& f, const std::string& where) {
  FeatureSpec spec;
  if (f.is_none()) return spec;
  const bool is_dict = py::isinstance<py::dict>(f);
  auto field = [&](const char* key) -> py::object {
    if (is_dict) return f.contains(key) ? py::object(f[key]) : py::none();
    return py::getattr(f, key, py::none());
  };
  if (py::object fn = field("final_norm"); !fn.is_none()) spec.final_norm = fn.cast<bool>();
  if (py::object layers = field("layers"); !layers.is_none()) spec.layers = int_vector(layers, where + ": layers");
  return spec;
}

class PythonDrafter final : public Drafter {
 public:
  PythonDrafter(py::object obj, std::string name, const DrafterEnv& env)
      : obj_(std::move(obj)), name_(std::move(name)), V_(env.target ? env.target->config().vocab_size : 0) {
    with_gil(name_, [&] {
      for (const char* method : {"begin", "propose", "accept"})
        SPECDEC_CHECK(py::hasattr(obj_, method) && PyCallable_Check(obj_.attr(method).ptr()), name_, ": the drafter (",
                      type_name(obj_), ") has no method '", method, "' (a Python drafter has begin, propose, accept)");
      if (py::object v = py::getattr(obj_, "vocab_size", py::none()); !v.is_none())
        SPECDEC_CHECK(v.cast<int>() == V_, name_, ": the drafter's vocabulary (vocab_size ", v.cast<int>(),
                      ") is not the target's (", V_, " tokens)");
      if (py::hasattr(obj_, "features")) spec_ = to_feature_spec(obj_.attr("features")(), name_ + ".features");
      has_depth_ = py::hasattr(obj_, "proposal_depth");
      return 0;
    });
  }
  ~PythonDrafter() override {
    py::gil_scoped_acquire gil;  // the last reference to a Python object is dropped with the GIL held
    obj_ = py::object();
  }

  FeatureSpec features() const override { return spec_; }

  // A tree drafter says how deep a proposal of max_tokens nodes reaches (the cost model prices a budget by
  // it); without the method, a chain: max_tokens. The decoder checks the answer is in 0..max_tokens.
  int proposal_depth(int max_tokens) const override {
    if (!has_depth_) return max_tokens;
    return with_gil(name_ + ".proposal_depth",
                    [&] { return obj_.attr("proposal_depth")(max_tokens).template cast<int>(); });
  }

  void begin(std::span<const TokenId> prompt, const TargetFeatures& f) override {
    with_gil(name_ + ".begin", [&] { return obj_.attr("begin")(tokens_array(prompt), features_array(f)); });
  }

  DraftProposal propose(int max_tokens) override {
    const std::string where = name_ + ".propose";
    return with_gil(where, [&] { return to_proposal(obj_.attr("propose")(max_tokens), where, V_); });
  }

  void accept(std::span<const TokenId> accepted, const TargetFeatures& f) override {
    with_gil(name_ + ".accept", [&] { return obj_.attr("accept")(tokens_array(accepted), features_array(f)); });
  }

 private:
  py::object obj_;
  std::string name_;
  int V_;
  FeatureSpec spec_;
  bool has_depth_ = false;
};

// MODULE.CLASS -> the class object; errors name the module or the attribute.
py::object import_class(const std::string& spec, const std::string& where) {
  const size_t dot = spec.rfind('.');
  SPECDEC_CHECK(dot != std::string::npos && dot > 0 && dot + 1 < spec.size(), where,
                ": a Python class as MODULE.CLASS, got '", spec, "'");
  const std::string module = spec.substr(0, dot), cls = spec.substr(dot + 1);
  py::object mod = with_gil(where + ": import " + module, [&] { return py::module_::import(module.c_str()); });
  return with_gil(where, [&] {
    SPECDEC_CHECK(py::hasattr(mod, cls.c_str()), where, ": module '", module, "' (",
                  std::string(py::str(py::getattr(mod, "__file__", py::str("?")))), ") has no class '", cls, "'");
    return py::object(mod.attr(cls.c_str()));
  });
}

}  // namespace

py::object drafter_env(const DrafterEnv& env) {
  const ModelConfig* c = env.target ? &env.target->config() : nullptr;
  return py::module_::import("types").attr("SimpleNamespace")(
      py::arg("vocab_size") = c ? c->vocab_size : 0, py::arg("n_layers") = c ? c->n_layers : 0,
      py::arg("hidden_size") = c ? c->dim : 0, py::arg("temperature") = env.sampling.temperature,
      py::arg("top_k") = env.sampling.top_k, py::arg("top_p") = env.sampling.top_p, py::arg("seed") = env.seed,
      py::arg("drafter_seed") = drafter_seed(env.seed), py::arg("request") = env.request,
      py::arg("max_context") = env.max_context);
}

std::unique_ptr<Drafter> wrap_python_drafter(py::object obj, std::string name, const DrafterEnv& env) {
  return std::make_unique<PythonDrafter>(std::move(obj), std::move(name), env);
}

std::unique_ptr<Drafter> make_python_drafter(const py::object& klass, const std::string& name, const DrafterEnv& env,
                                             const std::map<std::string, std::string>& options) {
  py::object obj = with_gil(name, [&] {
    py::dict kwargs;  // the class says which options it knows: an unknown one is its TypeError, naming the key
    for (const auto& [key, value] : options) kwargs[py::str(key)] = value;
    return klass(drafter_env(env), **kwargs);
  });
  return wrap_python_drafter(std::move(obj), name, env);
}

DrafterInfo python_drafter_info() {
  return {"python", "a drafter written in Python: class = MODULE.CLASS (or the drafter python:MODULE.CLASS)",
          [](const DrafterEnv& env, const DrafterOptions& opts) -> std::unique_ptr<Drafter> {
            const std::string cls = opts.get("class", "");
            SPECDEC_CHECK(!cls.empty(), "[", opts.section(),
                          "] class = MODULE.CLASS: the Python drafter class, got none");
            const std::string name = "python:" + cls;
            py::gil_scoped_acquire gil;  // the Python objects made here are released before the GIL is
            std::map<std::string, std::string> options;
            for (const auto& [key, value] : opts.values())
              if (key != "class") options[key] = opts.get(key, value);
            return make_python_drafter(import_class(cls, name), name, env, options);
          }};
}

}  // namespace specdec::python
