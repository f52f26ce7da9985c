// The UNet's structure (names, shapes, count, init), its memory plan, and a finite-
// difference check of every parameter tensor's gradient.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ambiseg/core/parallel.hpp"
#include "ambiseg/nn/all.hpp"

using namespace ambiseg;
using nn::pass;
using nn::unet;
using nn::unet_config;

namespace {

struct key_line {
  std::string name;
  std::vector<std::int64_t> dims;
};

std::vector<key_line> read_reference_keys(const std::filesystem::path& path) {
  std::vector<key_line> keys;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto tab = line.find('\t');
    key_line k{line.substr(0, tab), {}};
    std::stringstream dims(line.substr(tab + 1));
    std::string d;
    while (std::getline(dims, d, 'x')) k.dims.push_back(std::stoll(d));
    keys.push_back(k);
  }
  return keys;
}

template <class T>
tensor<T> random_tensor(shape s, rng& gen, double scale = 1.0) {
  tensor<T> t(s);
  for (auto& v : t) v = static_cast<T>(scale * gen.normal());
  return t;
}

// Gives the reference's zero-initialised convs and the GroupNorm affine parameters random
// values, so that every gradient is informative.
template <class T>
void randomise_all(unet<T>& net, rng& gen) {
  auto& p = net.parameters();
  for (std::size_t i = 0; i < p.size(); ++i) {
    auto v = p.value(i);
    bool all_zero = true, all_one = true;
    for (auto x : v) {
      all_zero = all_zero && x == T(0);
      all_one = all_one && x == T(1);
    }
    if (all_one)
      for (auto& x : v) x = static_cast<T>(1 + 0.1 * gen.normal());
    else if (all_zero)
      for (auto& x : v) x = static_cast<T>(0.2 * gen.normal());
  }
}

}  // namespace

TEST_CASE("unet: the default config has the reference's 6,891,905 parameters", "[nn]") {
  unet<float> net(unet_config::reference());
  CHECK(net.parameters().count() == 6891905);
}

TEST_CASE("unet: parameter names and shapes equal the reference state_dict, in order", "[nn]") {
  const std::filesystem::path path =
      std::filesystem::path(AMBISEG_SHARED_DIR) / "reference" / "unet_state_dict_keys.txt";
  if (!std::filesystem::exists(path)) {
    WARN("skipped: " << path << " is absent");
    return;
  }
  const auto keys = read_reference_keys(path);
  unet<float> net(unet_config::reference());
  const auto& entries = net.parameters().entries();
  REQUIRE(entries.size() == keys.size());
  for (std::size_t i = 0; i < keys.size(); ++i) {
    INFO("parameter " << i << ": " << entries[i].name << " vs " << keys[i].name);
    CHECK(entries[i].name == keys[i].name);
    std::vector<std::int64_t> dims(entries[i].shape.begin(), entries[i].shape.end());
    CHECK(dims == keys[i].dims);
  }
}

TEST_CASE("unet: initialisation follows the reference", "[nn]") {
  unet<float> net(unet_config::tiny(), 7);
  auto& p = net.parameters();
  auto all_equal = [](auto v, float x) {
    for (auto e : v)
      if (e != x) return false;
    return true;
  };
  for (const auto& e : p.entries()) {
    INFO(e.name);
    auto v = p.value(e.name);
    const bool zero_module = e.name.rfind("out.3", 0) == 0 ||
                             e.name.find("out_layers.3") != std::string::npos ||
                             e.name.find("proj_out") != std::string::npos;
    const bool is_norm = e.shape.rank() == 1 &&
                         (e.name.find("norm") != std::string::npos ||
                          e.name.find("in_layers.0") != std::string::npos ||
                          e.name.find("out_layers.0") != std::string::npos ||
                          e.name.rfind("out.1", 0) == 0);
    if (zero_module) {
      CHECK(all_equal(v, 0.f));
    } else if (is_norm) {
      CHECK(all_equal(v, e.name.ends_with("weight") ? 1.f : 0.f));
    } else {
      // U(−1/√fan_in, 1/√fan_in), fan_in from the weight of the same layer
      const std::string weight = e.name.substr(0, e.name.rfind('.')) + ".weight";
      const auto ws = p.info(p.index_of(weight)).shape;
      const double bound = 1.0 / std::sqrt(static_cast<double>(ws.numel() / ws[0]));
      double lo = 1, hi = -1, sum = 0;
      for (auto x : v) {
        lo = std::min<double>(lo, x);
        hi = std::max<double>(hi, x);
        sum += x;
      }
      CHECK(lo >= -bound);
      CHECK(hi <= bound);
      if (v.numel() >= 256) {  // spread over the interval, centred
        CHECK(hi - lo > 1.8 * bound);
        CHECK(std::abs(sum / v.numel()) < 0.15 * bound);
      }
    }
  }
  // deterministic from the seed
  unet<float> same(unet_config::tiny(), 7), other(unet_config::tiny(), 8);
  const auto a = p.flat_values(), b = same.parameters().flat_values(),
             c = other.parameters().flat_values();
  CHECK(std::equal(a.begin(), a.end(), b.begin()));
  CHECK_FALSE(std::equal(a.begin(), a.end(), c.begin()));
}

TEST_CASE("unet_config: JSON round trip, presets and validation", "[nn]") {
  for (const char* name : {"reference", "paper", "small", "tiny"}) {
    const auto c = unet_config::preset(name);
    c.validate();
    const nlohmann::json j = c;
    CHECK(j.get<unet_config>() == c);
  }
  CHECK(unet_config::paper().num_heads == 1);
  CHECK_THROWS_AS(unet_config::preset("huge"), value_error);
  nlohmann::json j = unet_config::reference();
  j["num_heads"] = 5;  // 128 channels do not split into 5 heads
  CHECK_THROWS_AS(j.get<unet_config>(), format_error);
  j = unet_config::reference();
  j["num_res_blocks"] = {1, 2};
  CHECK_THROWS_AS(j.get<unet_config>(), format_error);
  j = unet_config::reference();
  j["model_channels"] = "wide";
  CHECK_THROWS_AS(j.get<unet_config>(), format_error);
  // groups rule
  CHECK(unet_config::groups_for(96) == 32);
  CHECK(unet_config::groups_for(48) == 48);
}

TEST_CASE("unet: bad inputs throw", "[nn]") {
  unet<float> net(unet_config::tiny());
  rng gen(1);
  auto x = random_tensor<float>(shape{1, 1, 8, 8}, gen);
  auto img = random_tensor<float>(shape{1, 3, 8, 8}, gen);
  auto t = tensor<float>::from(shape{1}, {0.5f});
  auto odd = random_tensor<float>(shape{1, 1, 7, 7}, gen);
  auto odd_img = random_tensor<float>(shape{1, 3, 7, 7}, gen);
  auto img2 = random_tensor<float>(shape{1, 2, 8, 8}, gen);
  auto t2 = tensor<float>::from(shape{2}, {0.5f, 0.1f});
  auto t_nan = tensor<float>::from(shape{1}, {std::nanf("")});
  CHECK_THROWS_AS(net.forward(odd, odd_img, t), shape_error);
  CHECK_THROWS_AS(net.forward(x, img2, t), shape_error);
  CHECK_THROWS_AS(net.forward(x, img, t2), shape_error);
  CHECK_THROWS_AS(net.forward(x, img, t_nan), value_error);
  auto df = random_tensor<float>(shape{1, 1, 8, 8}, gen);
  CHECK_THROWS_AS(net.backward(df), error);  // no training forward yet
  net.forward(x, img, t, pass::training);
  auto df_bad = random_tensor<float>(shape{1, 1, 4, 4}, gen);
  CHECK_THROWS_AS(net.backward(df_bad), shape_error);
}

TEST_CASE("unet: inference and training forwards agree; steady steps allocate nothing", "[nn]") {
  unet<float> net(unet_config::tiny(), 3);
  rng gen(5);
  randomise_all(net, gen);
  auto x = random_tensor<float>(shape{3, 1, 16, 16}, gen);
  auto img = random_tensor<float>(shape{3, 3, 16, 16}, gen);
  auto t = tensor<float>::from(shape{3}, {0.1f, 0.5f, 0.9f});
  auto r = random_tensor<float>(shape{3, 1, 16, 16}, gen);

  const auto f_inf = net.forward(x, img, t, pass::inference);
  tensor<float> inference(f_inf.shape());
  inference.copy_from(f_inf);
  const auto inference_bytes = net.activation_bytes();

  const auto f_train = net.forward(x, img, t, pass::training);
  for (std::int64_t i = 0; i < inference.numel(); ++i) REQUIRE(f_train[i] == inference[i]);
  CHECK(net.activation_bytes() > 2 * inference_bytes);  // training keeps much more
  net.backward(r);

  // warm: further training steps and inference (at this or a smaller batch) allocate nothing
  const auto before = net.allocations();
  for (int step = 0; step < 2; ++step) {
    net.parameters().zero_grad();
    net.forward(x, img, t, pass::training);
    net.backward(r);
  }
  net.forward(x, img, t, pass::inference);
  CHECK(net.allocations() == before);
  auto x1 = random_tensor<float>(shape{1, 1, 16, 16}, gen);
  auto img1 = random_tensor<float>(shape{1, 3, 16, 16}, gen);
  auto t1 = tensor<float>::from(shape{1}, {0.3f});
  net.forward(x1, img1, t1, pass::training);
  net.backward(x1);
  CHECK(net.allocations() == before);
}

TEST_CASE("unet: finite differences confirm every parameter tensor's gradient", "[nn][slow]") {
  // tiny's structure (skip convs, attention with 2 heads, down/up sampling) at C = 32, so
  // level 1 has 64 channels and GroupNorm 2 channels per group: with one channel per group
  // the time-embedding bias is cancelled by the next GroupNorm and its gradient is zero.
  unet_config c = unet_config::tiny();
  c.model_channels = 32;
  // Hundreds of forwards at 8×8: threads only add overhead (and the CPU is shared).
  struct one_thread {
    int saved = num_threads();
    one_thread() { set_num_threads(1); }
    ~one_thread() { set_num_threads(saved); }
  } single;
  unet<double> net(c, 11);
  rng gen(99);
  randomise_all(net, gen);
  const std::int64_t n = 2, h = 8, w = 8;
  auto x = random_tensor<double>(shape{n, 1, h, w}, gen);
  auto img = random_tensor<double>(shape{n, 3, h, w}, gen);
  auto t = tensor<double>::from(shape{n}, {0.25, 0.8});
  auto r = random_tensor<double>(shape{n, 1, h, w}, gen);

  auto loss = [&] {
    const auto f = net.forward(x, img, t, pass::inference);
    double s = 0;
    for (std::int64_t i = 0; i < f.numel(); ++i) s += r[i] * f[i];
    return s;
  };
  auto& p = net.parameters();
  p.zero_grad();
  net.forward(x, img, t, pass::training);
  net.backward(r);

  const double eps = 1e-5;
  int checked = 0;
  for (std::size_t i = 0; i < p.size(); ++i) {
    auto v = p.value(i);
    auto g = p.grad(i);
    for (int k = 0; k < 3; ++k) {
      const std::int64_t j = static_cast<std::int64_t>(gen.below(v.numel()));
      const double saved = v[j];
      v[j] = saved + eps;
      const double up = loss();
      v[j] = saved - eps;
      const double down = loss();
      v[j] = saved;
      const double numeric = (up - down) / (2 * eps);
      INFO(p.info(i).name << "[" << j << "]: analytic " << g[j] << ", numeric " << numeric);
      CHECK(g[j] == Approx(numeric).epsilon(1e-5).margin(1e-8));
      ++checked;
    }
  }
  CHECK(checked == 3 * static_cast<int>(p.size()));
}

TEST_CASE("unet: the reference network runs at 128x128 and gives finite values", "[nn][slow]") {
  unet<float> net(unet_config::reference(), 1);
  rng gen(2);
  randomise_all(net, gen);
  auto x = random_tensor<float>(shape{1, 1, 128, 128}, gen);
  auto img = random_tensor<float>(shape{1, 3, 128, 128}, gen);
  auto t = tensor<float>::from(shape{1}, {0.4f});
  const auto f = net.forward(x, img, t);
  REQUIRE(f.shape() == shape{1, 1, 128, 128});
  bool finite = true, bounded = true, varied = false;
  for (std::int64_t i = 0; i < f.numel(); ++i) {
    finite = finite && std::isfinite(f[i]);
    bounded = bounded && std::abs(f[i]) <= 1.f;  // tanh
    varied = varied || f[i] != f[0];
  }
  CHECK(finite);
  CHECK(bounded);
  CHECK(varied);
}
