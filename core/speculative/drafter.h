// The drafter interface: every drafting strategy, built in or loaded from a user's shared library,
// proposes a DraftProposal (tokens, tree parents, draft distributions q) and is verified by the same
// lossless verifier. One Drafter per sequence; a registry makes them by name from an options section.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/model/model.h"
#include "core/sampling/sampling.h"
#include "core/types.h"

namespace specdec {

class Tokenizer;
struct LoadedModel;

// Makes a model on a backend (CPU, CUDA, ...) from loaded weights: how a drafter that loads its own model
// (draft_model) runs it on the target's device.
using ModelFactory = std::function<std::shared_ptr<Model>(std::shared_ptr<const LoadedModel>)>;

// What a drafter proposes for one step. Node i is tokens[i]; parents[i] is the index of its parent
// node (< i), or -1 for a child of the last accepted token (the root). Empty parents = a chain
// (parents[i] = i - 1). q holds, per node, the distribution (V floats) the node's token was drawn from;
// empty q = deterministic proposals (q is one-hot at the token).
// Every q row must be a distribution: finite entries in [0, 1] whose double sum is within kQRowTolerance
// of 1 (the verifier then uses the row divided by its sum, the law sample_from_probs draws from).
inline constexpr double kQRowTolerance = 1e-3;
struct DraftProposal {
  std::vector<TokenId> tokens;
  std::vector<int32_t> parents;
  std::vector<float> q;  // tokens.size() x V, or empty

  int size() const { return static_cast<int>(tokens.size()); }
  bool is_chain() const { return parents.empty(); }
  int32_t parent(int i) const { return parents.empty() ? i - 1 : parents[i]; }
  // Throws unless parents / q sizes are consistent, parents[i] < i, tokens in [0, V), every q row a
  // distribution (see above) giving its token q > 0; the message names the node.
  void validate(int vocab_size) const;
};

// The target features a drafter reads (Medusa heads, EAGLE, ...), declared by Drafter::features().
// Per token, a feature row is the final-norm hidden state (when final_norm) followed by the output of each
// listed layer (the residual stream after layer l, 0-based, before the final norm), H floats each.
// Nothing is computed when no drafter asks.
struct FeatureSpec {
  bool final_norm = false;
  std::vector<int> layers;

  bool empty() const { return !final_norm && layers.empty(); }
  int width(int hidden_size) const { return ((final_norm ? 1 : 0) + static_cast<int>(layers.size())) * hidden_size; }
};

// The target's features at consecutive positions of the sequence, as the verification forward that
// already ran computed them: row i (width floats, laid out as FeatureSpec says) is the state after the
// token at position first_pos + i, the state that predicts the token at first_pos + i + 1. Empty (rows
// = 0) when the drafter asked for none.
struct TargetFeatures {
  int first_pos = 0;
  int rows = 0;
  int width = 0;
  std::span<const float> data;  // rows x width

  std::span<const float> row(int i) const { return data.subspan(static_cast<size_t>(i) * width, width); }
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // The target features this drafter reads; none by default.
  virtual FeatureSpec features() const { return {}; }
  // A new sequence starts with this prompt (its tokens are already in the target's context). features:
  // rows for positions 0 .. prompt.size() - 2 (every prompt token but the last, which the first
  // verification pass reads); empty unless features() asks for some.
  virtual void begin(std::span<const TokenId> prompt, const TargetFeatures& features) = 0;
  // Up to max_tokens draft tokens (a chain or a tree of at most max_tokens nodes) continuing the
  // sequence; an empty proposal means "nothing to propose" (the step degenerates to one AR step).
  virtual DraftProposal propose(int max_tokens) = 0;
  // The tokens this step added to the sequence: the accepted draft tokens, then the target's token.
  // features: one row per accepted token, row i the state that predicts accepted[i]: the pass's first
  // token (the previous step's last) and then each accepted draft token (rows = accepted.size()); empty
  // unless features() asks for some.
  virtual void accept(std::span<const TokenId> accepted, const TargetFeatures& features) = 0;
  // The target's KV cache of this sequence, handed over once before begin(), for drafters that run the
  // target's own first layers (early exit) on the keys and values the target already computed instead of
  // recomputing them in a cache of their own. At propose() it holds every token of the sequence but the
  // last emitted one. During propose() such a drafter may append slots past its size (forwards with
  // ForwardRequest::n_layers below the target's) and must truncate it back to that size before returning;
  // it must not change the cache at any other time. Ignored by default. Added in plugin ABI version 5.
  virtual void share_target_cache(KVCache* cache) { (void)cache; }
  // Batched drafting (added in plugin ABI version 6). A drafter that can propose for several sequences in
  // one pass (its weights read once for all of them) returns a non-null key, the same for every instance it
  // can be batched with (e.g. the address of the weights they share); only instances of one class may share
  // a key. The batched loop groups a step's drafting sequences by key and calls propose_batch on one member
  // with the whole group. Null (the default): the drafter is asked alone.
  virtual const void* batch_key() const { return nullptr; }
  // out[i] = group[i]'s proposal for max_tokens[i] (group includes this drafter; every member's batch_key()
  // equals this one's). Each proposal must be exactly what group[i]->propose(max_tokens[i]) would return,
  // bit for bit: a request's output never depends on its batch (docs/batching.md). By default each member
  // proposes in turn.
  virtual void propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                             std::span<DraftProposal> out);
  // Tokens this drafter was handed (begin's prompt, accept's tokens) and has not read yet: its next proposal
  // reads them first, at a cost the cost_model policy prices per token (CostTable::drafters_backlog; EAGLE
  // queues its pairs so that a sequence that does not draft does not run its layer). 0 (the default): the
  // drafter reads what it is handed at once. Added in plugin ABI version 7.
  virtual int backlog() const { return 0; }
  // The deepest draft position a proposal of at most max_tokens nodes can reach: max_tokens for a chain (the
  // default), less for a tree whose first nodes spread over one depth (a static tree of branching 4,2,2,1 is 1
  // deep up to 4 nodes). The cost_model policy scores a node budget by the depth it buys: a tree's width at
  // one depth raises that depth's acceptance, not the number of positions (docs/policies.md). Added in plugin
  // ABI version 8.
  virtual int proposal_depth(int max_tokens) const { return max_tokens; }

 protected:
  // propose_batch's arguments: one budget and one output per drafter of the group (a one-line error naming
  // who, e.g. "medusa", otherwise). Every implementation checks them with this.
  static void check_batch(const char* who, std::span<Drafter* const> group, std::span<const int> max_tokens,
                          std::span<DraftProposal> out);
};

// Options of one drafter: the key=value pairs of its config section (or CLI --drafter-opt k=v).
// Every get() marks its key as used; check_all_used() turns a misspelt key into a one-line error that
// names it and lists the keys the drafter knows.
// What DrafterOptions::check_all_used throws for a key no option read: the key and the keys the drafter
// knows, so a caller (the config loader) can suggest the closest without parsing the message.
class UnknownOptionError : public Error {
 public:
  UnknownOptionError(const std::string& what, std::string key, std::vector<std::string> known)
      : Error(what), key_(std::move(key)), known_(std::move(known)) {}
  const std::string& key() const { return key_; }
  const std::vector<std::string>& known() const { return known_; }

 private:
  std::string key_;
  std::vector<std::string> known_;
};

class DrafterOptions {
 public:
  DrafterOptions() = default;
  explicit DrafterOptions(std::map<std::string, std::string> kv, std::string section = "drafter")
      : kv_(std::move(kv)), section_(std::move(section)) {}
  std::string get(const std::string& key, const std::string& def) const;
  int get_int(const std::string& key, int def) const;
  double get_double(const std::string& key, double def) const;
  bool get_bool(const std::string& key, bool def) const;
  std::vector<double> get_doubles(const std::string& key, std::vector<double> def) const;  // "a,b,c"
  bool has(const std::string& key) const { return kv_.count(key) != 0; }
  void set(const std::string& key, const std::string& value) { kv_[key] = value; }
  void check_all_used() const;
  const std::map<std::string, std::string>& values() const { return kv_; }
  const std::string& section() const { return section_; }

 private:
  std::map<std::string, std::string> kv_;
  std::string section_;
  mutable std::set<std::string> used_;
};

// State the drafters of one run share across requests (ngram's corpus index: tokenizing and indexing a
// corpus per request would dominate). Owned by whoever makes the drafters (the runner: one for a whole
// experiment) and outliving every drafter made with it; nothing in specdec is process-global.
// Thread-safe.
class DrafterSharedState {
 public:
  // The value stored under key, made by make() the first time it is asked for.
  template <class T, class Make>
  std::shared_ptr<const T> get_or_make(const std::string& key, Make&& make) {
    const std::lock_guard<std::mutex> lock(mu_);
    auto& slot = items_[key];
    if (!slot) slot = std::shared_ptr<const T>(make());
    return std::static_pointer_cast<const T>(slot);
  }
  size_t size() const {
    const std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const void>> items_;
};

// What a drafter may use when it is made: the target (for self-drafting and its vocabulary), the
// sampling parameters (q must be filtered like p), the seed, and, for the oracle / synthetic bounds,
// the target's own AR continuation of this request.
struct DrafterEnv {
  Model* target = nullptr;
  const Tokenizer* tokenizer = nullptr;
  SamplingParams sampling;
  uint64_t seed = 0;
  uint64_t request = 0;
  const std::vector<TokenId>* reference = nullptr;  // AR output for this prompt, when known
  int max_context = 0;  // tokens the sequence can reach (prompt + output + one draft); 0 = model maximum
  // Makes a model on the target's device (the CLI and the runner pass one for --device); empty = the CPU
  // backend (LlamaCpu). Added in plugin ABI version 2.
  ModelFactory make_model;
  // State shared with the other drafters of the run (see DrafterSharedState); null: share nothing, each
  // drafter builds what it needs. Added in plugin ABI version 3.
  DrafterSharedState* shared = nullptr;
  // The target's model file, for drafters whose weights were trained for one target (medusa checks the
  // sha256 its metadata names); "" = unknown, no such check. Added in plugin ABI version 4.
  std::string target_path;
};

// The RNG key of drafters: draws of a drafter use uniform(drafter_seed(seed), request, step, draw), a
// stream disjoint from the verifier's uniform(seed, request, step, draw).
inline uint64_t drafter_seed(uint64_t seed) { return seed ^ 0x9E3779B97F4A7C15ull; }

// The verifier's seed for a run whose drafter copies a recorded output (DrafterInfo::needs_reference:
// oracle, synthetic). The reference is the AR run of the same prompt, sampled with uniform(seed, request,
// step, draw); were the speculative run verified with the same stream, the uniform that tests a proposed
// token would be the one that produced it, and acceptance would depend on the proposal (biased at T > 0).
// Such a run verifies with uniform(reference_run_seed(seed), ...), a stream disjoint from the reference's.
// Every other run verifies with `seed`. The runner logs the stream of each run (run attribute verify_seed).
inline uint64_t reference_run_seed(uint64_t seed) { return seed ^ 0xD1B54A32D192ED03ull; }
struct DrafterInfo;
uint64_t verify_seed(const DrafterInfo* info, uint64_t seed);  // info == nullptr: AR, seed

using DrafterFactory = std::function<std::unique_ptr<Drafter>(const DrafterEnv&, const DrafterOptions&)>;

struct DrafterInfo {
  std::string name;
  std::string help;  // one line
  DrafterFactory factory;
  bool needs_reference = false;  // oracle / synthetic: needs the AR output of the same prompt
};

// Drafters by name. Built-ins are added from one explicit list (drafters/register_builtin.cpp);
// plugins add theirs through the same interface. A duplicate name is an error.
class DrafterRegistry {
 public:
  virtual ~DrafterRegistry() = default;
  // virtual so that a plugin calls it through the vtable and needs no symbol from the host.
  virtual void add(DrafterInfo info);
  const DrafterInfo& get(const std::string& name) const;  // error lists the known names
  std::vector<const DrafterInfo*> list() const;
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }

  // "plugin:PATH.so:NAME" loads PATH.so once (checking its ABI version) and returns NAME's entry;
  // "python:MODULE.CLASS" (a drafter written in Python, docs/python.md) is the drafter "python" with its
  // option class = MODULE.CLASS, added under the spec's name on first use; "python" is registered by the
  // Python module (its interpreter already runs) or else comes from the Python plugin, loaded from
  // python_plugin_path(). Any other spec is a registered name.
  const DrafterInfo& resolve(const std::string& spec);
  // Empties the registry, returning its entries (the plugin loader's staging step).
  std::vector<DrafterInfo> take_all();

 private:
  std::map<std::string, DrafterInfo> by_name_;
  std::map<std::string, std::vector<std::string>> loaded_plugins_;  // canonical path -> its drafters
};

// ---- plugin ABI ----------------------------------------------------------------------------------
// A plugin is a shared library exporting, with C linkage:
//   int  specdec_plugin_abi_version(void);                        // must return SPECDEC_PLUGIN_ABI_VERSION
//   void specdec_plugin_register(specdec::DrafterRegistry* r);     // calls r->add(...) for each drafter
// Bump the version whenever DraftProposal, Drafter, DrafterOptions, DrafterEnv or DrafterInfo change.
// Version 2: DrafterEnv::make_model (the target's device for drafters that load a model).
// Version 3: DrafterEnv::shared (state shared across a run's requests).
// Version 4: target features (Drafter::features, TargetFeatures in begin and accept).
// Version 5: Drafter::share_target_cache (drafters that run the target's layers in its own KV cache).
// Version 6: Drafter::batch_key and propose_batch (batched drafting in the batched loop).
// Version 7: Drafter::backlog (a drafter that reads what it is handed lazily tells the policy how much).
// Version 8: Drafter::proposal_depth (how deep a tree of a given node budget reaches, for the cost model).
#define SPECDEC_PLUGIN_ABI_VERSION 8

// The depth of a tree grown breadth first, each node of depth d having branching[d - 1] children, cut to its
// first max_tokens nodes (0 for max_tokens <= 0; at most branching.size()): what proposal_depth returns for
// the static trees of eagle (branching) and draft_model (tree_width at each of tree_depth levels).
int breadth_first_depth(std::span<const int> branching, int max_tokens);

// Calls info.factory; a factory that returns no drafter is an error naming the drafter (it would
// otherwise decode as AR under the drafter's name).
std::unique_ptr<Drafter> make_drafter(const DrafterInfo& info, const DrafterEnv& env, const DrafterOptions& opts);

// Loads a plugin file into the registry; throws naming the file on dlopen failure, a missing symbol, or
// an ABI version mismatch.
// Returns the names the plugin registered.
std::vector<std::string> load_drafter_plugin(DrafterRegistry& registry, const std::string& path);

// The Python plugin (python/: it embeds an interpreter and registers the drafter "python"): the environment
// variable SPECDEC_PYTHON_PLUGIN, else libspecdec_python.so beside the running executable (where the build
// puts it, next to the specdec binary).
std::string python_plugin_path();

}  // namespace specdec
