// Prompt sets for experiments: JSONL loaders for Spec-Bench and MT-Bench (question_id, category, turns[])
// and GSM8K (question, answer), or any .jsonl with those fields; stable prompt ids "<set>:<question_id or
// line index>"; per-category limits taken in file order, so a selection is the same on every machine.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace specdec::experiments {

struct Prompt {
  std::string id;        // "<set>:<question_id>" (or "<set>:<line index>", 0-based over non-empty lines)
  std::string set;       // "spec_bench", "mt_bench", "gsm8k", or the stem of a .jsonl file
  std::string category;  // the record's category ("gsm8k" for GSM8K; the set name when a file has none)
  std::string text;      // the user turn (the first one by default)
};

// The repository root (compile definition SPECDEC_SOURCE_DIR).
std::filesystem::path source_dir();
// Where test models and prompt sets live: $SPECDEC_ASSETS, else <repo>/../shared when it exists, else
// <repo>/assets.
std::filesystem::path assets_dir();

// A relative input path as given when it exists (relative to the working directory), else relative to
// `base` (e.g. the config file's folder, when non-empty), else to the repository root, else to
// assets_dir() (so "models/stories260K/stories260K.bin" finds the test model wherever the assets are);
// an absolute or unresolvable path comes back unchanged (the loader then names it in its error).
std::string find_input_file(const std::string& path, const std::filesystem::path& base = {});

// The file of a named set (spec_bench, mt_bench, gsm8k) under assets_dir()/data/prompts, or `set` itself
// (a .jsonl path, resolved with find_input_file against base).
std::string prompt_set_path(const std::string& set, const std::filesystem::path& base = {});

// Loads one set in file order. Each line is a JSON object with the prompt in turns[turn] (Spec-Bench,
// MT-Bench), question (GSM8K) or prompt / text; question_id (or id) names it, else the line index.
// Throws specdec::Error naming the file (and line) when it is missing, a line is not JSON, the prompt
// field is absent, or two records share an id.
std::vector<Prompt> load_prompt_set(const std::string& set, const std::filesystem::path& base = {}, int turn = 0);

// Keeps the prompts of the given categories (empty = all; an unknown category is an error listing the
// known ones), at most per_category (0 = no limit) per (set, category), the first in file order that
// `accept` takes (when given; it sees only prompts its category still has room for, in file order, so
// e.g. skipping an over-long prompt takes the next one of its category instead).
std::vector<Prompt> select_prompts(const std::vector<Prompt>& all, int per_category,
                                   const std::vector<std::string>& categories,
                                   const std::function<bool(const Prompt&)>& accept = nullptr);

// load_prompt_set for each set, concatenated in order, then select_prompts.
std::vector<Prompt> load_prompts(const std::vector<std::string>& sets, int per_category,
                                 const std::vector<std::string>& categories, const std::filesystem::path& base = {},
                                 const std::function<bool(const Prompt&)>& accept = nullptr);

}  // namespace specdec::experiments
