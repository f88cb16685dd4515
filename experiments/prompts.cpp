// JSONL prompt-set loaders (nlohmann::json) and the deterministic per-category selection.
#include "experiments/prompts.h"

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace specdec::experiments {
namespace fs = std::filesystem;
namespace {

struct NamedSet {
  const char* name;
  const char* file;  // under <assets>/data/prompts
};
constexpr NamedSet kNamedSets[] = {
    {"spec_bench", "spec_bench_question.jsonl"},
    {"mt_bench", "mt_bench_question.jsonl"},
    {"gsm8k", "gsm8k_test.jsonl"},
};

const NamedSet* named_set(const std::string& set) {
  for (const auto& s : kNamedSets)
    if (set == s.name) return &s;
  return nullptr;
}

std::string id_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  return v.dump();
}

}  // namespace

fs::path source_dir() {
#ifdef SPECDEC_SOURCE_DIR
  return SPECDEC_SOURCE_DIR;
#else
  return fs::current_path();
#endif
}

fs::path assets_dir() {
  if (const char* env = std::getenv("SPECDEC_ASSETS"); env && *env) return env;
  const fs::path shared = source_dir() / ".." / "shared";
  std::error_code ec;
  if (fs::is_directory(shared, ec)) return fs::weakly_canonical(shared, ec);
  return source_dir() / "assets";
}

std::string find_input_file(const std::string& path, const fs::path& base) {
  const fs::path p(path);
  std::error_code ec;
  if (path.empty() || p.is_absolute() || fs::exists(p, ec)) return path;
  if (!base.empty() && fs::exists(base / p, ec)) return (base / p).string();
  if (fs::exists(source_dir() / p, ec)) return (source_dir() / p).string();
  if (fs::exists(assets_dir() / p, ec)) return (assets_dir() / p).string();
  return path;
}

std::string prompt_set_path(const std::string& set, const fs::path& base) {
  if (const NamedSet* s = named_set(set)) return (assets_dir() / "data" / "prompts" / s->file).string();
  return find_input_file(set, base);
}

std::vector<Prompt> load_prompt_set(const std::string& set, const fs::path& base, int turn) {
  const std::string path = prompt_set_path(set, base);
  const bool named = named_set(set) != nullptr;
  std::ifstream in(path);
  if (!in.good()) {
    if (named)
      SPECDEC_FAIL(path, ": cannot open prompt set '", set,
                   "' (set SPECDEC_ASSETS to the folder holding data/prompts, or run scripts/setup)");
    SPECDEC_FAIL(path, ": cannot open prompt set (expected spec_bench, mt_bench, gsm8k or a path to a .jsonl file)");
  }
  const std::string set_name = named ? set : fs::path(path).stem().string();
  std::vector<Prompt> out;
  std::set<std::string> ids;
  std::string line;
  int line_no = 0, index = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      SPECDEC_FAIL(path, ":", line_no, ": not a JSON object (", e.what(), ")");
    }
    SPECDEC_CHECK(j.is_object(), path, ":", line_no, ": a JSON object per line");
    Prompt p;
    p.set = set_name;
    if (j.contains("turns")) {
      const auto& turns = j["turns"];
      SPECDEC_CHECK(turns.is_array() && turn < static_cast<int>(turns.size()) && turns[turn].is_string(), path, ":",
                    line_no, ": 'turns' as an array of strings with a turn ", turn + 1);
      p.text = turns[turn].get<std::string>();
    } else if (j.contains("question") && j["question"].is_string()) {
      p.text = j["question"].get<std::string>();
    } else if (j.contains("prompt") && j["prompt"].is_string()) {
      p.text = j["prompt"].get<std::string>();
    } else if (j.contains("text") && j["text"].is_string()) {
      p.text = j["text"].get<std::string>();
    } else {
      SPECDEC_FAIL(path, ":", line_no, ": no prompt (expected a field turns, question, prompt or text)");
    }
    if (j.contains("category") && j["category"].is_string())
      p.category = j["category"].get<std::string>();
    else
      p.category = set_name;
    // Spec-Bench reports its MT-Bench part as one task ("Multi-turn Conversation"), beside translation,
    // summarization, qa, math_reasoning and rag: group the eight MT-Bench categories the same way, so
    // per-category limits and reports follow Spec-Bench's six tasks. (The mt_bench set keeps all eight.)
    static const std::set<std::string> kMtBench = {"writing", "roleplay",   "reasoning", "math",
                                                   "coding",  "extraction", "stem",      "humanities"};
    if (set_name == "spec_bench" && kMtBench.count(p.category)) p.category = "mt_bench";
    const char* id_key = j.contains("question_id") ? "question_id" : j.contains("id") ? "id" : nullptr;
    p.id = set_name + ":" + (id_key ? id_text(j[id_key]) : std::to_string(index));
    SPECDEC_CHECK(ids.insert(p.id).second, path, ":", line_no, ": prompt id '", p.id, "' appears twice");
    out.push_back(std::move(p));
    ++index;
  }
  SPECDEC_CHECK(!out.empty(), path, ": no prompts in the file");
  return out;
}

std::vector<Prompt> select_prompts(const std::vector<Prompt>& all, int per_category,
                                   const std::vector<std::string>& categories,
                                   const std::function<bool(const Prompt&)>& accept) {
  std::set<std::string> known;
  for (const auto& p : all) known.insert(p.category);
  for (const auto& c : categories) {
    if (known.count(c)) continue;
    std::string list;
    for (const auto& k : known) list += (list.empty() ? "" : ", ") + k;
    SPECDEC_FAIL("[prompts] categories: unknown category '", c, "'; the prompt sets have: ", list);
  }
  const std::set<std::string> wanted(categories.begin(), categories.end());
  std::map<std::pair<std::string, std::string>, int> taken;  // (set, category) -> prompts kept
  std::vector<Prompt> out;
  for (const auto& p : all) {
    if (!wanted.empty() && !wanted.count(p.category)) continue;
    int& n = taken[{p.set, p.category}];
    if (per_category > 0 && n >= per_category) continue;
    if (accept && !accept(p)) continue;
    ++n;
    out.push_back(p);
  }
  return out;
}

std::vector<Prompt> load_prompts(const std::vector<std::string>& sets, int per_category,
                                 const std::vector<std::string>& categories, const fs::path& base,
                                 const std::function<bool(const Prompt&)>& accept) {
  std::vector<Prompt> all;
  std::set<std::string> set_names;
  for (const auto& s : sets) {
    auto one = load_prompt_set(s, base);
    SPECDEC_CHECK(set_names.insert(one.front().set).second, "[prompts] sets: two sets named '", one.front().set,
                  "' (their prompt ids would collide)");
    all.insert(all.end(), one.begin(), one.end());
  }
  return select_prompts(all, per_category, categories, accept);
}

}  // namespace specdec::experiments
