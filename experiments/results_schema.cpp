// The JSON column list derived from results_schema.h (schema_json()).
#include "experiments/results_schema.h"

#include <nlohmann/json.hpp>

namespace specdec::results {
namespace {

template <class T>
const char* type_name() {
  if constexpr (std::is_same_v<T, std::string>)
    return "string";
  else if constexpr (std::is_same_v<T, bool>)
    return "int8";
  else if constexpr (std::is_same_v<T, int32_t>)
    return "int32";
  else if constexpr (std::is_same_v<T, int64_t>)
    return "int64";
  else if constexpr (std::is_same_v<T, float>)
    return "float32";
  else
    return "float64";
}

template <class Row>
nlohmann::ordered_json table() {
  nlohmann::ordered_json cols = nlohmann::ordered_json::array();
  schema::for_each_field<Row>([&](const auto& f) {
    using T = typename std::decay_t<decltype(f)>::value_type;
    cols.push_back({{"name", f.name},
                    {"type", type_name<T>()},
                    {"bytes", f.bytes},
                    {"since", f.since},
                    {"timing", f.timing},
                    {"doc", f.doc}});
  });
  return cols;
}

}  // namespace

std::string schema_json() {
  nlohmann::ordered_json j;
  j["schema_version"] = kSchemaVersion;
  j["oldest_readable"] = kOldestSchemaVersion;
  j["tables"][schema::Table<RequestRow>::name] = table<RequestRow>();
  j["tables"][schema::Table<StepRow>::name] = table<StepRow>();
  j["tables"][schema::Table<DraftTokenRow>::name] = table<DraftTokenRow>();
  j["tables"][schema::Table<OutputRow>::name] = table<OutputRow>();
  return j.dump(1) + "\n";
}

}  // namespace specdec::results
