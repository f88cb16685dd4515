// The cost table (lookup, JSON), the built-in speculation policies and their registry.
// docs/policies.md is the user's description of each rule; the comments here say why.
#include "core/speculative/policy.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iterator>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace specdec {

using nlohmann::json;

// ---- cost table ------------------------------------------------------------------------------------------

namespace {

// Index of the grid point nearest x (exact when on the grid; a tie takes the larger point).
size_t nearest(const std::vector<int>& grid, int x) {
  const auto it = std::lower_bound(grid.begin(), grid.end(), x);
  if (it == grid.begin()) return 0;
  if (it == grid.end()) return grid.size() - 1;
  const size_t hi = static_cast<size_t>(it - grid.begin());
  return (x - grid[hi - 1] < grid[hi] - x) ? hi - 1 : hi;
}

const char* type_name(const json& j) { return j.type_name(); }

const json& member(const json& obj, const char* key, const std::string& path, const std::string& where) {
  SPECDEC_CHECK(obj.is_object(), where, ": key '", path, "': expected an object, got ", type_name(obj));
  const auto it = obj.find(key);
  SPECDEC_CHECK(it != obj.end(), where, ": missing key '", path.empty() ? "" : path + ".", key, "'");
  return *it;
}

double number(const json& j, const std::string& path, const std::string& where) {
  SPECDEC_CHECK(j.is_number(), where, ": key '", path, "': expected a number, got ", type_name(j));
  const double x = j.get<double>();
  SPECDEC_CHECK(std::isfinite(x) && x >= 0, where, ": key '", path, "': expected a finite cost >= 0, got ", x);
  return x;
}

std::vector<int> int_grid(const json& obj, const char* key, const std::string& where) {
  const std::string path = std::string("forward.") + key;
  const json& a = member(obj, key, "forward", where);
  SPECDEC_CHECK(a.is_array(), where, ": key '", path, "': expected an array of integers, got ", type_name(a));
  std::vector<int> out;
  for (size_t i = 0; i < a.size(); ++i) {
    SPECDEC_CHECK(a[i].is_number_integer(), where, ": key '", path, "[", i, "]': expected an integer, got ",
                  type_name(a[i]));
    out.push_back(a[i].get<int>());
  }
  return out;
}

void check_grid(const std::vector<int>& g, const std::string& path, int lowest, const std::string& where) {
  SPECDEC_CHECK(!g.empty(), where, ": key '", path, "': expected at least one value, got none");
  SPECDEC_CHECK(g[0] >= lowest, where, ": key '", path, "': expected values >= ", lowest, ", got ", g[0]);
  for (size_t i = 1; i < g.size(); ++i)
    SPECDEC_CHECK(g[i] > g[i - 1], where, ": key '", path, "': expected strictly increasing values, got ", g[i],
                  " after ", g[i - 1]);
}

// The two grid points around x and the weight of the upper one: (i, i, 0) on a point or clamped outside the
// grid, else (lo, lo + 1, w) with x = (1 - w) grid[lo] + w grid[lo + 1].
struct Bracket {
  size_t lo, hi;
  double w;
};

Bracket bracket(const std::vector<int>& grid, int x) {
  if (x <= grid.front()) return {0, 0, 0.0};
  if (x >= grid.back()) return {grid.size() - 1, grid.size() - 1, 0.0};
  const size_t hi = static_cast<size_t>(std::upper_bound(grid.begin(), grid.end(), x) - grid.begin());
  return {hi - 1, hi, static_cast<double>(x - grid[hi - 1]) / (grid[hi] - grid[hi - 1])};
}

}  // namespace

double CostTable::forward_us(int T, int B, int C) const {
  SPECDEC_CHECK(!tokens.empty() && !batch.empty() && !context.empty(), "a cost table with forward costs");
  const size_t t = nearest(tokens, T), nB = batch.size(), nC = context.size();
  const Bracket b = bracket(batch, B), c = bracket(context, C);
  const auto at = [&](size_t bi, size_t ci) { return forward[(t * nB + bi) * nC + ci]; };
  const auto in_c = [&](size_t bi) { return (1 - c.w) * at(bi, c.lo) + c.w * at(bi, c.hi); };
  return (1 - b.w) * in_c(b.lo) + b.w * in_c(b.hi);
}

double CostTable::drafter_us(const std::string& name, int k, int B) const {
  if (name.empty()) return 0;
  if (const auto b = drafters_batched.find(name); B > 1 && b != drafters_batched.end()) {
    // The row of the largest measured batch size <= B (B = 1: drafters' own row).
    auto row = b->second.upper_bound(B);
    if (row != b->second.begin()) {
      --row;
      SPECDEC_CHECK(k >= 0 && k < static_cast<int>(row->second.size()), "cost table (", source, "): drafter '", name,
                    "' costs at B = ", row->first, " for k in 0..", row->second.size() - 1, ", asked for k = ", k);
      return row->second[k];
    }
  }
  const auto it = drafters.find(name);
  if (it == drafters.end()) {
    std::string known;
    for (const auto& [n, _] : drafters) known += (known.empty() ? "" : ", ") + n;
    SPECDEC_FAIL("cost table (", source, "): no costs for drafter '", name,
                 "'; it has: ", known.empty() ? "(none)" : known);
  }
  SPECDEC_CHECK(k >= 0 && k < static_cast<int>(it->second.size()), "cost table (", source, "): drafter '", name,
                "' costs for k in 0..", it->second.size() - 1, ", asked for k = ", k);
  return it->second[k];
}

int CostTable::drafter_k_max(const std::string& name) const {
  if (name.empty()) return INT_MAX;
  (void)drafter_us(name, 0);  // the error for an unknown name
  return static_cast<int>(drafters.at(name).size()) - 1;
}

double CostTable::backlog_us(const std::string& name, int n) const {
  const auto it = drafters_backlog.find(name);
  return it == drafters_backlog.end() || n <= 0 ? 0.0 : it->second * n;
}

double CostTable::backlog_charge_us(const std::string& name, int n, double emitted, int remaining) const {
  return backlog_us(name, n) * emitted / std::max(1, remaining);
}

double CostTable::step_us(const std::string& drafter, int k, int B, int C) const {
  return forward_us(k + 1, B, C) + drafter_us(drafter, k, B);
}

double CostTable::ragged_forward_us(int n_tokens, int B, int C) const {
  SPECDEC_CHECK(B >= 1 && n_tokens >= B, "a batch of B >= 1 sequences verifying at least B tokens, got B = ", B, ", ",
                n_tokens, " tokens");
  const int lo = n_tokens / B, rest = n_tokens % B;
  const double f_lo = forward_us(lo, B, C);
  if (rest == 0) return f_lo;
  const double w = static_cast<double>(rest) / B;
  return (1 - w) * f_lo + w * forward_us(lo + 1, B, C);
}

namespace {

// Isotonic regression in place: the non-decreasing sequence nearest (least squares, equal weights) to
// v[0], v[stride], ..., v[(n - 1) * stride]. Pool adjacent violators: blocks of (mean, size), merged while a
// block's mean is below its predecessor's.
void isotonic(double* v, size_t n, size_t stride) {
  std::vector<double> mean;
  std::vector<size_t> size;
  for (size_t i = 0; i < n; ++i) {
    mean.push_back(v[i * stride]);
    size.push_back(1);
    while (mean.size() > 1 && mean[mean.size() - 2] > mean.back()) {
      const size_t s = size.back(), s0 = size[size.size() - 2];
      const double m = (mean[mean.size() - 2] * static_cast<double>(s0) + mean.back() * static_cast<double>(s)) /
                       static_cast<double>(s0 + s);
      mean.pop_back();
      size.pop_back();
      mean.back() = m;
      size.back() = s0 + s;
    }
  }
  size_t i = 0;
  for (size_t blk = 0; blk < mean.size(); ++blk)
    for (size_t j = 0; j < size[blk]; ++j) v[(i++) * stride] = mean[blk];
}

}  // namespace

CostTable CostTable::monotone(double tol_us) const {
  validate("cost table to fit");
  CostTable out = *this;
  const size_t nT = tokens.size(), nB = batch.size(), nC = context.size(), n = forward.size();
  // Axis a of the flat T x B x C array (C fastest): its length, stride, and the first index of every line.
  const size_t len[3] = {nT, nB, nC}, stride[3] = {nB * nC, nC, 1};
  const auto project = [&](std::vector<double>& x, int a) {
    for (size_t start = 0; start < n; ++start) {
      // A line starts where the axis' index is 0.
      if ((start / stride[a]) % len[a] != 0) continue;
      isotonic(x.data() + start, len[a], stride[a]);
    }
  };
  std::vector<double>& x = out.forward;
  std::vector<std::vector<double>> incr(3, std::vector<double>(n, 0.0));  // Dykstra's increments, one per cone
  std::vector<double> z(n), before(n);
  for (int cycle = 0; cycle < 10000; ++cycle) {
    before = x;
    for (int a = 0; a < 3; ++a) {
      for (size_t i = 0; i < n; ++i) z[i] = x[i] + incr[a][i];
      x = z;
      project(x, a);
      for (size_t i = 0; i < n; ++i) incr[a][i] = z[i] - x[i];
    }
    double moved = 0;
    for (size_t i = 0; i < n; ++i) moved = std::max(moved, std::abs(x[i] - before[i]));
    if (moved <= tol_us) break;
  }
  for (int a = 0; a < 3; ++a) project(x, a);  // exactly monotone along every axis, whatever tol_us left
  for (auto& [name, row] : out.drafters) isotonic(row.data(), row.size(), 1);
  for (auto& [name, rows] : out.drafters_batched)
    for (auto& [B, row] : rows) isotonic(row.data(), row.size(), 1);
  return out;
}

void CostTable::validate(const std::string& where) const {
  check_grid(tokens, "forward.tokens", 1, where);
  check_grid(batch, "forward.batch", 1, where);
  check_grid(context, "forward.context", 0, where);
  const size_t n = tokens.size() * batch.size() * context.size();
  SPECDEC_CHECK(forward.size() == n, where, ": key 'forward.us': expected ", tokens.size(), " x ", batch.size(), " x ",
                context.size(), " = ", n, " costs, got ", forward.size());
  for (size_t i = 0; i < n; ++i)
    SPECDEC_CHECK(std::isfinite(forward[i]) && forward[i] >= 0, where,
                  ": key 'forward.us': expected finite costs >= 0, got ", forward[i], " at flat index ", i);
  for (const auto& [name, row] : drafters) {
    SPECDEC_CHECK(!row.empty(), where, ": key 'drafters.", name, "': expected costs for k = 0, 1, ..., got none");
    for (size_t k = 0; k < row.size(); ++k)
      SPECDEC_CHECK(std::isfinite(row[k]) && row[k] >= 0, where, ": key 'drafters.", name, "[", k,
                    "]': expected a finite cost >= 0, got ", row[k]);
  }
  for (const auto& [name, rows] : drafters_batched) {
    const auto base = drafters.find(name);
    SPECDEC_CHECK(base != drafters.end(), where, ": key 'drafters_batched.", name,
                  "': expected a drafter of 'drafters' (its B = 1 row), got none of that name");
    for (const auto& [B, row] : rows) {
      const std::string path = "drafters_batched." + name + "." + std::to_string(B);
      SPECDEC_CHECK(B >= 2, where, ": key '", path, "': expected a batch size >= 2 (B = 1 is 'drafters')");
      SPECDEC_CHECK(row.size() == base->second.size(), where, ": key '", path, "': expected ", base->second.size(),
                    " costs (k = 0 .. ", base->second.size() - 1, ", as drafters.", name, "), got ", row.size());
      for (size_t k = 0; k < row.size(); ++k)
        SPECDEC_CHECK(std::isfinite(row[k]) && row[k] >= 0, where, ": key '", path, "[", k,
                      "]': expected a finite cost >= 0, got ", row[k]);
    }
  }
  for (const auto& [name, us] : drafters_backlog) {
    SPECDEC_CHECK(drafters.count(name) == 1, where, ": key 'drafters_backlog.", name,
                  "': expected a drafter of 'drafters', got none of that name");
    SPECDEC_CHECK(std::isfinite(us) && us >= 0, where, ": key 'drafters_backlog.", name,
                  "': expected a finite cost per token >= 0, got ", us);
  }
  for (const auto& [name, a] : acceptance) {
    SPECDEC_CHECK(drafters.count(name) == 1, where, ": key 'acceptance.drafters.", name,
                  "': expected a drafter of 'drafters', got none of that name");
    SPECDEC_CHECK(!a.empty(), where, ": key 'acceptance.drafters.", name,
                  "': expected the acceptance at positions 1, 2, ..., got none");
    for (size_t j = 0; j < a.size(); ++j)
      SPECDEC_CHECK(std::isfinite(a[j]) && a[j] >= 0 && a[j] <= 1, where, ": key 'acceptance.drafters.", name, "[", j,
                    "]': expected a probability in [0, 1], got ", a[j]);
  }
}

std::string CostTable::to_json() const {
  validate("cost table to save");
  json us = json::array();
  const size_t nB = batch.size(), nC = context.size();
  for (size_t t = 0; t < tokens.size(); ++t) {
    json per_b = json::array();
    for (size_t b = 0; b < nB; ++b)
      per_b.push_back(
          std::vector<double>(forward.begin() + (t * nB + b) * nC, forward.begin() + (t * nB + b + 1) * nC));
    us.push_back(per_b);
  }
  json j = {{"version", 1},
            {"source", source},
            {"forward", {{"tokens", tokens}, {"batch", batch}, {"context", context}, {"us", us}}},
            {"drafters", json::object()}};
  for (const auto& [name, row] : drafters) j["drafters"][name] = row;
  if (!drafters_batched.empty()) {
    j["drafters_batched"] = json::object();
    for (const auto& [name, rows] : drafters_batched) {
      json per_b = json::object();
      for (const auto& [B, row] : rows) per_b[std::to_string(B)] = row;
      j["drafters_batched"][name] = per_b;
    }
  }
  if (!drafters_backlog.empty()) {
    j["drafters_backlog"] = json::object();
    for (const auto& [name, us] : drafters_backlog) j["drafters_backlog"][name] = us;
  }
  if (!acceptance.empty()) {
    j["acceptance"] = {{"source", acceptance_source}, {"drafters", json::object()}};
    for (const auto& [name, a] : acceptance) j["acceptance"]["drafters"][name] = a;
  }
  return j.dump(1);
}

CostTable CostTable::from_json(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    SPECDEC_FAIL(where, ": not valid JSON (", e.what(), ")");
  }
  SPECDEC_CHECK(j.is_object(), where, ": expected a JSON object, got ", type_name(j));
  const json& version = member(j, "version", "", where);
  SPECDEC_CHECK(version.is_number_integer() && version.get<int>() == 1, where, ": key 'version': expected 1, got ",
                version.dump());
  CostTable c;
  if (const auto it = j.find("source"); it != j.end()) {
    SPECDEC_CHECK(it->is_string(), where, ": key 'source': expected a string, got ", type_name(*it));
    c.source = it->get<std::string>();
  } else {
    c.source = where;
  }
  const json& fwd = member(j, "forward", "", where);
  c.tokens = int_grid(fwd, "tokens", where);
  c.batch = int_grid(fwd, "batch", where);
  c.context = int_grid(fwd, "context", where);
  check_grid(c.tokens, "forward.tokens", 1, where);
  check_grid(c.batch, "forward.batch", 1, where);
  check_grid(c.context, "forward.context", 0, where);
  const json& us = member(fwd, "us", "forward", where);
  auto expect_array = [&](const json& a, size_t n, const std::string& path) {
    SPECDEC_CHECK(a.is_array(), where, ": key '", path, "': expected an array, got ", type_name(a));
    SPECDEC_CHECK(a.size() == n, where, ": key '", path, "': expected ", n, " entries, got ", a.size());
  };
  expect_array(us, c.tokens.size(), "forward.us");
  for (size_t t = 0; t < c.tokens.size(); ++t) {
    const std::string pt = "forward.us[" + std::to_string(t) + "]";
    expect_array(us[t], c.batch.size(), pt);
    for (size_t b = 0; b < c.batch.size(); ++b) {
      const std::string pb = pt + "[" + std::to_string(b) + "]";
      expect_array(us[t][b], c.context.size(), pb);
      for (size_t x = 0; x < c.context.size(); ++x)
        c.forward.push_back(number(us[t][b][x], pb + "[" + std::to_string(x) + "]", where));
    }
  }
  if (const auto it = j.find("drafters"); it != j.end()) {
    SPECDEC_CHECK(it->is_object(), where, ": key 'drafters': expected an object, got ", type_name(*it));
    for (const auto& [name, row] : it->items()) {
      const std::string path = "drafters." + name;
      SPECDEC_CHECK(row.is_array() && !row.empty(), where, ": key '", path,
                    "': expected a non-empty array of costs at k = 0, 1, ..., got ", row.dump());
      std::vector<double>& out = c.drafters[name];
      for (size_t k = 0; k < row.size(); ++k)
        out.push_back(number(row[k], path + "[" + std::to_string(k) + "]", where));
    }
  }
  if (const auto it = j.find("drafters_batched"); it != j.end()) {
    SPECDEC_CHECK(it->is_object(), where, ": key 'drafters_batched': expected an object, got ", type_name(*it));
    for (const auto& [name, rows] : it->items()) {
      SPECDEC_CHECK(rows.is_object(), where, ": key 'drafters_batched.", name,
                    "': expected an object of batch size -> costs, got ", type_name(rows));
      for (const auto& [b, row] : rows.items()) {
        const std::string path = "drafters_batched." + name + "." + b;
        char* end = nullptr;
        const long B = std::strtol(b.c_str(), &end, 10);
        SPECDEC_CHECK(!b.empty() && end == b.c_str() + b.size() && B >= 2 && B <= 1000000, where, ": key '", path,
                      "': expected a batch size >= 2 as the key");
        SPECDEC_CHECK(row.is_array() && !row.empty(), where, ": key '", path,
                      "': expected a non-empty array of costs at k = 0, 1, ..., got ", row.dump());
        std::vector<double>& out = c.drafters_batched[name][static_cast<int>(B)];
        for (size_t k = 0; k < row.size(); ++k)
          out.push_back(number(row[k], path + "[" + std::to_string(k) + "]", where));
      }
    }
  }
  if (const auto it = j.find("drafters_backlog"); it != j.end()) {
    SPECDEC_CHECK(it->is_object(), where, ": key 'drafters_backlog': expected an object, got ", type_name(*it));
    for (const auto& [name, us] : it->items()) c.drafters_backlog[name] = number(us, "drafters_backlog." + name, where);
  }
  if (const auto it = j.find("acceptance"); it != j.end()) {
    SPECDEC_CHECK(it->is_object(), where, ": key 'acceptance': expected an object, got ", type_name(*it));
    if (const auto src = it->find("source"); src != it->end()) {
      SPECDEC_CHECK(src->is_string(), where, ": key 'acceptance.source': expected a string, got ", type_name(*src));
      c.acceptance_source = src->get<std::string>();
    }
    const json& per = member(*it, "drafters", "acceptance", where);
    SPECDEC_CHECK(per.is_object(), where, ": key 'acceptance.drafters': expected an object, got ", type_name(per));
    for (const auto& [name, row] : per.items()) {
      const std::string path = "acceptance.drafters." + name;
      SPECDEC_CHECK(row.is_array(), where, ": key '", path, "': expected an array of probabilities, got ",
                    type_name(row));
      std::vector<double>& out = c.acceptance[name];
      for (size_t k = 0; k < row.size(); ++k)
        out.push_back(number(row[k], path + "[" + std::to_string(k) + "]", where));
    }
  }
  c.validate(where);
  return c;
}

void CostTable::save(const std::string& path) const {
  const std::string text = to_json();
  std::ofstream out(path);
  SPECDEC_CHECK(out.good(), "cost table ", path, ": cannot open for writing");
  out << text << '\n';
  out.close();
  SPECDEC_CHECK(out.good(), "cost table ", path, ": write failed");
}

CostTable CostTable::load(const std::string& path) {
  std::ifstream in(path);
  SPECDEC_CHECK(in.good(), "cost table ", path, ": cannot open (expected a JSON file from `specdec bench costs`)");
  const std::string text{std::istreambuf_iterator<char>(in), {}};
  return from_json(text, "cost table " + path);
}

// ---- the cost model --------------------------------------------------------------------------------------

double expected_emitted(std::span<const double> a, int k) {
  SPECDEC_CHECK(k >= 0 && k <= static_cast<int>(a.size()), "k in 0..", a.size(), " (acceptance estimates), got ", k);
  double e = 1, run = 1;
  for (int i = 0; i < k; ++i) {
    run *= a[i];
    e += run;
  }
  return e;
}

double expected_emitted(std::span<const double> a, std::span<const int> depth, int k) {
  if (depth.empty()) return expected_emitted(a, k);
  SPECDEC_CHECK(k >= 0 && k < static_cast<int>(depth.size()), "a node budget k in 0..", depth.size() - 1,
                " (proposal depths known), got ", k);
  SPECDEC_CHECK(depth[k] >= 0 && depth[k] <= k, "a proposal of ", k, " nodes at most ", k, " deep, got ", depth[k]);
  return expected_emitted(a, depth[k]);
}

double single_alpha_emitted(double alpha, int k) {
  SPECDEC_CHECK(alpha >= 0 && alpha <= 1 && k >= 0, "alpha in [0, 1] and k >= 0, got alpha = ", alpha, ", k = ", k);
  if (alpha == 1) return k + 1;
  return (1 - std::pow(alpha, k + 1)) / (1 - alpha);
}

PolicyDecision cost_model_choose(const CostTable& costs, const std::string& drafter, const PolicyStep& step,
                                 std::span<const double> a, int k_max) {
  const int top = std::max(0, std::min({k_max, step.k_limit, static_cast<int>(a.size())}));
  PolicyDecision d;
  double best = -1;
  for (int k = 0; k <= top; ++k) {
    const double e = expected_emitted(a, step.depth, k);
    const double us = costs.step_us(drafter, k, step.batch_size, step.context_len) +
                      (k > 0 ? costs.backlog_charge_us(drafter, step.backlog, e, step.remaining) : 0.0);
    const double tps = us > 0 ? e * 1e6 / us : INFINITY;
    d.expected_emitted.push_back(e);
    d.expected_tps.push_back(tps);
    if (tps > best) {  // strict: a tie keeps the smaller k
      best = tps;
      d.k = k;
    }
  }
  return d;
}

namespace {

// group[i]: the first member whose drafter is members[i]'s. The members of one drafter that draft (k > 0) draft
// as one group: computed once per plan, not in every score.
std::vector<int> drafter_groups(std::span<const PlanMember> members) {
  std::vector<int> group(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    size_t j = 0;
    while (members[j].drafter != members[i].drafter) ++j;
    group[i] = static_cast<int>(j);
  }
  return group;
}

BatchPlan score(const CostTable& costs, std::span<const PlanMember> members, int batch_size, std::vector<int> k,
                std::span<const int> group) {
  SPECDEC_CHECK(k.size() == members.size(), "a draft length per member, got ", k.size(), " for ", members.size());
  SPECDEC_CHECK(!members.empty(), "a batch of at least one sequence to plan");
  BatchPlan p;
  int n_tokens = 0;
  double context = 0;
  for (size_t i = 0; i < members.size(); ++i) {
    const PlanMember& m = members[i];
    SPECDEC_CHECK(k[i] >= m.k_lo && k[i] <= m.k_hi, "member ", i, ": k in ", m.k_lo, "..", m.k_hi, ", got ", k[i]);
    n_tokens += k[i] + 1;
    context += m.context_len;
    const double e = static_cast<int>(m.a.size()) >= k[i] ? expected_emitted(m.a, m.depth, k[i]) : 1.0;
    p.expected_emitted += e;
    if (k[i] > 0) p.step_us += costs.backlog_charge_us(m.drafter, m.backlog, e, m.remaining);
  }
  const int B = std::max(batch_size, static_cast<int>(members.size()));
  // Each drafting member at the per-sequence cost of its group's size (the members of its drafter that draft),
  // whatever B is.
  std::vector<int> drafting(members.size(), 0);
  for (size_t i = 0; i < members.size(); ++i)
    if (k[i] > 0) ++drafting[group[i]];
  for (size_t i = 0; i < members.size(); ++i)
    p.step_us += costs.drafter_us(members[i].drafter, k[i], k[i] > 0 ? drafting[group[i]] : 1);
  // A batch whose members are fewer than its B (others wait for room) still verifies >= 1 token each.
  n_tokens += B - static_cast<int>(members.size());
  const int C = static_cast<int>(std::lround(context / static_cast<double>(members.size())));
  p.step_us += costs.ragged_forward_us(n_tokens, B, C);
  p.k = std::move(k);
  return p;
}

}  // namespace

BatchPlan score_plan(const CostTable& costs, std::span<const PlanMember> members, int batch_size, std::vector<int> k) {
  return score(costs, members, batch_size, std::move(k), drafter_groups(members));
}

bool within_explore_cap(double tps, double best_tps, double cap) { return tps >= (1 - cap) * best_tps; }

BatchPlan plan_batch_explore(const CostTable& costs, std::span<const PlanMember> optimistic,
                             std::span<const PlanMember> mean, int batch_size, double cap) {
  SPECDEC_CHECK(optimistic.size() == mean.size(), "as many members planned with the means as with the bounds, got ",
                mean.size(), " and ", optimistic.size());
  BatchPlan bold = plan_batch(costs, optimistic, batch_size);
  const BatchPlan safe = plan_batch(costs, mean, batch_size);
  if (bold.k == safe.k) return safe;
  BatchPlan scored = score_plan(costs, mean, batch_size, bold.k);
  return within_explore_cap(scored.expected_tps(), safe.expected_tps(), cap) ? scored : safe;
}

BatchPlan plan_batch(const CostTable& costs, std::span<const PlanMember> members, int batch_size) {
  std::vector<int> k;
  int widest = 0;
  for (const PlanMember& m : members) {
    SPECDEC_CHECK(m.k_lo >= 0 && m.k_lo <= m.k_hi, "a member's range of k with 0 <= k_lo <= k_hi, got ", m.k_lo, "..",
                  m.k_hi);
    SPECDEC_CHECK(m.k_lo == m.k_hi || static_cast<int>(m.a.size()) >= m.k_hi, "a member planned up to k = ", m.k_hi,
                  " with as many acceptance estimates, got ", m.a.size());
    k.push_back(m.k_lo);
    widest = std::max(widest, m.k_hi);
  }
  const std::vector<int> group = drafter_groups(members);
  BatchPlan best = score(costs, members, batch_size, k, group);
  // Every uniform plan: the guarantee against any one fixed k.
  for (int u = 1; u <= widest; ++u) {
    std::vector<int> ku;
    for (const PlanMember& m : members) ku.push_back(std::clamp(u, m.k_lo, m.k_hi));
    BatchPlan p = score(costs, members, batch_size, std::move(ku), group);
    if (p.expected_tps() > best.expected_tps()) best = std::move(p);
  }
  // The greedy walk.
  for (;;) {
    int move = -1;
    BatchPlan next;
    for (size_t i = 0; i < members.size(); ++i) {
      if (k[i] >= members[i].k_hi) continue;
      std::vector<int> ki = k;
      ++ki[i];
      BatchPlan p = score(costs, members, batch_size, std::move(ki), group);
      if (move < 0 || p.expected_tps() > next.expected_tps()) {
        move = static_cast<int>(i);
        next = std::move(p);
      }
    }
    if (move < 0) break;
    k = next.k;
    if (next.expected_tps() > best.expected_tps()) best = std::move(next);
  }
  return best;
}

AcceptanceEstimator::AcceptanceEstimator(int k_max, double prior_a, double prior_n, double decay,
                                         std::shared_ptr<AcceptanceEstimator> pool, std::vector<double> priors)
    : prior_a_(prior_a),
      prior_n_(prior_n),
      decay_(decay),
      priors_(std::move(priors)),
      reached_(k_max, 0.0),
      accepted_(k_max, 0.0),
      pool_(std::move(pool)),
      mine_reached_(pool_ ? k_max : 0, 0.0),
      mine_accepted_(pool_ ? k_max : 0, 0.0) {
  SPECDEC_CHECK(k_max >= 0, "k_max >= 0, got ", k_max);
  SPECDEC_CHECK(prior_a >= 0 && prior_a <= 1, "prior_a in [0, 1], got ", prior_a);
  SPECDEC_CHECK(prior_n > 0, "prior_n > 0, got ", prior_n);
  SPECDEC_CHECK(decay > 0 && decay <= 1, "decay in (0, 1], got ", decay);
  for (size_t j = 0; j < priors_.size(); ++j)
    SPECDEC_CHECK(priors_[j] >= 0 && priors_[j] <= 1, "priors[", j, "] in [0, 1], got ", priors_[j]);
}

namespace {

// Position j (1-based) of a step that proposed n_proposed and had n_accepted accepted was reached when the first
// j - 1 were accepted and j was proposed; it was accepted when j <= n_accepted. Positions past the proposal say
// nothing (censored). Decays the counts by `decay` first.
void add_step(std::vector<double>& reached, std::vector<double>& accepted, double decay, int n_proposed,
              int n_accepted) {
  for (size_t j = 0; j < reached.size(); ++j) {
    reached[j] *= decay;
    accepted[j] *= decay;
  }
  const int n = std::min({n_proposed, n_accepted + 1, static_cast<int>(reached.size())});
  for (int j = 0; j < n; ++j) {
    reached[j] += 1;
    if (j < n_accepted) accepted[j] += 1;
  }
}

// Each position's posterior mean, its prior centred on `priors[j]` where given, else on the previous position's
// estimate (position 1's on prior_a).
std::vector<double> posterior(const std::vector<double>& reached, const std::vector<double>& accepted, double prior_a,
                              double prior_n, const std::vector<double>& priors) {
  std::vector<double> a(reached.size());
  double prior = prior_a;
  for (size_t j = 0; j < a.size(); ++j) {
    if (j < priors.size()) prior = priors[j];
    a[j] = (accepted[j] + prior_n * prior) / (reached[j] + prior_n);
    prior = a[j];  // a position never reached inherits the estimate of the one before it
  }
  return a;
}

}  // namespace

void AcceptanceEstimator::observe(int n_proposed, int n_accepted) {
  // The pool learns from drafted steps only: its sequences' AR steps say nothing about the drafter, and
  // decaying it on them would pull the run's estimate back to prior_a while its sequences sit in AR, so each
  // request joining after an AR stretch would again pay for drafting at prior_a (what the pool is for is
  // that it does not). This sequence's share of the pool is kept on the pool's clock, to be left out of its
  // prior (estimate()).
  if (pool_ && n_proposed > 0) {
    // The pool decays once more as it takes this step: the share catches up with the pool's clock, then that.
    add_step(mine_reached_, mine_accepted_, share_decay() * decay_, n_proposed, n_accepted);
    pool_->observe(n_proposed, n_accepted);
    pool_clock_ = pool_->n_observed_;
  }
  if (n_proposed > 0) ++n_observed_;
  // Every step decays the sequence's own evidence, AR steps included: an estimate that sent it to AR drifts
  // back to its prior, so the policy tries drafting again (exploration) if that prior pays.
  add_step(reached_, accepted_, decay_, n_proposed, n_accepted);
}

double AcceptanceEstimator::share_decay() const {
  return std::pow(decay_, static_cast<double>(pool_->n_observed_ - pool_clock_));
}

std::vector<double> AcceptanceEstimator::estimate() const {
  if (!pool_) return posterior(reached_, accepted_, prior_a_, prior_n_, priors_);
  // The prior: the run's estimate now, from the pool's evidence less this sequence's own share of it (its own
  // steps count once, in its own counts).
  const double f = share_decay();
  std::vector<double> r(pool_->reached_), acc(pool_->accepted_);
  for (size_t j = 0; j < r.size() && j < mine_reached_.size(); ++j) {
    r[j] = std::max(0.0, r[j] - f * mine_reached_[j]);
    acc[j] = std::clamp(acc[j] - f * mine_accepted_[j], 0.0, r[j]);
  }
  return posterior(reached_, accepted_, prior_a_, prior_n_, posterior(r, acc, prior_a_, prior_n_, priors_));
}

std::vector<double> AcceptanceEstimator::optimistic(double z) const {
  std::vector<double> a = estimate();
  if (z <= 0) return a;
  for (size_t j = 0; j < a.size(); ++j)
    a[j] = std::min(1.0, a[j] + z * std::sqrt(a[j] * (1 - a[j]) / (prior_n_ + reached_[j] + 1)));
  return a;
}

// ---- built-in policies -------------------------------------------------------------------------------------

namespace {

int clamp_k(int k, const PolicyStep& s) { return std::max(0, std::min(k, s.k_limit)); }

class FixedPolicy final : public Policy {
 public:
  explicit FixedPolicy(int k) : k_(k) {}
  PolicyDecision decide(const PolicyStep& s) override { return {.k = clamp_k(k_, s)}; }
  void observe(int, int) override {}

 private:
  int k_;
};

// vLLM-style: k by batch size, from the entry with the largest batch size <= B (the first entry below it).
class BatchTablePolicy final : public Policy {
 public:
  explicit BatchTablePolicy(std::vector<std::pair<int, int>> table) : table_(std::move(table)) {}
  PolicyDecision decide(const PolicyStep& s) override {
    int k = table_.front().second;
    for (const auto& [b, kb] : table_)
      if (b <= s.batch_size) k = kb;
    return {.k = clamp_k(k, s)};
  }
  void observe(int, int) override {}

 private:
  std::vector<std::pair<int, int>> table_;
};

// TensorRT-LLM-style switch-off: draft k while the acceptance rate over the last `window` drafting steps is
// >= threshold; below it, AR (k = 0) for `retry` steps, then draft again with a fresh window.
class AcceptThresholdPolicy final : public Policy {
 public:
  AcceptThresholdPolicy(int k, double threshold, int window, int retry)
      : k_(k), threshold_(threshold), window_(window), retry_(retry) {}
  PolicyDecision decide(const PolicyStep& s) override {
    if (!on_ && off_steps_ >= retry_) {
      on_ = true;
      hist_.clear();
    }
    return {.k = on_ ? clamp_k(k_, s) : 0};
  }
  void observe(int n_proposed, int n_accepted) override {
    if (!on_) {
      ++off_steps_;
      return;
    }
    if (n_proposed <= 0) return;  // nothing drafted (the drafter found nothing, or k_limit = 0): no evidence
    hist_.emplace_back(n_proposed, n_accepted);
    if (static_cast<int>(hist_.size()) > window_) hist_.pop_front();
    double p = 0, a = 0;
    for (const auto& [np, na] : hist_) {
      p += np;
      a += na;
    }
    if (a < threshold_ * p) {
      on_ = false;
      off_steps_ = 0;
    }
  }

 private:
  int k_;
  double threshold_;
  int window_, retry_;
  bool on_ = true;
  int off_steps_ = 0;
  std::deque<std::pair<int, int>> hist_;
};

// SGLang-style adaptive tiers: k is one of `tiers`; after `window` steps at a tier, the mean accepted
// length m decides: m >= up * k moves one tier up, m < down * k one tier down; every change starts a new
// window.
class AdaptivePolicy final : public Policy {
 public:
  AdaptivePolicy(std::vector<int> tiers, int start, int window, double up, double down)
      : tiers_(std::move(tiers)), tier_(start), window_(window), up_(up), down_(down) {}
  PolicyDecision decide(const PolicyStep& s) override { return {.k = clamp_k(tiers_[tier_], s)}; }
  void observe(int n_proposed, int n_accepted) override {
    (void)n_proposed;
    accepted_.push_back(n_accepted);
    if (static_cast<int>(accepted_.size()) < window_) return;
    double m = 0;
    for (int x : accepted_) m += x;
    m /= static_cast<double>(accepted_.size());
    const double k = tiers_[tier_];
    const int before = tier_;
    if (m >= up_ * k && tier_ + 1 < static_cast<int>(tiers_.size()))
      ++tier_;
    else if (m < down_ * k && tier_ > 0)
      --tier_;
    // A full window at an unchanged tier slides; a change starts over at the new tier.
    if (tier_ != before)
      accepted_.clear();
    else
      accepted_.erase(accepted_.begin());
  }

 private:
  std::vector<int> tiers_;
  int tier_;
  int window_;
  double up_, down_;
  std::vector<int> accepted_;
};

class CostModelPolicy final : public Policy {
 public:
  CostModelPolicy(const CostTable& costs, std::string drafter, int k_max, double prior_a, double prior_n, double decay,
                  double explore, double explore_cap, bool joint, std::shared_ptr<AcceptancePool> pool,
                  std::vector<double> priors)
      : costs_(costs),
        drafter_(std::move(drafter)),
        k_max_(k_max),
        explore_(explore),
        explore_cap_(explore_cap),
        joint_(joint),
        est_(k_max, prior_a, prior_n, decay, std::move(pool), std::move(priors)) {}
  // Chosen with the optimistic estimates (explore > 0) unless that choice, scored with the posterior means,
  // gives up more than explore_cap of the means' best; what it expects to emit, from the posterior means.
  PolicyDecision decide(const PolicyStep& s) override {
    PolicyDecision d = cost_model_choose(costs_, drafter_, s, est_.optimistic(explore_), k_max_);
    if (explore_ > 0) {
      const std::vector<double> mean = est_.estimate();
      const PolicyDecision m = cost_model_choose(costs_, drafter_, s, mean, k_max_);
      if (!within_explore_cap(m.expected_tps[d.k], m.expected_tps[m.k], explore_cap_)) d.k = m.k;
      d.expected_emitted = m.expected_emitted;
    }
    return d;
  }
  void observe(int n_proposed, int n_accepted) override { est_.observe(n_proposed, n_accepted); }
  bool joint_model(JointModel& out) const override {
    if (!joint_) return false;
    out = JointModel{.costs = &costs_,
                     .drafter = drafter_,
                     .a = est_.optimistic(explore_),
                     .k_max = k_max_,
                     .a_mean = explore_ > 0 ? est_.estimate() : std::vector<double>{},
                     .explore_cap = explore_cap_};
    return true;
  }

 private:
  const CostTable& costs_;
  std::string drafter_;
  int k_max_;
  double explore_, explore_cap_;
  bool joint_;
  AcceptanceEstimator est_;
};

// "1:5,4:3,16:1" -> {(1,5), (4,3), (16,1)}; batch sizes strictly increasing and >= 1, k >= 0.
std::vector<std::pair<int, int>> parse_batch_table(const std::string& text, const std::string& section) {
  std::vector<std::pair<int, int>> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const size_t colon = item.find(':');
    int b = 0, k = -1;
    bool ok = colon != std::string::npos;
    if (ok) {
      try {
        size_t pb = 0, pk = 0;
        const std::string bs = item.substr(0, colon), ks = item.substr(colon + 1);
        b = std::stoi(bs, &pb);
        k = std::stoi(ks, &pk);
        ok = pb == bs.size() && pk == ks.size();
      } catch (const std::exception&) {
        ok = false;
      }
    }
    SPECDEC_CHECK(ok && b >= 1 && k >= 0, "[", section, "] table = '", text,
                  "': expected BATCH:K entries (BATCH >= 1, K >= 0) separated by commas, got '", item, "'");
    SPECDEC_CHECK(out.empty() || b > out.back().first, "[", section, "] table = '", text,
                  "': expected strictly increasing batch sizes, got ", b, " after ",
                  out.empty() ? 0 : out.back().first);
    out.emplace_back(b, k);
  }
  SPECDEC_CHECK(!out.empty(), "[", section, "] table: expected BATCH:K entries such as 1:5,4:3,16:1, got '", text, "'");
  return out;
}

int checked_int(const DrafterOptions& o, const std::string& key, int def, int lo) {
  const int v = o.get_int(key, def);
  SPECDEC_CHECK(v >= lo, "[", o.section(), "] ", key, " = ", v, ": expected >= ", lo);
  return v;
}

double checked_unit(const DrafterOptions& o, const std::string& key, double def) {
  const double v = o.get_double(key, def);
  SPECDEC_CHECK(v >= 0 && v <= 1, "[", o.section(), "] ", key, " = ", v, ": expected a value in [0, 1]");
  return v;
}

}  // namespace

void register_builtin_policies(PolicyRegistry& r) {
  r.add({"fixed", "k draft tokens every step (k = 4)", [](const PolicyEnv&, const DrafterOptions& o) {
           return std::make_unique<FixedPolicy>(checked_int(o, "k", 4, 0));
         }});
  r.add({"batch_table", "vLLM-style k by batch size: table = B:k,... (the largest B <= the batch's)",
         [](const PolicyEnv&, const DrafterOptions& o) {
           const std::string t = o.get("table", "");
           SPECDEC_CHECK(!t.empty(), "[", o.section(), "] table: required, e.g. table=1:5,4:3,16:1");
           return std::make_unique<BatchTablePolicy>(parse_batch_table(t, o.section()));
         }});
  r.add({"accept_threshold",
         "TensorRT-LLM-style: k while the acceptance rate over `window` steps >= threshold, else AR for `retry` "
         "steps",
         [](const PolicyEnv&, const DrafterOptions& o) {
           const int k = checked_int(o, "k", 4, 1);
           const double threshold = checked_unit(o, "threshold", 0.5);
           const int window = checked_int(o, "window", 8, 1);
           const int retry = checked_int(o, "retry", 16, 1);
           return std::make_unique<AcceptThresholdPolicy>(k, threshold, window, retry);
         }});
  r.add({"adaptive", "SGLang-style tiers: k steps up/down the tiers from the mean accepted length over a window",
         [](const PolicyEnv&, const DrafterOptions& o) {
           std::vector<int> tiers;
           for (double x : o.get_doubles("tiers", {1, 2, 4, 8})) {
             SPECDEC_CHECK(x >= 1 && x == std::floor(x) && (tiers.empty() || x > tiers.back()), "[", o.section(),
                           "] tiers: expected strictly increasing integers >= 1, got ", x);
             tiers.push_back(static_cast<int>(x));
           }
           const int start = checked_int(o, "start", tiers[tiers.size() / 2], 1);
           const auto it = std::find(tiers.begin(), tiers.end(), start);
           SPECDEC_CHECK(it != tiers.end(), "[", o.section(), "] start = ", start, ": expected one of the tiers");
           const int window = checked_int(o, "window", 8, 1);
           const double up = checked_unit(o, "up", 0.8), down = checked_unit(o, "down", 0.4);
           SPECDEC_CHECK(down < up, "[", o.section(), "] down = ", down, ": expected below up = ", up);
           return std::make_unique<AdaptivePolicy>(tiers, static_cast<int>(it - tiers.begin()), window, up, down);
         }});
  r.add({"cost_model",
         "k in 0..k_max per sequence per step maximising expected tokens/s from the cost table: the batch's "
         "lengths jointly (plan = batch) or each sequence alone (plan = sequence)",
         [](const PolicyEnv& env, const DrafterOptions& o) {
           const int k_max = checked_int(o, "k_max", 8, 0);
           const double prior_a = checked_unit(o, "prior_a", 0.5);
           const double prior_n = o.get_double("prior_n", 4);
           SPECDEC_CHECK(prior_n > 0, "[", o.section(), "] prior_n = ", prior_n, ": expected > 0");
           const double decay = o.get_double("decay", 0.98);
           SPECDEC_CHECK(decay > 0 && decay <= 1, "[", o.section(), "] decay = ", decay,
                         ": expected a value in (0, 1]");
           const double explore = o.get_double("explore", 0);
           SPECDEC_CHECK(explore >= 0, "[", o.section(), "] explore = ", explore, ": expected >= 0");
           const double explore_cap = o.get_double("explore_cap", 1);
           SPECDEC_CHECK(explore_cap >= 0 && explore_cap <= 1, "[", o.section(), "] explore_cap = ", explore_cap,
                         ": expected a fraction in [0, 1] (of the step's expected tokens/s exploring may give up)");
           const std::string plan = o.get("plan", "batch");
           SPECDEC_CHECK(plan == "batch" || plan == "sequence", "[", o.section(), "] plan = ", plan,
                         ": expected batch (the batch's lengths jointly) or sequence (each alone)");
           const std::string pool = o.get("pool", "sequence");
           SPECDEC_CHECK(pool == "sequence" || pool == "run", "[", o.section(), "] pool = ", pool,
                         ": expected sequence (each sequence's own evidence) or run (shared by the run's sequences)");
           SPECDEC_CHECK(env.costs != nullptr, "[", o.section(),
                         "] needs a cost table (`specdec bench costs`); none was given");
           env.costs->validate("cost table (" + env.costs->source + ")");
           const int dk = env.costs->drafter_k_max(env.drafter);
           SPECDEC_CHECK(dk >= k_max, "[", o.section(), "] k_max = ", k_max, ": the cost table (", env.costs->source,
                         ") has drafter '", env.drafter, "' costs only up to k = ", dk);
           const std::string prior = o.get("prior", "prior_a");
           SPECDEC_CHECK(prior == "prior_a" || prior == "table", "[", o.section(), "] prior = ", prior,
                         ": expected prior_a (position 1 centred on prior_a) or table (the cost table's measured "
                         "acceptance of the drafter)");
           std::vector<double> priors;
           if (prior == "table") {
             const auto it = env.costs->acceptance.find(env.drafter);
             SPECDEC_CHECK(it != env.costs->acceptance.end(), "[", o.section(), "] prior = table: the cost table (",
                           env.costs->source, ") has no measured acceptance of drafter '", env.drafter,
                           "' (measure it: specdec bench costs --drafters ", env.drafter,
                           " --acceptance-prompts data/train/...)");
             priors = it->second;
             priors.resize(std::min(priors.size(), static_cast<size_t>(k_max)));
           }
           std::shared_ptr<AcceptancePool> shared;
           if (pool == "run" && env.shared) {
             if (!env.shared->pool)
               env.shared->pool = std::make_shared<AcceptancePool>(k_max, prior_a, prior_n, decay, nullptr, priors);
             shared = env.shared->pool;
             SPECDEC_CHECK(static_cast<int>(shared->estimate().size()) == k_max, "[", o.section(), "] k_max = ", k_max,
                           ": the run's pooled evidence covers ", shared->estimate().size(),
                           " positions (one k_max per run)");
           }
           return std::make_unique<CostModelPolicy>(*env.costs, env.drafter, k_max, prior_a, prior_n, decay, explore,
                                                    explore_cap, plan == "batch", std::move(shared), std::move(priors));
         }});
}

void PolicyRegistry::add(PolicyInfo info) {
  SPECDEC_CHECK(!info.name.empty() && info.factory, "a policy with a name and a factory");
  SPECDEC_CHECK(!by_name_.count(info.name), "policy '", info.name, "' is registered twice (names must be unique)");
  by_name_.emplace(info.name, std::move(info));
}

const PolicyInfo& PolicyRegistry::get(const std::string& name) const {
  const auto it = by_name_.find(name);
  if (it != by_name_.end()) return it->second;
  std::string known;
  for (const auto& [n, _] : by_name_) known += (known.empty() ? "" : ", ") + n;
  SPECDEC_FAIL("unknown policy '", name, "'; known policies: ", known);
}

std::vector<const PolicyInfo*> PolicyRegistry::list() const {
  std::vector<const PolicyInfo*> out;
  for (const auto& [_, info] : by_name_) out.push_back(&info);
  return out;
}

const PolicyRegistry& builtin_policies() {
  static const PolicyRegistry r = [] {
    PolicyRegistry x;
    register_builtin_policies(x);
    return x;
  }();
  return r;
}

PolicySpec parse_policy_spec(const std::string& spec) {
  std::stringstream ss(spec);
  PolicySpec out;
  SPECDEC_CHECK(static_cast<bool>(ss >> out.name), "a policy as 'NAME key=value ...', got '", spec, "'");
  std::string kv;
  while (ss >> kv) {
    const size_t eq = kv.find('=');
    SPECDEC_CHECK(eq != std::string::npos && eq > 0, "policy '", out.name, "': options as key=value, got '", kv, "'");
    const std::string key = kv.substr(0, eq);
    SPECDEC_CHECK(!out.options.count(key), "policy '", out.name, "': option '", key, "' given twice");
    out.options[key] = kv.substr(eq + 1);
  }
  return out;
}

std::unique_ptr<Policy> make_policy(const PolicyRegistry& registry, const PolicySpec& spec, const PolicyEnv& env) {
  const PolicyInfo& info = registry.get(spec.name);
  const DrafterOptions opts(spec.options, "policy " + spec.name);
  std::unique_ptr<Policy> p = info.factory(env, opts);
  opts.check_all_used();
  SPECDEC_CHECK(p != nullptr, "policy '", spec.name, "': its factory returned no policy");
  return p;
}

std::unique_ptr<Policy> make_policy(const std::string& spec, const PolicyEnv& env) {
  return make_policy(builtin_policies(), parse_policy_spec(spec), env);
}

}  // namespace specdec
