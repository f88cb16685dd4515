// specdec collect as library code: runs the target over training prompts (../shared/data/train: GSM8K
// train, self-instruct, the T0 mix) and writes, per token, its final-norm feature and top-k next-token
// distribution into a features file (features.h, docs/training-data.md). Crash-safe and resumable: finished
// shards OUT.parts/part-NNNNNN.h5 appear atomically, --resume skips them, the merge into OUT is atomic.
// Evaluation prompt sets are refused as input.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace specdec::train {

// Where a sequence's response comes from.
enum class CollectMode {
  kReference,  // the dataset's own answer, read with the prompt in one prefill pass
  kSelf,       // the target's own response, decoded by specdec (AR through speculative_decode), then read
};
const char* mode_name(CollectMode mode);  // "reference", "self"

struct CollectConfig {
  std::string model;                      // the target: .gguf, llama2.c .bin, or a safetensors folder
  std::string tokenizer;                  // empty: the model's own (GGUF) or the one beside it
  std::vector<std::string> prompt_files;  // training .jsonl files (formats: load_training_records)
  CollectMode mode = CollectMode::kReference;
  int max_sequences = 0;     // sequences to collect, the first in the (shuffled) order; 0 = every record
  int max_tokens = 512;      // per sequence, prompt + response (cut there); clipped to the model's context
  int max_new_tokens = 256;  // self mode: response tokens decoded at most (within max_tokens)
  float temperature = 0.f;   // self mode: 0 = greedy, else sampled (Philox, seed, request = sequence index)
  int topk = 8;              // top-k soft labels stored per token
  std::optional<bool> chat;  // apply the chat template; unset = when the tokenizer has one
  bool shuffle = true;       // order all records by a seeded shuffle before taking max_sequences
  uint64_t seed = 0;
  int threads = 0;  // CPU threads; 0 = OMP_NUM_THREADS or all cores (no effect on the values)
  // Self mode: sequences decoded together, one forward per step (BatchDecoder: each sequence's tokens are
  // speculative_decode's alone, so the data does not depend on it; 1 = one sequence at a time).
  int batch = 8;
  int shard_sequences = 32;   // sequences per shard file (what a kill can lose at most)
  int prefill_chunk = 64;     // tokens per forward when reading a sequence (bounds the logits: chunk x V)
  std::string out;            // the features file; its shards go to OUT.parts/
  bool resume = false;        // continue from the finished shards in OUT.parts (same config required)
  std::string created_by;     // the specdec commit, stored as attribute created_by; empty = omitted
  int stop_after_shards = 0;  // test hook: return after writing this many shards, as a kill would; 0 = never

  // Everything that decides the collected data, as INI text (not out, resume, threads, created_by or the
  // hook): stored in every shard and in OUT; --resume requires it unchanged.
  std::string to_ini() const;
};

// One training sequence's source text.
struct TrainingRecord {
  std::string id;      // "<file stem>:<line index>", self-instruct "<file stem>:<line index>/<instance>"
  std::string prompt;  // the user turn
  std::string answer;  // the dataset's response
};

// Throws specdec::Error (one line naming the file) when `path` is an evaluation prompt set: its sha256 is
// that of spec_bench_question, mt_bench_question or gsm8k_test (../shared/README.md), or it lies under a
// data/prompts folder. Returns the file's sha256 otherwise.
std::string check_training_file(const std::string& path);

// The records of one training file, in file order. Each non-empty line is a JSON object in one of the
// formats: {question, answer} (GSM8K; its <<calculator>> annotations are removed from the answer),
// {instruction, instances: [{input, output}]} (self-instruct: one record per instance, the prompt is the
// instruction, a blank line and the input when there is one), {prompt, completion} (T0). Throws naming
// the file and line for anything else.
std::vector<TrainingRecord> load_training_records(const std::string& path);

// What collect() reports while it runs (each callback optional).
struct CollectCallbacks {
  // Once, before the first sequence: sequences in this collection, those already in finished shards.
  std::function<void(int64_t total, int64_t resumed)> on_start;
  // After each sequence: its record id and its tokens (rows).
  std::function<void(const std::string& id, int64_t tokens)> on_sequence;
  // Notes for the user (skipped records, resumed shards).
  std::function<void(const std::string& text)> on_note;
};

struct CollectSummary {
  std::string out;
  bool complete = false;          // OUT is written (false only when stop_after_shards stopped the run)
  bool already_complete = false;  // --resume found OUT finished: nothing was collected
  int64_t sequences = 0;          // in OUT (or in the finished shards when not complete)
  int64_t tokens = 0;             // rows, likewise
  int64_t new_sequences = 0;      // collected by this call
  int64_t new_tokens = 0;
  int64_t skipped = 0;     // records passed over: the prompt alone fills max_tokens
  double seconds = 0;      // wall time of this call's collection (model loading excluded)
  int64_t file_bytes = 0;  // size of OUT
};

// Runs the collection cfg describes and writes cfg.out. Throws specdec::Error (one line) for a bad config
// value, a refused or unreadable prompt file, an existing OUT or OUT.parts without --resume, a shard
// written under another config, or a model / tokenizer that does not load.
CollectSummary collect(const CollectConfig& cfg, const CollectCallbacks& callbacks = {});

// The top-k of one row of logits: the k largest logits' ids in decreasing order (ties: the lower id first)
// and their probabilities under softmax at temperature 1, computed in double. logits: V floats.
void top_k_softmax(const float* logits, int V, int k, int32_t* ids, float* probs);

}  // namespace specdec::train
