// The trainers' optimiser (drafters/train/optim.h): AdamW against updates computed by hand in double, the
// warm-up + cosine schedule at its landmarks, global-norm clipping, and the state checks of a resume.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>
#include <vector>

#include "drafters/train/optim.h"
#include "tests/support/errors.h"

using namespace specdec;
using namespace specdec::train;

TEST_CASE("AdamW: two steps match the update computed by hand, decay only on decay spans") {
  std::vector<float> w = {0.5f, -1.0f, 2.0f}, gw(3), b = {0.25f}, gb(1);
  AdamWConfig cfg;
  cfg.beta1 = 0.8f;
  cfg.beta2 = 0.9f;
  cfg.eps = 1e-6f;
  cfg.weight_decay = 0.1f;
  AdamW opt({{w.data(), gw.data(), 3, true}, {b.data(), gb.data(), 1, false}}, cfg);

  // Reference in double: value -= lr*wd*value (decay spans), then the bias-corrected Adam step.
  std::vector<double> rw = {0.5, -1.0, 2.0}, rb = {0.25};
  std::vector<double> mw(3, 0), vw(3, 0), mb(1, 0), vb(1, 0);
  const std::vector<std::vector<float>> grads_w = {{0.1f, -0.2f, 0.3f}, {-0.05f, 0.4f, 0.0f}};
  const std::vector<float> grads_b = {1.0f, -2.0f};
  const float lrs[2] = {0.01f, 0.02f};
  for (int t = 1; t <= 2; ++t) {
    gw = grads_w[t - 1];
    gb[0] = grads_b[t - 1];
    opt.step(lrs[t - 1]);
    const double lr = lrs[t - 1];
    auto ref = [&](double& p, double& m, double& v, double g, bool decay) {
      if (decay) p -= lr * 0.1 * p;
      m = 0.8 * m + 0.2 * g;
      v = 0.9 * v + 0.1 * g * g;
      const double mh = m / (1 - std::pow(0.8, t)), vh = v / (1 - std::pow(0.9, t));
      p -= lr * mh / (std::sqrt(vh) + 1e-6);
    };
    for (int i = 0; i < 3; ++i) ref(rw[i], mw[i], vw[i], grads_w[t - 1][i], true);
    ref(rb[0], mb[0], vb[0], grads_b[t - 1], false);
    for (int i = 0; i < 3; ++i) CHECK(w[i] == Approx(rw[i]).epsilon(1e-6).margin(1e-7));
    CHECK(b[0] == Approx(rb[0]).epsilon(1e-6));
  }
  CHECK(opt.state().step == 2);
}

TEST_CASE("AdamW: zero_grad, load_state round trip and its shape checks") {
  std::vector<float> w = {1, 2}, g = {3, 4};
  AdamW opt({{w.data(), g.data(), 2, true}}, {});
  opt.step(0.1f);
  const AdamWState saved = opt.state();
  opt.zero_grad();
  CHECK(g == std::vector<float>{0, 0});

  std::vector<float> w2 = {1, 2}, g2(2);
  AdamW other({{w2.data(), g2.data(), 2, true}}, {});
  other.load_state(saved);
  CHECK(other.state().step == 1);
  CHECK(other.state().m == saved.m);
  CHECK(other.state().v == saved.v);

  AdamWState bad = saved;
  bad.m[0].push_back(0.f);
  CHECK_THAT(test::error_of([&] { other.load_state(bad); }), Catch::Contains("parameter tensor 0 with 2 values"));
  bad = saved;
  bad.v.clear();
  CHECK_THAT(test::error_of([&] { other.load_state(bad); }), Catch::Contains("for 1 parameter tensors"));
}

TEST_CASE("LR schedule: linear warm-up to the peak, cosine to the floor at the last step") {
  const LrSchedule s{1e-3f, 1e-4f, 10, 110};
  CHECK(s.at(0) == Approx(1e-4));  // peak * 1/10
  CHECK(s.at(4) == Approx(5e-4));
  CHECK(s.at(9) == Approx(1e-3));  // end of warm-up: the peak
  CHECK(s.at(10) == Approx(1e-4 + 0.9e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 0.01))));
  CHECK(s.at(59) == Approx(1e-4 + 0.9e-3 * 0.5));  // half way through the decay: the mean of peak and floor
  CHECK(s.at(109) == Approx(1e-4));                // last step: the floor
  CHECK(s.at(500) == Approx(1e-4));                // past the end: stays there
  for (int i = 10; i < 109; ++i) CHECK(s.at(i + 1) <= s.at(i));

  const LrSchedule no_warmup{2e-3f, 0.f, 0, 4};
  CHECK(no_warmup.at(0) == Approx(2e-3 * 0.5 * (1 + std::cos(std::numbers::pi * 0.25))));
  CHECK(no_warmup.at(3) == Approx(0.0).margin(1e-12));
}

TEST_CASE("Gradient clipping: global norm over every span, scaled to the limit only above it") {
  std::vector<float> a = {0, 0}, ga = {3, 0}, b = {0}, gb = {4};
  std::vector<ParamSpan> p = {{a.data(), ga.data(), 2, true}, {b.data(), gb.data(), 1, false}};
  CHECK(global_grad_norm(p) == Approx(5.0));
  CHECK(clip_grad_norm(p, 10.f) == Approx(5.0));
  CHECK(ga[0] == 3.f);
  CHECK(clip_grad_norm(p, 1.f) == Approx(5.0));
  CHECK(ga[0] == Approx(0.6));
  CHECK(gb[0] == Approx(0.8));
  CHECK(global_grad_norm(p) == Approx(1.0));
  CHECK(clip_grad_norm(p, 0.f) == Approx(1.0));  // disabled
  CHECK(gb[0] == Approx(0.8));
}
