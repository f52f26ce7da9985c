// tests/train: trainer determinism and bit-for-bit resume, learning on a tiny problem, the
// sampler runner, the policy dispatch (the `ambiseg` tool is tested in tests/apps).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include "ambiseg/io/image.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg/train/all.hpp"
#include "train/device_trainer_checks.hpp"

using namespace ambiseg;
using namespace ambiseg::train;

namespace {

using device_trainer_checks::tiny_config;

data::case_set tiny_data(std::int64_t count = 6) { return device_trainer_checks::cases(count); }

// The images of the first k tiny cases, [k, 1, 16, 16].
tensor<float> first_images(const data::case_set& data, std::int64_t k) {
  tensor<float> images(shape{k, 1, 16, 16});
  for (std::int64_t i = 0; i < k; ++i)
    std::copy(data[static_cast<std::size_t>(i)].image.data(), data[static_cast<std::size_t>(i)].image.data() + 256,
              images.data() + i * 256);
  return images;
}

bool same_bits(tensor_view<const float> a, tensor_view<const float> b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0;
}

std::filesystem::path temp_dir(const std::string& name) {
  const auto p = std::filesystem::path(AMBISEG_BINARY_DIR) / "test_train_tmp" / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

double clipped_cosine_log_snr(double t, double b) {
  // SPEC §2 written out: λ_b = −2 log tan(πt/2) + 2 log b, γ_b = sigmoid(λ_b) ∈ [0, 1] with
  // γ_b(0) = 1, γ_b(1) = 0, so k = sigmoid(20) − sigmoid(−20), k0 = sigmoid(−20).
  const double pi = 3.14159265358979323846;
  const double lambda_b = -2.0 * std::log(std::tan(pi * t / 2)) + 2.0 * std::log(b);
  const double sig = [](double x) { return 1.0 / (1.0 + std::exp(-x)); }(lambda_b);
  const double s20 = 1.0 / (1.0 + std::exp(-20.0)), sm20 = 1.0 / (1.0 + std::exp(20.0));
  const double gamma = (s20 - sm20) * sig + sm20;
  return std::log(gamma / (1.0 - gamma));
}

}  // namespace

TEST_CASE("trainer: the same seed gives the same weights, another seed others", "[train]") {
  const auto data = tiny_data();
  trainer<data::case_set> a(tiny_config(3), data), b(tiny_config(3), data), c(tiny_config(4), data);
  for (int i = 0; i < 3; ++i) {
    const auto ra = a.step(), rb = b.step();
    REQUIRE(ra.loss == rb.loss);
    REQUIRE(ra.grad_norm == rb.grad_norm);
    c.step();
  }
  CHECK(a.steps_done() == 3);
  CHECK(same_bits(a.model().parameters().flat_values(), b.model().parameters().flat_values()));
  CHECK_FALSE(same_bits(a.model().parameters().flat_values(), c.model().parameters().flat_values()));
}

TEST_CASE("trainer: a resumed run continues bit for bit (weights, moments, EMA)", "[train]") {
  const auto data = tiny_data();
  trainer_config config = device_trainer_checks::with_prediction(tiny_config(5), "v");
  config.ema_decay = 0.9;
  const auto dir = temp_dir("resume");
  trainer<data::case_set> straight(config, data);
  std::vector<double> straight_losses;
  for (int i = 0; i < 5; ++i) straight_losses.push_back(straight.step().loss);

  {
    trainer<data::case_set> killed(config, data);
    for (int i = 0; i < 2; ++i) killed.step();
    killed.save(dir / "ckpt.safetensors");
    killed.step();  // work after the checkpoint is lost with the process
  }
  trainer<data::case_set> resumed(config, data);
  resumed.resume(dir / "ckpt.safetensors");
  REQUIRE(resumed.steps_done() == 2);
  for (int i = 2; i < 5; ++i) CHECK(resumed.step().loss == straight_losses[static_cast<std::size_t>(i)]);
  CHECK(same_bits(resumed.model().parameters().flat_values(), straight.model().parameters().flat_values()));
  CHECK(same_bits(resumed.optimizer().exp_avg(), straight.optimizer().exp_avg()));
  CHECK(same_bits(resumed.optimizer().exp_avg_sq(), straight.optimizer().exp_avg_sq()));
  CHECK(same_bits(resumed.ema()->shadow(), straight.ema()->shadow()));

  const trainer_config other =
      device_trainer_checks::with_policy(config, [](models::policy_choice& p) { p.weighting = "uniform"; });
  trainer<data::case_set> mismatched(other, data);
  CHECK_THROWS_AS(mismatched.resume(dir / "ckpt.safetensors"), value_error);
}

TEST_CASE("trainer: the loss falls on a tiny overfit problem", "[train]") {
  const auto data = tiny_data(1);
  // A uniform weighting keeps the per-step loss comparable across t.
  trainer_config config =
      device_trainer_checks::with_policy(tiny_config(7), [](models::policy_choice& p) { p.weighting = "uniform"; });
  config.batch_size = 4;
  config.lr = {3e-3, 5, 80, 0};
  trainer<data::case_set> t(config, data);
  double first = 0, last = 0;
  for (int i = 0; i < 80; ++i) {
    const double loss = t.step().loss;
    if (i < 10) first += loss / 10;
    if (i >= 70) last += loss / 10;
  }
  INFO("mean loss of the first 10 steps " << first << ", of the last 10 " << last);
  CHECK(last < 0.5 * first);
}

TEST_CASE("mask_statistics: mean and variance over the samples", "[train]") {
  // 1 image, 4 samples, 1x2 pixels: pixel 0 marked by 1 of 4, pixel 1 by all 4.
  auto masks = tensor<std::uint8_t>::from(shape{1, 4, 1, 2}, {1, 1, 0, 1, 0, 1, 0, 1});
  tensor<float> mean, variance;
  mask_statistics(masks.cview(), mean, variance);
  REQUIRE(mean.shape() == shape{1, 1, 2});
  CHECK(mean[0] == Approx(0.25));
  CHECK(mean[1] == Approx(1.0));
  CHECK(variance[0] == Approx(0.1875));  // 0.25 · 0.75
  CHECK(variance[1] == Approx(0.0));
}

TEST_CASE("sample_masks: shapes, masks from x0, reproducible from init noise, batching", "[train]") {
  const auto data = tiny_data();
  trainer<data::case_set> t(tiny_config(9), data);
  for (int i = 0; i < 2; ++i) t.step();
  const tensor<float> images = first_images(data, 3);
  rng noise_rng(1);
  tensor<float> init(shape{3, 4, 16, 16});
  for (float& v : init) v = static_cast<float>(noise_rng.normal());

  sample_options opts{4, 3, "ddim", false, 64};
  rng g1(100), g2(200);
  const auto a = sample_masks(t.model(), images.cview(), opts, g1, init.cview());
  opts.max_chains = 4;  // one image per network batch
  const auto b = sample_masks(t.model(), images.cview(), opts, g2, init.cview());
  REQUIRE(a.x0_hat.shape() == shape{3, 4, 16, 16});
  REQUIRE(a.masks.shape() == shape{3, 4, 16, 16});
  REQUIRE(a.mean.shape() == shape{3, 16, 16});
  for (std::int64_t i = 0; i < a.x0_hat.numel(); ++i) {
    REQUIRE(a.masks[i] == (a.x0_hat[i] > 0.0f ? 1 : 0));
    REQUIRE(a.x0_hat[i] == Approx(b.x0_hat[i]).margin(1e-4));
  }
  for (std::int64_t i = 0; i < a.mean.numel(); ++i) {
    const std::int64_t k = i / 256, p = i % 256;
    int count = 0;
    for (int j = 0; j < 4; ++j) count += a.masks[(k * 4 + j) * 256 + p];
    REQUIRE(a.mean[i] == Approx(count / 4.0));
    REQUIRE(a.variance[i] == Approx(count / 4.0 * (1 - count / 4.0)));
  }
  // DDPM draws from the rng: two seeds differ.
  opts.sampler = "ddpm_large";
  rng g3(1), g4(2);
  const auto c = sample_masks(t.model(), images.cview(), opts, g3);
  const auto d = sample_masks(t.model(), images.cview(), opts, g4);
  CHECK_FALSE(same_bits(c.x0_hat.cview(), d.x0_hat.cview()));
  opts.max_chains = 3;
  rng g5(1);
  CHECK_THROWS_AS(sample_masks(t.model(), images.cview(), opts, g5), value_error);
}

TEST_CASE("policy dispatch: every run-time name reaches its compile-time policy", "[train]") {
  for (const auto& s : models::schedule_names())
    for (const auto& p : models::prediction_names())
      for (const auto& w : models::weighting_names()) {
        models::policy_choice c{s, 0.1, p, w, 0.0, true};
        const auto d = models::make_diffusion<cpu>(c);
        const std::string name = d->describe();
        CHECK(name.find("input_scaled<" + s + ">") != std::string::npos);
        CHECK(name.find(", " + p + "_prediction") != std::string::npos);
        CHECK(name.find(w == "trunc_snr" ? "truncated_snr" : w) != std::string::npos);
      }
  const double t = 0.3, lambda = clipped_cosine_log_snr(t, 0.1), snr = std::exp(lambda);
  CHECK(models::make_diffusion<cpu>({"cosine", 0.1, "x", "snr", 0.0, true})->log_snr(t) == Approx(lambda).epsilon(1e-10));
  CHECK(models::make_diffusion<cpu>({"cosine", 0.1, "x", "snr", 0.0, true})->weight(t) == Approx(snr).epsilon(1e-10));
  CHECK(models::make_diffusion<cpu>({"cosine", 0.1, "x", "trunc_snr", 0.0, true})->weight(t) == Approx(std::max(snr, 1.0)));
  CHECK(models::make_diffusion<cpu>({"cosine", 0.1, "x", "snr_plus_one", 0.0, true})->weight(t) == Approx(snr + 1.0));
  CHECK(models::make_diffusion<cpu>({"cosine", 0.1, "x", "uniform", 0.0, true})->weight(t) == 1.0);
  CHECK(models::make_diffusion<cpu>({"cosine", 0.1, "x", "sigmoid", 2.0, true})->weight(t) ==
        Approx(1.0 / (1.0 + std::exp(-(lambda + 2.0)))));
  CHECK_THROWS_AS(models::make_diffusion<cpu>({"cosine", 0.1, "z", "snr", 0.0, true}), value_error);
  CHECK_THROWS_AS(models::make_diffusion<cpu>({"cosine", 0.0, "x", "snr", 0.0, true}), value_error);
  CHECK(models::parse_sampler("ddpm") == models::sampler_kind::ddpm_large);
  CHECK(models::parse_sampler("ddim") == models::sampler_kind::ddim);
  CHECK_THROWS_AS(models::parse_sampler("euler"), value_error);
}

TEST_CASE("trainer_config: JSON round trip; x-prediction alone gets the tanh head", "[train]") {
  trainer_config c = tiny_config();
  c.model = models::diffusion_spec({nn::unet_config::tiny(), {"linear", 0.5, "eps", "sigmoid", -1.5, false}});
  c.ema_decay = 0.99;
  const auto back = nlohmann::json(c).get<trainer_config>();
  CHECK(nlohmann::json(back) == nlohmann::json(c));
  auto d = c.model.config.get<models::diffusion_segmenter_config>();
  CHECK_FALSE(d.effective_net(1).final_tanh);
  d.policy.prediction = "x";
  CHECK(d.effective_net(1).final_tanh);
  CHECK(d.effective_net(data::encoded_channels(data::image_encoding::imagenet_rgb)).in_channels == 4);
  const nlohmann::json bad{{"net", 1}};
  CHECK_THROWS_AS(bad.get<trainer_config>(), format_error);
  // Before models had kinds, "net" and "policy" sat at the top level: read as a diffusion model.
  nlohmann::json v1 = nlohmann::json(c);
  v1.erase("model");
  v1["net"] = nlohmann::json(nn::unet_config::tiny());
  v1["policy"] = {{"prediction", "v"}};
  const auto old = v1.get<trainer_config>();
  CHECK(old.model.kind == "diffusion");
  CHECK(old.model.config.get<models::diffusion_segmenter_config>().policy.prediction == "v");
  // An unknown kind is the registry's to refuse, naming what it knows.
  trainer_config unknown = c;
  unknown.model.kind = "no_such_model";
  const auto data = tiny_data(2);
  CHECK_THROWS_WITH((trainer<data::case_set>(unknown, data)),
                    Catch::Contains("unknown model 'no_such_model'") && Catch::Contains("diffusion"));
}

// Progressive distillation's acceptance test: a 1-step student learns its tiny teacher's
// 2-step DDIM map (x̂0 of its training images from fixed noise it never drew). The student
// starts as the teacher, whose own 1-step map is e0 = 0.046 RMS from its 2-step one; after
// 300 steps the student's gap must be below 0.6·e0 and 0.03 RMS (x̂0 ∈ [−1, 1] under the
// tanh head; measured 0.023 — the 8-channel network's fit, not the rounding, limits it).
TEST_CASE("distillation: a 1-step student reproduces its tiny teacher's 2-step map on fixed noise",
          "[train][distill]") {
  const auto data = tiny_data(4);
  // Input scale 1: the teacher's midpoint x_t′ carries the mask, so its two steps differ
  // from one (with the paper's b = 0.1 the SNR at t = 1/2 is 0.01 and they nearly agree).
  trainer_config teacher_config =
      device_trainer_checks::with_policy(tiny_config(21), [](models::policy_choice& p) { p.input_scale = 1.0; });
  teacher_config.batch_size = 4;
  teacher_config.lr = {3e-3, 5, 60, 20};
  trainer<data::case_set> teacher(teacher_config, data);
  for (int i = 0; i < 60; ++i) teacher.step();

  trainer_config student_config = teacher_config;
  student_config.model = models::distilled_diffusion_spec(
      teacher_config.model.config.get<models::diffusion_segmenter_config>(), 1, "uniform_t");
  student_config.lr = {2e-3, 10, 300, 290};
  trainer<data::case_set> student(student_config, data);
  student.initialise([&](models::any_model<cpu>& m) {
    const auto src = teacher.model().parameters().flat_values();
    std::copy(src.data(), src.data() + src.numel(), m.parameters().flat_values().data());
    std::copy(src.data(), src.data() + src.numel(), m.buffers()->flat_values().data());
  });

  const tensor<float> images = first_images(data, 4);
  rng noise_rng(4);
  tensor<float> init(shape{4, 4, 16, 16});
  for (float& v : init) v = static_cast<float>(noise_rng.normal());
  auto x0_map = [&](models::any_model<cpu>& m, int steps) {
    rng g(0);
    return sample_masks(m, images.cview(), {4, steps, "ddim", false, 64}, g, init.cview()).x0_hat;
  };
  const tensor<float> target = x0_map(teacher.model(), 2);
  auto rms_gap = [&] {
    const tensor<float> got = x0_map(student.model(), 10);  // a distilled model takes its own 1 step
    double sum = 0;
    for (std::int64_t i = 0; i < got.numel(); ++i) sum += (got[i] - target[i]) * (got[i] - target[i]);
    return std::sqrt(sum / static_cast<double>(got.numel()));
  };
  CHECK(student.model().network_passes({}) == 1);
  const double before = rms_gap();
  for (int i = 0; i < 300; ++i) student.step();
  const double after = rms_gap();
  INFO("RMS gap to the teacher's 2-step x0: " << before << " before, " << after << " after 300 steps");
  CHECK(before > 0.04);
  CHECK(after < 0.6 * before);
  CHECK(after < 0.03);
}
