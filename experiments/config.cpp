// Parsing and checking of `specdec run` configs: Boost.Program_options reads the INI syntax, the schema
// below gives every key its type, range, default and help, and each mistake becomes a one-line error.
#include "experiments/config.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include <boost/program_options/errors.hpp>
#include <boost/program_options/options_description.hpp>
#include <boost/program_options/parsers.hpp>

#include "core/backends/registry.h"
#include "core/error.h"
#include "core/speculative/policy.h"
#include "verifiers/rules.h"

namespace po = boost::program_options;

namespace specdec::experiments {
namespace {

std::string trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return "";
  const size_t e = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(b, e - b + 1));
}

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

std::string fmt_float(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

// Where one value came from, for error messages: "(in FILE)" or "(from --run.k)".
struct Value {
  std::string section, key, text, origin;
  [[noreturn]] void fail(const std::string& expected) const {
    SPECDEC_FAIL("[", section, "] ", key, " = '", text, "': expected ", expected, " (", origin, ")");
  }
};

int parse_int(const Value& v, int lo, int hi, const char* what = nullptr) {
  const std::string s = trim(v.text);
  int x = 0;
  const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
  if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || x < lo || x > hi) {
    std::string expected = what ? what : "an integer";
    if (!what)
      expected += hi == std::numeric_limits<int>::max() ? " >= " + std::to_string(lo)
                                                        : " in " + std::to_string(lo) + ".." + std::to_string(hi);
    v.fail(expected);
  }
  return x;
}

double parse_double(const Value& v, double lo, double hi, const std::string& expected) {
  const std::string s = trim(v.text);
  char* end = nullptr;
  const double x = s.empty() ? NAN : std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(x) || x < lo || x > hi) v.fail(expected);
  return x;
}

bool parse_bool(const Value& v) {
  const std::string s = trim(v.text);
  if (s == "true" || s == "1" || s == "yes" || s == "on") return true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return false;
  v.fail("true or false");
}

// "a, b,c" -> {"a", "b", "c"}; an empty text is an empty list; an empty item is an error.
std::vector<std::string> parse_list(const Value& v, const std::string& expected) {
  std::vector<std::string> out;
  if (trim(v.text).empty()) return out;
  std::stringstream ss(v.text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    item = trim(item);
    if (item.empty()) v.fail(expected);
    out.push_back(item);
  }
  if (!v.text.empty() && v.text.back() == ',') v.fail(expected);
  return out;
}

template <typename T, typename F>
std::vector<T> parse_each(const Value& v, const std::string& expected, F parse_one) {
  std::vector<T> out;
  for (const auto& item : parse_list(v, expected)) {
    Value one = v;
    one.text = item;
    try {
      out.push_back(parse_one(one));
    } catch (const Error&) {
      v.fail(expected);  // name the whole list, as the user wrote it
    }
  }
  if (out.empty()) v.fail(expected);
  std::vector<T> sorted = out;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end())
    v.fail(expected + " without repeats (each value names its own runs)");
  return out;
}

bool valid_name(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

// ---- the schema -------------------------------------------------------------------------------------

using Setter = void (*)(ExperimentConfig&, const Value&);

struct KeySpec {
  ConfigKeyInfo info;
  Setter set;
};

const std::vector<KeySpec>& schema() {
  static const std::vector<KeySpec> kSchema = {
      {{"target.model", "(required)",
        "model file (.gguf, llama2.c .bin, or a safetensors folder); a relative path is looked up in the working "
        "directory, beside the config, under the repository root, then in the assets folder"},
       [](ExperimentConfig& c, const Value& v) { c.model = trim(v.text); }},
      {{"target.tokenizer", "", "tokenizer file (llama2.c .bin or tokenizer.json); empty = the model's own"},
       [](ExperimentConfig& c, const Value& v) { c.tokenizer = trim(v.text); }},
      {{"target.chat", "auto", "apply the chat template: true | false | auto (= when the tokenizer has one)"},
       [](ExperimentConfig& c, const Value& v) {
         if (trim(v.text) == "auto")
           c.chat.reset();
         else
           c.chat = parse_bool(v);
       }},
      {{"target.threads", "0", "CPU threads; 0 = OMP_NUM_THREADS or all cores"},
       [](ExperimentConfig& c, const Value& v) { c.threads = parse_int(v, 0, 4096); }},
      {{"target.device", "cpu",
        "where the target (and model-based drafters) run: cpu | cuda | cuda:N (a build with CUDA and a GPU)"},
       [](ExperimentConfig& c, const Value& v) {
         c.device = trim(v.text);
         if (!device_named(c.device)) v.fail(known_devices());
       }},
      {{"run.name", "(the config file's name)", "experiment name (letters, digits, _ - .)"},
       [](ExperimentConfig& c, const Value& v) {
         c.name = trim(v.text);
         if (!valid_name(c.name)) v.fail("a name of letters, digits, '_', '-', '.'");
       }},
      {{"run.out", "results/<name>.h5", "the HDF5 log (--out overrides)"},
       [](ExperimentConfig& c, const Value& v) { c.out = trim(v.text); }},
      {{"run.drafters", "", "drafter section names ([drafter.NAME]), e.g. ngram, early_exit; empty = AR only"},
       [](ExperimentConfig& c, const Value& v) {
         c.drafters = parse_list(v, "a comma-separated list of drafter section names");
         std::set<std::string> seen;
         for (const auto& d : c.drafters) {
           if (!valid_name(d) || d.find('.') != std::string::npos) v.fail("drafter names of letters, digits, '_', '-'");
           if (!seen.insert(d).second) v.fail("each drafter once");
         }
       }},
      {{"run.k", "4", "draft tokens per step, a list: one run per value"},
       [](ExperimentConfig& c, const Value& v) {
         c.k = parse_each<int>(v, "a comma-separated list of integers >= 1, e.g. 2,4,6",
                               [](const Value& one) { return parse_int(one, 1, 1 << 16); });
       }},
      {{"run.temperatures", "0", "sampling temperatures, a list: one AR baseline + one run per drafter and k each"},
       [](ExperimentConfig& c, const Value& v) {
         c.temperatures = parse_each<float>(
             v, "a comma-separated list of temperatures >= 0, e.g. 0,0.7",
             [](const Value& one) { return static_cast<float>(parse_double(one, 0, 1e6, "a number")); });
       }},
      {{"run.rule", "auto",
        "acceptance rule: a name from `specdec list-rules` or auto (greedy at T = 0, else speculative); its "
        "options in a [rule.NAME] section"},
       [](ExperimentConfig& c, const Value& v) {
         c.rule = trim(v.text);
         if (c.rule != "auto" && !verifiers::rule_registry().contains(c.rule))
           v.fail(join(verifiers::rule_registry().names(), ", ") + " or auto");
       }},
      {{"run.top_k", "0", "keep the k most likely tokens; 0 = off"},
       [](ExperimentConfig& c, const Value& v) { c.top_k = parse_int(v, 0, std::numeric_limits<int>::max()); }},
      {{"run.top_p", "1", "nucleus sampling mass in (0, 1]; 1 = off"},
       [](ExperimentConfig& c, const Value& v) {
         c.top_p = static_cast<float>(parse_double(v, 0, 1, "a number in (0, 1]"));
         if (c.top_p <= 0.f) v.fail("a number in (0, 1]");
       }},
      {{"run.max_new_tokens", "128", "tokens to generate per request (clipped to the model's context)"},
       [](ExperimentConfig& c, const Value& v) {
         c.max_new_tokens = parse_int(v, 1, std::numeric_limits<int>::max());
       }},
      {{"run.seeds", "0", "random seeds, a list; more than one names the runs ..._s<seed>"},
       [](ExperimentConfig& c, const Value& v) {
         c.seeds = parse_each<uint64_t>(v, "a comma-separated list of non-negative integers, e.g. 0,1,2",
                                        [](const Value& one) {
                                          const std::string s = trim(one.text);
                                          uint64_t x = 0;
                                          const auto r = std::from_chars(s.data(), s.data() + s.size(), x);
                                          if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size())
                                            one.fail("an integer");
                                          return x;
                                        });
       }},
      {{"run.repeats", "1", "repeats of every prompt (the spread of timings; request_id = prompt * repeats + repeat)"},
       [](ExperimentConfig& c, const Value& v) { c.repeats = parse_int(v, 1, 1 << 20); }},
      {{"run.max_tree_nodes", "64", "verifier limit on draft nodes per step"},
       [](ExperimentConfig& c, const Value& v) { c.max_tree_nodes = parse_int(v, 1, 1 << 16); }},
      {{"run.batch_size", "",
        "sequences in flight in the batched loop, a list: one run per value (closed loop unless arrival_rate or "
        "arrivals); empty = each request alone, one after another"},
       [](ExperimentConfig& c, const Value& v) {
         c.batch_sizes.clear();
         if (trim(v.text).empty()) return;  // the default: unbatched
         c.batch_sizes = parse_each<int>(v, "a comma-separated list of integers >= 1, e.g. 1,4,16",
                                         [](const Value& one) { return parse_int(one, 1, 1 << 12); });
       }},
      {{"run.arrival_rate", "",
        "open-loop load: Poisson arrivals in requests/s (seeded by the run's seed), a list: one run per value; "
        "needs batch_size"},
       [](ExperimentConfig& c, const Value& v) {
         c.arrival_rates.clear();
         if (trim(v.text).empty()) return;
         c.arrival_rates =
             parse_each<double>(v, "a comma-separated list of rates > 0 (requests/s), e.g. 2,8", [](const Value& one) {
               const double x = parse_double(one, 0, 1e9, "a number > 0");
               if (x <= 0) one.fail("a number > 0");
               return x;
             });
       }},
      {{"run.arrivals", "",
        "open-loop load from a file: one arrival time in seconds per line, non-decreasing, at least one per "
        "request; needs batch_size"},
       [](ExperimentConfig& c, const Value& v) { c.arrivals = trim(v.text); }},
      {{"run.interleave", "false",
        "batched runs of one batch size and load advance together, a step each in turn, each timed on its own "
        "clock (its own work; idle, it jumps to the next arrival): drift hits the compared runs alike; needs "
        "batch_size"},
       [](ExperimentConfig& c, const Value& v) { c.interleave = parse_bool(v); }},
      {{"run.aa_control", "false",
        "an A/A control: a second AR run in each batch size and load (ar_aa_...), compared with the AR run "
        "like a drafter run; its speedup and CI show the comparison's noise floor; needs batch_size"},
       [](ExperimentConfig& c, const Value& v) { c.aa_control = parse_bool(v); }},
      {{"run.policy", "",
        "speculation policies of the drafter runs, a list: one run per value (docs/policies.md; options in "
        "[policy.NAME]); empty = k draft tokens every step"},
       [](ExperimentConfig& c, const Value& v) {
         c.policies.clear();
         if (trim(v.text).empty()) return;  // the default: no policy
         std::vector<std::string> known;
         for (const PolicyInfo* info : builtin_policies().list()) known.push_back(info->name);
         c.policies = parse_each<std::string>(v, "a comma-separated list of policies (" + join(known) + ")",
                                              [](const Value& one) {
                                                const std::string name = trim(one.text);
                                                if (!builtin_policies().contains(name)) one.fail("a policy");
                                                return name;
                                              });
       }},
      {{"run.cost_table", "",
        "the cost table (`specdec bench costs` JSON) of the cost_model policy and of the report's oracle"},
       [](ExperimentConfig& c, const Value& v) { c.cost_table = trim(v.text); }},
      {{"prompts.sets", "(required)", "prompt sets: spec_bench | mt_bench | gsm8k | a path to a .jsonl file, a list"},
       [](ExperimentConfig& c, const Value& v) {
         c.prompt_sets = parse_list(v, "a comma-separated list of prompt sets");
         std::set<std::string> seen;
         for (const auto& s : c.prompt_sets)
           if (!seen.insert(s).second) v.fail("each prompt set once");
       }},
      {{"prompts.per_category", "0", "prompts per category, the first ones in file order; 0 = all"},
       [](ExperimentConfig& c, const Value& v) { c.per_category = parse_int(v, 0, std::numeric_limits<int>::max()); }},
      {{"prompts.categories", "", "only these categories, a list; empty = all"},
       [](ExperimentConfig& c, const Value& v) {
         c.categories = parse_list(v, "a comma-separated list of categories");
       }},
      {{"prompts.max_prompt_tokens", "0",
        "skip prompts longer than this (tokens, after templating) with a note; 0 = no limit"},
       [](ExperimentConfig& c, const Value& v) {
         c.max_prompt_tokens = parse_int(v, 0, std::numeric_limits<int>::max());
       }},
  };
  return kSchema;
}

std::vector<std::string> schema_keys() {
  std::vector<std::string> keys;
  for (const auto& k : schema()) keys.push_back(k.info.key);
  return keys;
}

std::string section_of(const std::string& key) {
  const size_t dot = key.find('.');
  return dot == std::string::npos ? "" : key.substr(0, dot);
}
std::string name_of(const std::string& key) {
  const size_t dot = key.find('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

[[noreturn]] void unknown_key(const std::string& key, const std::string& origin) {
  const std::string section = section_of(key);
  const bool known_section = section == "target" || section == "run" || section == "prompts";
  std::string suggestion = closest_match(key, schema_keys());
  if (suggestion.empty() && !known_section) {
    // "model" or "[targets] model": compare the key part alone.
    std::vector<std::string> parts;
    for (const auto& k : schema_keys()) parts.push_back(name_of(k));
    const std::string part = closest_match(name_of(key), parts);
    if (!part.empty())
      for (const auto& k : schema_keys())
        if (name_of(k) == part) suggestion = k;
  }
  std::string msg;
  if (section.empty())
    msg = "unknown key '" + key + "' outside any section";
  else if (known_section)
    msg = "unknown key '" + key + "'";
  else
    msg = "unknown section [" + section + "] (key '" + key + "')";
  if (!suggestion.empty()) {
    SPECDEC_FAIL(msg, " (", origin, "); did you mean '", suggestion, "'?");
  }
  if (known_section) {
    std::vector<std::string> keys;
    for (const auto& k : schema_keys())
      if (section_of(k) == section) keys.push_back(name_of(k));
    SPECDEC_FAIL(msg, " (", origin, "); [", section, "] knows: ", join(keys));
  }
  SPECDEC_FAIL(msg, " (", origin,
               "); sections are [target], [run], [prompts], [drafter.NAME], [rule.NAME] and [policy.NAME]");
}

// What the batching, load and policy keys require of each other (the policies' own options are checked by
// the runner, which has the cost table and the drafters: make_policy names a misspelt key).
void check_load_keys(const ExperimentConfig& cfg, const std::string& where) {
  const bool open_loop = !cfg.arrival_rates.empty() || !cfg.arrivals.empty();
  SPECDEC_CHECK(!open_loop || cfg.batched(), where, ": [run] ", cfg.arrivals.empty() ? "arrival_rate" : "arrivals",
                " needs [run] batch_size (the sequences in flight under that load)");
  SPECDEC_CHECK(!cfg.interleave || cfg.batched(), where,
                ": [run] interleave needs [run] batch_size (it interleaves the batched runs of one load)");
  SPECDEC_CHECK(!cfg.aa_control || cfg.batched(), where,
                ": [run] aa_control needs [run] batch_size (it adds a second AR run to each batched group)");
  SPECDEC_CHECK(cfg.arrival_rates.empty() || cfg.arrivals.empty(), where,
                ": [run] arrival_rate and arrivals are two loads; give one of them");
  for (const auto& [name, opts] : cfg.policy_options)
    SPECDEC_CHECK(std::find(cfg.policies.begin(), cfg.policies.end(), name) != cfg.policies.end(), where, ": [policy.",
                  name, "] is not in [run] policy (", join(cfg.policies), ")");
  const bool cost_model = std::find(cfg.policies.begin(), cfg.policies.end(), "cost_model") != cfg.policies.end();
  SPECDEC_CHECK(!cost_model || !cfg.cost_table.empty(), where,
                ": [run] policy = cost_model needs [run] cost_table (a `specdec bench costs` JSON file)");
}

struct Entry {
  std::string value, origin;
};

// "SECTION.NAME.key" -> {NAME, key}; a one-line error for a key without both parts.
std::pair<std::string, std::string> split_section_key(const std::string& key, const std::string& section,
                                                      const std::string& origin) {
  const std::string rest = key.substr(section.size() + 1);
  const size_t dot = rest.find('.');
  SPECDEC_CHECK(dot != std::string::npos && dot > 0 && dot + 1 < rest.size(), "a ", section, " option as [", section,
                ".NAME] key, got '", key, "' (", origin, ")");
  return {rest.substr(0, dot), rest.substr(dot + 1)};
}

// [SECTION.NAME] key = value into options[NAME][key], for a section named after a registry entry (a rule, a
// policy): an unknown NAME lists the known ones and suggests the closest.
void set_named_option(const std::string& key, const Entry& e, const std::string& section, const char* what,
                      const char* plural, const std::vector<std::string>& known,
                      std::map<std::string, std::map<std::string, std::string>>& options) {
  const auto [name, opt] = split_section_key(key, section, e.origin);
  if (std::find(known.begin(), known.end(), name) == known.end()) {
    const std::string suggestion = closest_match(name, known);
    SPECDEC_FAIL("[", section, ".", name, "] (", e.origin, "): unknown ", what, "; known ", plural, ": ", join(known),
                 suggestion.empty() ? "" : "; did you mean '" + section + "." + suggestion + "'?");
  }
  options[name][opt] = trim(e.value);
}

}  // namespace

// ---- public ---------------------------------------------------------------------------------------------

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];  // row[i-1][j-1]
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];  // row[i-1][j]
      row[j] = std::min({up + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string closest_match(std::string_view word, const std::vector<std::string>& candidates) {
  // A typo changes a few characters: allow about a third of the word, at least two.
  const size_t limit = std::max<size_t>(2, (word.size() + 2) / 3);
  std::string best;
  size_t best_d = limit + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

std::span<const ConfigKeyInfo> config_keys() {
  static const std::vector<ConfigKeyInfo> infos = [] {
    std::vector<ConfigKeyInfo> v;
    for (const auto& k : schema()) v.push_back(k.info);
    return v;
  }();
  return infos;
}

std::string config_keys_help() {
  std::string out;
  std::string section;
  for (const auto& k : config_keys()) {
    const std::string key = k.key;
    if (section_of(key) != section) {
      section = section_of(key);
      out += "  [" + section + "]\n";
    }
    // "    key                help ... (default: x)", wrapped at 100 columns under the help's column.
    const std::string text = std::string(k.help) + " (default: " + (*k.default_text ? k.default_text : "empty") + ")";
    std::string line = "    " + name_of(key);
    line.resize(23, ' ');
    std::istringstream words(text);
    size_t col = line.size();
    bool first = true;
    for (std::string word; words >> word;) {
      if (!first && col + 1 + word.size() > 100) {
        line += "\n" + std::string(23, ' ');
        col = 23;
      } else if (!first) {
        line += ' ';
        ++col;
      }
      line += word;
      col += word.size();
      first = false;
    }
    out += line + "\n";
  }
  out +=
      "  [drafter.NAME]       one section per name in run.drafters\n"
      "    type               a drafter (specdec list-drafters), plugin:PATH.so:NAME or python:MODULE.CLASS\n"
      "                       (default: NAME)\n"
      "    (any other key)    the drafter's own options, e.g. layers = 8 for early_exit\n";
  return out;
}

std::vector<ConfigOverride> take_overrides(std::vector<std::string>& args) {
  std::vector<ConfigOverride> out;
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    const size_t eq = a.find('=');
    const std::string name =
        a.rfind("--", 0) == 0 ? a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2) : std::string();
    if (name.find('.') == std::string::npos || name.front() == '.' || name.back() == '.') {
      rest.push_back(a);
      continue;
    }
    if (eq != std::string::npos) {
      out.push_back({name, a.substr(eq + 1)});
    } else {
      SPECDEC_CHECK(i + 1 < args.size(), "a value after --", name, " (as --", name, "=VALUE)");
      out.push_back({name, args[++i]});
    }
  }
  args = std::move(rest);
  return out;
}

ExperimentConfig load_experiment_config(const std::string& path, const std::vector<ConfigOverride>& overrides) {
  std::ifstream in(path);
  SPECDEC_CHECK(in.good(), path, ": cannot open the experiment config");
  return parse_experiment_config(in, path, overrides);
}

ExperimentConfig parse_experiment_config(std::istream& in, const std::string& source,
                                         const std::vector<ConfigOverride>& overrides) {
  const std::string where = source.empty() ? "config" : source;
  // Boost.PO does the INI syntax; every key comes back as "section.key" and is checked below, so the
  // description registers nothing and allow_unregistered passes all of them through.
  po::options_description none;
  po::parsed_options parsed(&none);
  try {
    parsed = po::parse_config_file(in, none, /*allow_unregistered=*/true);
  } catch (const po::error& e) {
    SPECDEC_FAIL(where, ": ", e.what());
  }

  std::map<std::string, Entry> entries;  // key -> value; overrides replace file values
  std::vector<std::string> order;        // keys in the order first seen (drafter options keep it)
  for (const auto& opt : parsed.options) {
    const std::string value = opt.value.empty() ? "" : opt.value.front();
    SPECDEC_CHECK(!entries.count(opt.string_key), where, ": '", opt.string_key,
                  "' is set twice (each key once per file)");
    entries[opt.string_key] = {value, "in " + where};
    order.push_back(opt.string_key);
  }
  for (const auto& o : overrides) {
    if (!entries.count(o.key)) order.push_back(o.key);
    entries[o.key] = {o.value, "from --" + o.key};
  }

  ExperimentConfig cfg;
  cfg.source = source;
  if (!source.empty()) cfg.name = std::filesystem::path(source).stem().string();
  if (!valid_name(cfg.name)) cfg.name = "experiment";

  std::map<std::string, DrafterConfig> sections;  // [drafter.NAME]
  std::map<std::string, std::string> overridden;  // drafter NAME -> an override's key naming it
  for (const auto& key : order) {
    const Entry& e = entries.at(key);
    if (key.rfind("drafter.", 0) == 0) {
      const auto [name, opt] = split_section_key(key, "drafter", e.origin);
      if (e.origin.rfind("from --", 0) == 0) overridden.emplace(name, key);
      DrafterConfig& dc = sections[name];
      dc.name = name;
      if (opt == "type")
        dc.type = trim(e.value);
      else
        dc.options[opt] = trim(e.value);
      continue;
    }
    if (key.rfind("policy.", 0) == 0) {  // [policy.NAME] key: an option of speculation policy NAME
      std::vector<std::string> known;
      for (const PolicyInfo* info : builtin_policies().list()) known.push_back(info->name);
      set_named_option(key, e, "policy", "policy", "policies", known, cfg.policy_options);
      continue;
    }
    if (key.rfind("rule.", 0) == 0) {  // [rule.NAME] key: an option of acceptance rule NAME
      set_named_option(key, e, "rule", "acceptance rule", "rules", verifiers::rule_registry().names(),
                       cfg.rule_options);
      continue;
    }
    auto it = std::find_if(schema().begin(), schema().end(), [&](const KeySpec& k) { return key == k.info.key; });
    if (it == schema().end()) unknown_key(key, e.origin);
    it->set(cfg, Value{section_of(key), name_of(key), e.value, e.origin});
  }

  SPECDEC_CHECK(!cfg.model.empty(), where,
                ": [target] model is required (a .gguf, llama2.c .bin or safetensors folder)");
  SPECDEC_CHECK(!cfg.prompt_sets.empty(), where,
                ": [prompts] sets is required (spec_bench, mt_bench, gsm8k or a .jsonl path)");
  // A file may hold sections that run.drafters does not use (a menu to pick from); an override of one is
  // a typo or a forgotten --run.drafters.
  for (const auto& [name, key] : overridden) {
    if (std::find(cfg.drafters.begin(), cfg.drafters.end(), name) != cfg.drafters.end()) continue;
    const std::string suggestion = closest_match(name, cfg.drafters);
    SPECDEC_FAIL("--", key, ": drafter '", name, "' is not in run.drafters (", join(cfg.drafters), ")",
                 suggestion.empty() ? "" : "; did you mean 'drafter." + suggestion + "'?",
                 " (add it with --run.drafters=...)");
  }
  // Every [rule.NAME] section's options must be the rule's (an unknown key names the closest known one).
  for (const auto& [rule, opts] : cfg.rule_options) {
    try {
      verifiers::make_acceptance_rule(rule, cfg.rule_options_for(rule));
    } catch (const UnknownOptionError& e) {
      const std::string suggestion = closest_match(e.key(), e.known());
      SPECDEC_FAIL(where, ": ", e.what(), suggestion.empty() ? "" : "; did you mean '" + suggestion + "'?");
    }
  }
  // Each temperature's rule must be able to decode at it (greedy refuses T > 0): the rule says so itself.
  for (float t : cfg.temperatures) {
    try {
      verifiers::make_acceptance_rule(cfg.rule_for(t), cfg.rule_options_for(cfg.rule_for(t)))
          ->check({t, cfg.top_k, cfg.top_p});
    } catch (const Error& e) {
      SPECDEC_FAIL(where, ": [run] rule = ", cfg.rule, " with temperature ", t, ": ", e.what());
    }
  }
  check_load_keys(cfg, where);
  for (const auto& name : cfg.drafters) {
    DrafterConfig dc = sections.count(name) ? sections[name] : DrafterConfig{name, "", {}};
    dc.name = name;
    if (dc.type.empty()) dc.type = name;
    cfg.drafter_configs.push_back(std::move(dc));
  }
  return cfg;
}

std::string ExperimentConfig::rule_for(float temperature) const {
  if (rule != "auto") return rule;
  return temperature == 0.f ? "greedy" : "speculative";
}

DrafterOptions ExperimentConfig::rule_options_for(const std::string& name) const {
  auto it = rule_options.find(name);
  return DrafterOptions(it == rule_options.end() ? std::map<std::string, std::string>{} : it->second, "rule." + name);
}

std::string ExperimentConfig::policy_spec(const std::string& name, int k) const {
  std::map<std::string, std::string> opts;
  if (auto it = policy_options.find(name); it != policy_options.end()) opts = it->second;
  // The run's k is the draft budget; a policy with a draft length of its own takes it unless the section sets it.
  if (name == "fixed" || name == "accept_threshold") opts.emplace("k", std::to_string(k));
  if (name == "cost_model") opts.emplace("k_max", std::to_string(k));
  std::string spec = name;
  for (const auto& [key, value] : opts) spec += " " + key + "=" + value;
  return spec;
}

std::string ExperimentConfig::out_path() const { return out.empty() ? "results/" + name + ".h5" : out; }

std::string ExperimentConfig::to_ini() const {
  auto floats = [](const auto& xs) {
    std::vector<std::string> s;
    for (auto x : xs) s.push_back(fmt_float(x));
    return join(s);
  };
  auto ints = [](const auto& xs) {
    std::vector<std::string> s;
    for (auto x : xs) s.push_back(std::to_string(x));
    return join(s);
  };
  std::ostringstream os;
  os << "[target]\n"
     << "model = " << model << "\n"
     << "tokenizer = " << tokenizer << "\n"
     << "chat = " << (chat ? (*chat ? "true" : "false") : "auto") << "\n"
     << "threads = " << threads << "\n"
     << "device = " << device << "\n\n"
     << "[run]\n"
     << "name = " << name << "\n"
     << "drafters = " << join(drafters) << "\n"
     << "k = " << ints(k) << "\n"
     << "temperatures = " << floats(temperatures) << "\n"
     << "rule = " << rule << "\n"
     << "top_k = " << top_k << "\n"
     << "top_p = " << fmt_float(top_p) << "\n"
     << "max_new_tokens = " << max_new_tokens << "\n"
     << "seeds = " << ints(seeds) << "\n"
     << "repeats = " << repeats << "\n"
     << "max_tree_nodes = " << max_tree_nodes << "\n"
     << "batch_size = " << ints(batch_sizes) << "\n"
     << "arrival_rate = " << floats(arrival_rates) << "\n"
     << "arrivals = " << arrivals << "\n"
     << "interleave = " << (interleave ? "true" : "false") << "\n"
     << "aa_control = " << (aa_control ? "true" : "false") << "\n"
     << "policy = " << join(policies) << "\n"
     << "cost_table = " << cost_table << "\n\n"
     << "[prompts]\n"
     << "sets = " << join(prompt_sets) << "\n"
     << "per_category = " << per_category << "\n"
     << "categories = " << join(categories) << "\n"
     << "max_prompt_tokens = " << max_prompt_tokens << "\n";
  for (const auto& dc : drafter_configs) {
    os << "\n[" << dc.section() << "]\n"
       << "type = " << dc.type << "\n";
    for (const auto& [k, v] : dc.options) os << k << " = " << v << "\n";
  }
  for (const auto& [rule, opts] : rule_options) {
    os << "\n[rule." << rule << "]\n";
    for (const auto& [k, v] : opts) os << k << " = " << v << "\n";
  }
  for (const auto& [policy, opts] : policy_options) {
    os << "\n[policy." << policy << "]\n";
    for (const auto& [k, v] : opts) os << k << " = " << v << "\n";
  }
  return os.str();
}

std::vector<const DrafterInfo*> resolve_drafter_types(const ExperimentConfig& cfg, DrafterRegistry& registry) {
  std::vector<const DrafterInfo*> out;
  for (const auto& dc : cfg.drafter_configs) {
    // plugin:... and python:... entries are made by resolve() (core/speculative/drafter.h).
    if (dc.type.rfind("plugin:", 0) != 0 && dc.type.rfind("python:", 0) != 0 && !registry.contains(dc.type)) {
      std::vector<std::string> known;
      for (const DrafterInfo* info : registry.list()) known.push_back(info->name);
      const std::string suggestion = closest_match(dc.type, known);
      SPECDEC_FAIL("[", dc.section(), "] type = '", dc.type, "': unknown drafter; known drafters: ", join(known),
                   " (or plugin:PATH.so:NAME, python:MODULE.CLASS)",
                   suggestion.empty() ? "" : "; did you mean '" + suggestion + "'?");
    }
    out.push_back(&registry.resolve(dc.type));
  }
  return out;
}

std::unique_ptr<Drafter> make_drafter(const DrafterConfig& dc, const DrafterInfo& info, const DrafterEnv& env) {
  try {
    return specdec::make_drafter(info, env, DrafterOptions(dc.options, dc.section()));
  } catch (const UnknownOptionError& e) {  // add the closest known key to the message
    const std::string suggestion = closest_match(e.key(), e.known());
    if (suggestion.empty()) throw;
    throw UnknownOptionError(std::string(e.what()) + "; did you mean '" + suggestion + "'?", e.key(), e.known());
  }
}

}  // namespace specdec::experiments
