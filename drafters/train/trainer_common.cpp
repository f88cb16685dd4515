// The feature drafters' trainers' shared pieces (trainer_common.h).
#include "drafters/train/trainer_common.h"

#include <Eigen/Core>
#include <omp.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"
#include "kernels/cpu/ops.h"

namespace specdec::train {

void check_schedule(int epochs, int64_t steps, float lr, float min_lr, int64_t warmup) {
  SPECDEC_CHECK(steps > 0 || epochs >= 1, "epochs >= 1 or steps > 0, got epochs = ", epochs, ", steps = ", steps);
  SPECDEC_CHECK(lr > 0.f && min_lr >= 0.f && min_lr <= lr, "0 <= min_lr <= lr and lr > 0, got lr = ", lr,
                ", min_lr = ", min_lr);
  SPECDEC_CHECK(warmup >= 0, "warmup >= 0 steps, got ", warmup);
}

void check_split_and_checkpoints(double heldout_fraction, int64_t checkpoint_every, const std::string& checkpoint_path,
                                 bool resume) {
  SPECDEC_CHECK(heldout_fraction >= 0.0 && heldout_fraction < 1.0, "heldout_fraction in [0, 1), got ",
                heldout_fraction);
  SPECDEC_CHECK(checkpoint_every >= 0, "checkpoint_every >= 0 steps, got ", checkpoint_every);
  SPECDEC_CHECK((checkpoint_every == 0 && !resume) || !checkpoint_path.empty(),
                "a checkpoint path with checkpoint_every > 0 or --resume");
}

void check_vocab_option(const char* key, int n, const FeatureData& data) {
  SPECDEC_CHECK(n == 0 || (n >= data.topk && n <= data.vocab_size), key, " = ", n,
                ": must be 0 (the full vocabulary) or in [topk, V] = [", data.topk, ", ", data.vocab_size, "]");
}

int set_threads(int threads) {
  if (threads > 0) {
    Eigen::setNbThreads(threads);
    omp_set_num_threads(threads);
  }
  return Eigen::nbThreads();
}

StepPlan plan_steps(int64_t items, int64_t batch, int epochs, int64_t steps) {
  StepPlan p;
  p.steps_per_epoch = (items + batch - 1) / batch;
  p.total_steps = steps > 0 ? steps : epochs * p.steps_per_epoch;
  p.n_epochs = static_cast<int>((p.total_steps + p.steps_per_epoch - 1) / p.steps_per_epoch);
  return p;
}

nlohmann::json data_files_json(const std::vector<DataFileInfo>& files) {
  nlohmann::json out = nlohmann::json::array();
  for (const DataFileInfo& f : files) {
    nlohmann::json e = {{"path", f.path}, {"bytes", f.bytes}};
    if (!f.sha256.empty()) e["sha256"] = f.sha256;
    out.push_back(e);
  }
  return out;
}

std::vector<float> weight_f32(const LoadedModel& model, const WeightTensor& t, const char* what) {
  const int64_t V = model.config.vocab_size, H = model.config.dim;
  SPECDEC_CHECK(!t.empty() && t.rows == V && t.cols == H, model.path, ": ", what, " of ", V, " x ", H, ", got ", t.rows,
                " x ", t.cols);
  std::vector<float> out(static_cast<size_t>(V * H));
  const auto* src = static_cast<const uint8_t*>(t.data);
  const size_t stride = cpu::row_bytes(t.dtype, H);
  for (int64_t v = 0; v < V; ++v) cpu::dequantize_row(out.data() + v * H, src + v * stride, t.dtype, H);
  return out;
}

GatheredRows gather_rows(const std::vector<float>& m, int V, int H, const std::vector<int32_t>& ids, const char* what) {
  GatheredRows g;
  g.column.assign(static_cast<size_t>(V), -1);
  g.rows.resize(ids.size() * static_cast<size_t>(H));
  for (size_t i = 0; i < ids.size(); ++i) {
    SPECDEC_CHECK(ids[i] >= 0 && ids[i] < V && (i == 0 || ids[i] > ids[i - 1]), what,
                  " of distinct ascending ids in [0, ", V, "), got ", ids[i], " at ", i);
    g.column[ids[i]] = static_cast<int32_t>(i);
    std::copy_n(m.data() + static_cast<size_t>(ids[i]) * H, H, g.rows.data() + i * H);
  }
  return g;
}

CheckpointFile open_checkpoint(const std::string& path, const char* kind) {
  SPECDEC_CHECK(std::filesystem::exists(path), path, ": no checkpoint to resume from");
  CheckpointFile ck{SafetensorsFile::open(path), {}};
  const auto meta = ck.file->metadata().find("specdec_checkpoint");
  SPECDEC_CHECK(meta != ck.file->metadata().end(), path, ": not ", kind,
                " training checkpoint (no \"specdec_checkpoint\" metadata)");
  ck.metadata = meta->second;
  return ck;
}

}  // namespace specdec::train
