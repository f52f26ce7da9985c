// Checkpoints: parameters by name (strict / non-strict), training checkpoints bit for bit.
#include <catch2/catch.hpp>

#include <ambiseg/io/checkpoint.hpp>
#include <ambiseg/train/checkpoint.hpp>

#include <cstring>
#include <filesystem>

#include "scratch_dir.hpp"

using namespace ambiseg;
namespace fs = std::filesystem;
using ambiseg_test::scratch_dir;

namespace {

// A small model: names and shapes in the style of the reference state_dict.
template <class T>
void build(parameter_store<T>& s, bool with_extra = false, bool transposed = false) {
  s.add("time_embed.0.weight", transposed ? shape{3, 4} : shape{4, 3});
  s.add("time_embed.0.bias", {4});
  s.add("middle_block.1.qkv.weight", {6, 2, 1});
  if (with_extra) s.add("out.2.weight", {1, 2, 3, 3});
  s.allocate();
}

template <class T>
void fill(parameter_store<T>& s, double seed) {
  auto flat = s.flat_values();
  for (const auto& e : s.entries())
    for (std::int64_t k = 0; k < e.shape.numel(); ++k)
      flat[e.offset + k] = static_cast<T>(std::sin(seed + 0.37 * static_cast<double>(e.offset + k)) / 3.0);
}

template <class T>
bool flat_equal(tensor_view<const T> a, tensor_view<const T> b) {
  return a.numel() == b.numel() && std::memcmp(a.data(), b.data(), sizeof(T) * a.numel()) == 0;
}

// Re-saves a file's float tensors and metadata with changes (to craft damaged checkpoints).
void rewrite(const fs::path& in, const fs::path& out, const std::string& drop,
             const std::map<std::string, std::string>& meta_changes) {
  auto f = io::safetensors_file::open(in);
  std::vector<std::vector<double>> data;
  std::vector<io::tensor_to_save> entries;
  data.reserve(f.size());
  for (const auto& t : f.tensors()) {
    if (t.name == drop) continue;
    data.push_back(f.read<double>(t.name));
    entries.push_back(io::tensor_to_save::from<double>(t.name, data.back().data(), t.shape));
  }
  auto meta = f.metadata();
  for (const auto& [k, v] : meta_changes) meta[k] = v;
  io::save_safetensors(out, entries, meta);
}

}  // namespace

TEST_CASE("parameters save and load strictly by name, bit for bit", "[io][checkpoint]") {
  scratch_dir dir("params");
  parameter_store<float> a, b;
  build(a);
  build(b);
  fill(a, 1.0);
  const auto path = dir / "w.safetensors";
  io::save_parameters(a, path, {{"note", "unit test"}});

  auto f = io::safetensors_file::open(path);
  CHECK(f.info("middle_block.1.qkv.weight").shape == std::vector<std::int64_t>{6, 2, 1});
  CHECK(f.info("time_embed.0.bias").dtype == io::dtype::F32);
  CHECK(f.size() == 3);  // padding is not written
  CHECK(f.metadata().at("note") == "unit test");

  const auto report = io::load_parameters(b, path);
  CHECK(report.complete());
  CHECK(report.loaded.size() == 3);
  CHECK(flat_equal<float>(a.flat_values(), b.flat_values()));

  // A double model reads the F32 file exactly.
  parameter_store<double> d;
  build(d);
  io::load_parameters(d, path);
  CHECK(d.value("time_embed.0.bias")[2] == static_cast<double>(a.value("time_embed.0.bias")[2]));
}

TEST_CASE("strict loading names the first mismatch and changes nothing", "[io][checkpoint]") {
  scratch_dir dir("strict");
  parameter_store<float> saved;
  build(saved);
  fill(saved, 2.0);
  const auto path = dir / "w.safetensors";
  io::save_parameters(saved, path);

  auto expect_strict_failure = [&](parameter_store<float>& target, const std::string& fragment) {
    fill(target, 9.0);
    tensor<float> before = tensor<float>(target.flat_values().shape());
    before.copy_from(target.flat_values());
    try {
      io::load_parameters(target, path);
      FAIL("strict load accepted a mismatch");
    } catch (const format_error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(fragment) != std::string::npos);
      CHECK(std::string(e.what()).find("w.safetensors") != std::string::npos);
    }
    CHECK(flat_equal<float>(before.cview(), target.flat_values()));
  };

  parameter_store<float> more;  // a parameter the file lacks
  build(more, /*with_extra=*/true);
  expect_strict_failure(more, "parameter 'out.2.weight' ([1, 2, 3, 3]) is missing from the file");

  parameter_store<float> transposed;  // a shape that differs
  build(transposed, false, /*transposed=*/true);
  expect_strict_failure(transposed, "parameter time_embed.0.weight: file F32 [4, 3], model [3, 4]");

  parameter_store<float> fewer;  // a tensor no parameter claims
  fewer.add("time_embed.0.weight", {4, 3});
  fewer.add("middle_block.1.qkv.weight", {6, 2, 1});
  fewer.allocate();
  expect_strict_failure(fewer, "tensor 'time_embed.0.bias' in the file matches no parameter");

  // Non-float dtypes are mismatches too (fixture from tools/make_safetensors_fixtures.py).
  parameter_store<float> ints;
  ints.add("i64_values", {3});
  ints.allocate();
  const auto fixture = fs::path(AMBISEG_FIXTURE_DIR) / "safetensors" / "mixed_dtypes.safetensors";
  CHECK_THROWS_WITH(io::load_parameters(ints, fixture),
                    Catch::Contains("i64_values: file I64 [3], model [3]"));
}

TEST_CASE("non-strict loading loads what matches and reports the rest", "[io][checkpoint]") {
  scratch_dir dir("nonstrict");
  parameter_store<float> saved;
  build(saved);
  fill(saved, 3.0);
  const auto path = dir / "w.safetensors";
  io::save_parameters(saved, path);

  parameter_store<float> target;
  target.add("time_embed.0.weight", {3, 4});  // transposed: mismatched
  target.add("middle_block.1.qkv.weight", {6, 2, 1});
  target.add("new.weight", {2});  // missing
  target.allocate();
  fill(target, 7.0);
  const float untouched = target.value("time_embed.0.weight")[0];
  const auto report = io::load_parameters(target, path, {.mode = io::load_mode::non_strict, .prefix = ""});
  CHECK(report.loaded == std::vector<std::string>{"middle_block.1.qkv.weight"});
  CHECK(report.missing == std::vector<std::string>{"new.weight"});
  CHECK(report.unexpected == std::vector<std::string>{"time_embed.0.bias"});
  REQUIRE(report.mismatched.size() == 1);
  CHECK(report.mismatched[0] == "time_embed.0.weight: file F32 [4, 3], model [3, 4]");
  CHECK(report.summary() == "1 loaded, 1 missing, 1 unexpected, 1 mismatched");
  CHECK(!report.complete());
  CHECK(target.value("time_embed.0.weight")[0] == untouched);
  auto qkv = target.value("middle_block.1.qkv.weight");
  auto ref = saved.value("middle_block.1.qkv.weight");
  for (std::int64_t k = 0; k < qkv.numel(); ++k) CHECK(qkv[k] == ref[k]);
}

TEST_CASE("training checkpoint round-trips bit for bit and resumes identically", "[io][checkpoint]") {
  scratch_dir dir("train");
  const auto path = dir / "train.safetensors";

  parameter_store<float> model;
  build(model, true);
  fill(model, 4.0);
  optim::adamw<float> opt(model, {.lr = 3e-3, .weight_decay = 0.05});
  optim::ema<float> avg(model, 0.99);
  rng gen(2024);
  auto take_step = [&](parameter_store<float>& m, optim::adamw<float>& o, optim::ema<float>& e, rng& r) {
    for (const auto& entry : m.entries())
      for (std::int64_t k = 0; k < entry.shape.numel(); ++k)
        m.flat_grads()[entry.offset + k] = static_cast<float>(r.normal());
    o.step(m);
    e.update(m);
  };
  for (int s = 0; s < 3; ++s) take_step(model, opt, avg, gen);
  (void)gen.normal();  // leave a cached normal in the generator state
  REQUIRE(gen.state().has_cached_normal);

  train::training_state state;
  state.step = 3;
  state.rng_state = gen.state();
  state.config = {{"model_channels", 32}, {"channel_mult", {1, 1, 2, 4}}, {"prediction", "x"}};
  state.extra = {{"git", "abc123"}};
  train::save_training_checkpoint(path, model, opt, state, &avg);

  auto f = io::safetensors_file::open(path);
  CHECK(f.contains("optim.m.time_embed.0.bias"));
  CHECK(f.contains("optim.v.out.2.weight"));
  CHECK(f.contains("ema.middle_block.1.qkv.weight"));
  CHECK(f.metadata().at("format") == train::training_checkpoint_format);
  CHECK(f.metadata().at("dtype") == "F32");

  parameter_store<float> model2;
  build(model2, true);
  optim::adamw<float> opt2(model2);  // other hyperparameters: the checkpoint's win
  optim::ema<float> avg2(model2, 0.99);
  const auto loaded = train::load_training_checkpoint(path, model2, opt2, &avg2);

  CHECK(loaded.step == 3);
  CHECK(loaded.config == state.config);
  CHECK(loaded.extra == state.extra);
  CHECK(loaded.rng_state.s == state.rng_state.s);
  CHECK(std::bit_cast<std::uint64_t>(loaded.rng_state.cached_normal) ==
        std::bit_cast<std::uint64_t>(state.rng_state.cached_normal));
  CHECK(loaded.rng_state.has_cached_normal);
  CHECK(flat_equal<float>(model.flat_values(), model2.flat_values()));
  CHECK(flat_equal<float>(opt.exp_avg(), opt2.exp_avg()));
  CHECK(flat_equal<float>(opt.exp_avg_sq(), opt2.exp_avg_sq()));
  CHECK(flat_equal<float>(avg.shadow(), avg2.shadow()));
  CHECK(opt2.steps() == 3);
  CHECK(opt2.options().lr == 3e-3);
  CHECK(opt2.options().weight_decay == 0.05);
  CHECK(avg2.updates() == 3);

  // Resuming: both continue with the same random gradients and stay identical.
  rng gen2(0);
  gen2.set_state(loaded.rng_state);
  for (int s = 0; s < 2; ++s) {
    take_step(model, opt, avg, gen);
    take_step(model2, opt2, avg2, gen2);
  }
  CHECK(flat_equal<float>(model.flat_values(), model2.flat_values()));
  CHECK(flat_equal<float>(avg.shadow(), avg2.shadow()));

  // The weights (or the EMA weights) of a training checkpoint load as a plain model.
  parameter_store<float> plain;
  build(plain, true);
  CHECK(io::load_parameters(plain, path).complete());
  parameter_store<float> averaged;
  build(averaged, true);
  CHECK(io::load_parameters(averaged, path, {.prefix = "ema."}).complete());
  optim::ema<float> avg3(model2, 0.5);
  parameter_store<float> m3;
  build(m3, true);
  optim::adamw<float> o3(m3);
  train::load_training_checkpoint(path, m3, o3, &avg3);
  CHECK(flat_equal<float>(averaged.flat_values(), avg3.shadow()));

  // Double models save F64.
  parameter_store<double> dm;
  build(dm);
  fill(dm, 5.0);
  optim::adamw<double> dopt(dm);
  train::save_training_checkpoint(dir / "d.safetensors", dm, dopt, {});
  CHECK(io::safetensors_file::open(dir / "d.safetensors").info("optim.m.time_embed.0.bias").dtype == io::dtype::F64);
  parameter_store<double> dm2;
  build(dm2);
  optim::adamw<double> dopt2(dm2);
  CHECK(train::load_training_checkpoint(dir / "d.safetensors", dm2, dopt2).step == 0);
  CHECK(flat_equal<double>(dm.flat_values(), dm2.flat_values()));
}

TEST_CASE("damaged training checkpoints are refused before anything changes", "[io][checkpoint]") {
  scratch_dir dir("damaged");
  const auto good = dir / "good.safetensors";
  parameter_store<double> model;
  build(model);
  fill(model, 6.0);
  optim::adamw<double> opt(model);
  train::training_state state;
  state.step = 11;
  train::save_training_checkpoint(good, model, opt, state);

  parameter_store<double> target;
  build(target);
  fill(target, 8.0);
  optim::adamw<double> topt(target, {.lr = 0.5});
  tensor<double> before(target.flat_values().shape());
  before.copy_from(target.flat_values());
  auto expect_refused = [&](const fs::path& p, const std::string& fragment) {
    try {
      train::load_training_checkpoint(p, target, topt);
      FAIL("accepted a damaged checkpoint");
    } catch (const format_error& e) {
      INFO(e.what());
      CHECK(std::string(e.what()).find(fragment) != std::string::npos);
    }
    CHECK(flat_equal<double>(before.cview(), target.flat_values()));
    CHECK(topt.steps() == 0);
    CHECK(topt.lr() == 0.5);
  };

  const auto bad = dir / "bad.safetensors";
  rewrite(good, bad, "optim.v.time_embed.0.bias", {});
  expect_refused(bad, "second moment");
  rewrite(good, bad, "", {{"rng", "{not json"}});
  expect_refused(bad, "metadata 'rng' is not valid JSON");
  rewrite(good, bad, "", {{"step", "-4"}});
  expect_refused(bad, "metadata 'step' is not a non-negative integer");
  rewrite(good, bad, "", {{"optimizer", R"({"type": "adamw", "lr": 0.1})"}});
  expect_refused(bad, "lacks \"beta1\"");
  rewrite(good, bad, "", {{"optimizer", R"({"type": "adamw", "lr": 0.1, "beta1": 1.5, "beta2": 0.9,
                                           "eps": 1e-8, "weight_decay": 0, "steps": 2})"}});
  expect_refused(bad, "invalid beta1");
  rewrite(good, bad, "", {{"format", "something else"}});
  expect_refused(bad, "not a training checkpoint");

  parameter_store<double> weights_only;
  build(weights_only);
  io::save_parameters(weights_only, dir / "plain.safetensors");
  expect_refused(dir / "plain.safetensors", "metadata key 'format' is missing");

  parameter_store<double> bigger;  // a model the checkpoint does not fit
  build(bigger, true);
  optim::adamw<double> bopt(bigger);
  CHECK_THROWS_WITH(train::load_training_checkpoint(good, bigger, bopt),
                    Catch::Contains("weights") && Catch::Contains("'out.2.weight'"));

  // An EMA requested but not in the file.
  optim::ema<double> avg(target, 0.9);
  CHECK_THROWS_WITH(train::load_training_checkpoint(good, target, topt, &avg),
                    Catch::Contains("metadata key 'ema' is missing"));

  // Reserved metadata keys cannot be overridden by extras.
  train::training_state clash;
  clash.extra = {{"step", "5"}};
  CHECK_THROWS_AS(train::save_training_checkpoint(dir / "x.safetensors", model, opt, clash), value_error);
  CHECK(!fs::exists(dir / "x.safetensors"));
}
