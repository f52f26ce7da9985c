// ambiseg/train/commands.hpp — what `ambiseg train|sample|eval` do (parsing: cli.hpp).
//
//   train   DIR/checkpoint.safetensors (atomic, every --checkpoint-every steps and at the
//           end), DIR/snapshots/step-<N>.safetensors (--snapshots), DIR/log.csv
//           (step,loss,lr,grad_norm,seconds,cpu_seconds), DIR/loss.png, DIR/config.json
//   export  DIR/{train,test}_images.npy [N,C,H,W] float32, {train,test}_masks.npy
//           [N,A,H,W] uint8, {train,test}_ids.txt
//   sample  DIR/masks.npy [B,n,H,W] uint8, DIR/mean.npy, DIR/variance.npy [B,H,W] float,
//           DIR/sample_<k>.png per image, DIR/samples.png (all images, one row each)
//   eval    JSON on stdout (and DIR/eval.json), a markdown table (DIR/eval.md)
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/data/all.hpp"
#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/io/image.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg/metrics/evaluate.hpp"
#include "ambiseg/train/cli.hpp"
#include "ambiseg/train/commands_eval.hpp"
#include "ambiseg/train/inputs.hpp"
#include "ambiseg/train/plot.hpp"
#include "ambiseg/train/sampling.hpp"

namespace ambiseg::train {

struct run_options {
  bool interactive = false;  // redraw one progress line with '\r' (a terminal)
};

namespace command_detail {

inline std::string clock(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  const auto s = static_cast<long long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", s / 60, s % 60);
  return buf;
}

inline std::string progress_line(std::int64_t step, std::int64_t total, double loss, double lr, double rate,
                                 double eta) {
  const int width = 24;
  const auto filled = static_cast<int>(width * static_cast<double>(step) / static_cast<double>(std::max<std::int64_t>(total, 1)));
  char buf[200];
  std::snprintf(buf, sizeof buf, "[%s%s] step %lld/%lld  loss %.4f  lr %.2e  %.2f it/s  ETA %s",
                std::string(static_cast<std::size_t>(filled), '#').c_str(),
                std::string(static_cast<std::size_t>(width - filled), '.').c_str(), static_cast<long long>(step),
                static_cast<long long>(total), loss, lr, rate, clock(eta).c_str());
  return buf;
}

struct loss_log {
  std::vector<std::int64_t> steps;
  std::vector<double> loss;
};

// Keeps the rows of an earlier run up to `upto` (a resumed run continues the file).
inline loss_log read_log(const std::filesystem::path& csv, std::int64_t upto) {
  loss_log log;
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream row(line);
    std::string step, loss;
    if (!std::getline(row, step, ',') || !std::getline(row, loss, ',')) continue;
    const std::int64_t s = std::stoll(step);
    if (s > upto) break;
    log.steps.push_back(s);
    log.loss.push_back(std::stod(loss));
  }
  return log;
}

}  // namespace command_detail

template <class Device>
int run_train_on(const train_command& cmd, std::ostream& out, std::ostream& err, const run_options& ro) {
  namespace fs = std::filesystem;
  using clock_t = std::chrono::steady_clock;
  fs::create_directories(cmd.out);
  const fs::path ckpt = cmd.out / "checkpoint.safetensors", csv = cmd.out / "log.csv", png = cmd.out / "loss.png";
  trainer_config config = cmd.config;
  if (cmd.resume) {
    throw_if<io_error>(!fs::exists(ckpt), "ambiseg train --resume: no checkpoint at '", ckpt.string(), "'");
    config = trainer<data::case_set>::read_config(ckpt).get<trainer_config>();
    if (nlohmann::json(config) != nlohmann::json(cmd.config))
      err << "note: --resume continues with the configuration stored in " << ckpt.string() << "\n";
  }
  data_request dr = cmd.data;
  dr.synthetic_size = config.crop_size;
  const loaded_data data = load_data(dr);
  trainer<data::case_set, Device> t(config, data.train);
  command_detail::loss_log log;
  if (cmd.resume) {
    t.resume(ckpt);
    log = command_detail::read_log(csv, t.steps_done());
  }
  io::write_file_atomically(cmd.out / "config.json", nlohmann::json(config).dump(2) + "\n");
  out << "ambiseg train: " << data.kind << " data, " << data.train.size() << " training cases on " << cmd.device
      << "; network "
      << t.network().parameters().count() << " parameters; " << t.diffusion().describe() << "\n"
      << "  steps " << config.lr.total_steps << ", batch " << config.batch_size << ", crop " << config.crop_size
      << (cmd.resume ? ", resumed at step " + std::to_string(t.steps_done()) : std::string()) << "\n";

  // The CSV is rewritten with the kept rows, then appended to.
  {
    std::ostringstream head;
    head << "step,loss,lr,grad_norm,seconds,cpu_seconds\n";
    for (std::size_t i = 0; i < log.steps.size(); ++i) head << log.steps[i] << "," << log.loss[i] << ",,,,\n";
    io::write_file_atomically(csv, head.str());
  }
  std::ofstream csv_out(csv, std::ios::app);
  const auto start = clock_t::now();
  // Process CPU time (all threads): the fair clock for comparing runs on a shared machine.
  const std::clock_t cpu_start = std::clock();
  const std::int64_t first = t.steps_done(), total = config.lr.total_steps;
  auto save = [&] {
    csv_out.flush();
    t.save(ckpt);
    if (!log.steps.empty()) loss_curve(log.steps, log.loss).write(png);
  };
  if (!cmd.snapshots.empty()) fs::create_directories(cmd.out / "snapshots");
  double last_print = -1;
  while (t.steps_done() < total) {
    const step_report r = t.step();
    const double elapsed = std::chrono::duration<double>(clock_t::now() - start).count();
    const double cpu = static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
    csv_out << r.step << "," << r.loss << "," << r.lr << "," << r.grad_norm << "," << elapsed << "," << cpu << "\n";
    if (std::binary_search(cmd.snapshots.begin(), cmd.snapshots.end(), r.step))
      t.save(cmd.out / "snapshots" / ("step-" + std::to_string(r.step) + ".safetensors"));
    log.steps.push_back(r.step);
    log.loss.push_back(r.loss);
    const double rate = static_cast<double>(r.step - first) / std::max(elapsed, 1e-9);
    const double eta = static_cast<double>(total - r.step) / rate;
    const bool checkpoint = r.step % cmd.checkpoint_every == 0 || r.step == total;
    if (ro.interactive || checkpoint || elapsed - last_print >= 30.0) {
      err << (ro.interactive ? "\r" : "") << command_detail::progress_line(r.step, total, r.loss, r.lr, rate, eta)
          << (ro.interactive ? "" : "\n") << std::flush;
      last_print = elapsed;
    }
    if (checkpoint) save();
  }
  if (first == total) save();
  if (ro.interactive) err << "\n";
  out << "wrote " << ckpt.string() << ", " << csv.string() << ", " << png.string() << "\n";
  return 0;
}

inline int run_train(const train_command& cmd, std::ostream& out, std::ostream& err, const run_options& ro = {}) {
  return command_detail::on_device(cmd.device, [&]<class D>() { return run_train_on<D>(cmd, out, err, ro); });
}

inline grid_tile tile_of(const float* v, std::int64_t plane, double lo, double hi, palette p = palette::grey) {
  return {std::vector<float>(v, v + plane), lo, hi, p};
}
inline grid_tile tile_of(const std::uint8_t* v, std::int64_t plane) {
  grid_tile t{std::vector<float>(static_cast<std::size_t>(plane)), 0.0, 1.0, palette::grey};
  for (std::int64_t i = 0; i < plane; ++i) t.values[static_cast<std::size_t>(i)] = v[i];
  return t;
}

// One image: row 1 = image | annotations | mean | variance, then the samples 8 per row.
inline canvas image_grid(const sample_inputs& in, const sample_result& r, std::int64_t k) {
  const std::int64_t n = r.masks.size(1), h = r.masks.size(2), w = r.masks.size(3), plane = h * w;
  const data::case_ref c = in.cases[static_cast<std::size_t>(k)];
  std::vector<std::vector<grid_tile>> rows(1);
  rows[0].push_back(tile_of(c.image.data(), plane, 0.0, 1.0));
  if (in.has_annotations)
    for (std::int64_t a = 0; a < c.annotations(); ++a) rows[0].push_back(tile_of(c.masks.data() + a * plane, plane));
  rows[0].push_back(tile_of(r.mean.data() + k * plane, plane, 0.0, 1.0, palette::heat));
  rows[0].push_back(tile_of(r.variance.data() + k * plane, plane, 0.0, 0.25, palette::heat));
  for (std::int64_t j = 0; j < n; ++j) {
    if (j % 8 == 0) rows.emplace_back();
    rows.back().push_back(tile_of(r.masks.data() + (k * n + j) * plane, plane));
  }
  return tile_grid(rows, h, w, h <= 64 ? 3 : 2);
}

// All images, one row each: image | annotations | up to 6 samples | mean | variance.
inline canvas overview_grid(const sample_inputs& in, const sample_result& r) {
  const std::int64_t b = r.masks.size(0), n = r.masks.size(1), h = r.masks.size(2), w = r.masks.size(3);
  const std::int64_t plane = h * w, shown = std::min<std::int64_t>(n, 6);
  std::vector<std::vector<grid_tile>> rows;
  std::vector<std::string> headers{"image"};
  const std::int64_t m = in.has_annotations ? in.cases[0].annotations() : 0;
  for (std::int64_t a = 0; a < m; ++a) headers.push_back(a == 0 ? "annotations" : "");
  for (std::int64_t j = 0; j < shown; ++j) headers.push_back(j == 0 ? "samples" : "");
  headers.push_back("mean");
  headers.push_back("variance");
  for (std::int64_t k = 0; k < b; ++k) {
    const data::case_ref c = in.cases[static_cast<std::size_t>(k)];
    auto& row = rows.emplace_back();
    row.push_back(tile_of(c.image.data(), plane, 0.0, 1.0));
    for (std::int64_t a = 0; a < m; ++a)
      row.push_back(a < c.annotations() ? tile_of(c.masks.data() + a * plane, plane) : grid_tile{std::vector<float>(static_cast<std::size_t>(plane), 1.0f)});
    for (std::int64_t j = 0; j < shown; ++j) row.push_back(tile_of(r.masks.data() + (k * n + j) * plane, plane));
    row.push_back(tile_of(r.mean.data() + k * plane, plane, 0.0, 1.0, palette::heat));
    row.push_back(tile_of(r.variance.data() + k * plane, plane, 0.0, 0.25, palette::heat));
  }
  return tile_grid(rows, h, w, 2, headers);
}

template <class Device>
int run_sample_on(const sample_command& cmd, std::ostream& out) {
  namespace fs = std::filesystem;
  device_context<Device> context;  // the model's stream on a GPU; nothing on the CPU
  const typename device_context<Device>::scope on_context(context);
  const basic_loaded_model<Device> m = load_model<Device>(cmd.ckpt, cmd.use_ema);
  const sample_inputs in = gather_inputs(m, cmd.data, cmd.image, cmd.images);
  const std::int64_t b = in.images.size(0), h = in.images.size(2), w = in.images.size(3);
  tensor<float> init;
  if (cmd.init_noise) {
    auto a = io::read_npy<float>(*cmd.init_noise);
    const std::int64_t expected = b * cmd.n * h * w;
    throw_if<shape_error>(a.numel() != expected, "ambiseg sample: --init-noise '", cmd.init_noise->string(),
                          "' holds ", a.numel(), " values; expected [", b, ", ", cmd.n, ", ", h, ", ", w, "]");
    init.resize(shape{b, cmd.n, h, w});
    std::copy(a.data.begin(), a.data.end(), init.data());
  }
  rng g(cmd.seed);
  const sample_options so{cmd.n, cmd.steps, cmd.sampler, cmd.clip_x0, std::max<std::int64_t>(64, cmd.n)};
  const auto t0 = std::chrono::steady_clock::now();
  const sample_result r = sample_masks(*m.net, *m.diffusion, in.images.cview(), so, g,
                                       cmd.init_noise ? init.cview() : tensor_view<const float>{});
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fs::create_directories(cmd.out);
  const std::vector<std::int64_t> mask_shape{b, cmd.n, h, w}, map_shape{b, h, w};
  io::write_npy<std::uint8_t>(cmd.out / "masks.npy", std::span<const std::uint8_t>(r.masks.data(), static_cast<std::size_t>(r.masks.numel())), mask_shape);
  io::write_npy<float>(cmd.out / "mean.npy", std::span<const float>(r.mean.data(), static_cast<std::size_t>(r.mean.numel())), map_shape);
  io::write_npy<float>(cmd.out / "variance.npy", std::span<const float>(r.variance.data(), static_cast<std::size_t>(r.variance.numel())), map_shape);
  if (cmd.save_x0)
    io::write_npy<float>(*cmd.save_x0, std::span<const float>(r.x0_hat.data(), static_cast<std::size_t>(r.x0_hat.numel())), mask_shape);
  for (std::int64_t k = 0; k < b; ++k) image_grid(in, r, k).write(cmd.out / ("sample_" + std::to_string(k) + ".png"));
  overview_grid(in, r).write(cmd.out / "samples.png");
  out << "ambiseg sample: " << b << " image(s) x " << cmd.n << " samples, " << cmd.steps << " steps, "
      << seconds << " s (step " << m.step << (m.ema_weights ? ", EMA weights" : "") << ")\n"
      << "wrote " << (cmd.out / "masks.npy").string() << ", mean.npy, variance.npy, sample_<k>.png and "
      << (cmd.out / "samples.png").string() << "\n";
  return 0;
}

inline int run_sample(const sample_command& cmd, std::ostream& out, std::ostream& /*err*/) {
  return command_detail::on_device(cmd.device, [&]<class D>() { return run_sample_on<D>(cmd, out); });
}

namespace command_detail {

// cases → images [N, 1, H, W] float32 and masks [N, A, H, W] uint8 (+ ids, one a line).
inline void write_case_arrays(const data::case_set& cases, const std::filesystem::path& dir, const std::string& name) {
  throw_if<value_error>(cases.size() == 0, "ambiseg export: the ", name, " set is empty");
  const data::case_ref first = cases[0];
  const std::int64_t n = static_cast<std::int64_t>(cases.size()), c = first.image.size(0);
  const std::int64_t h = first.height(), w = first.width(), a = first.annotations(), plane = h * w;
  std::vector<float> images(static_cast<std::size_t>(n * c * plane));
  std::vector<std::uint8_t> masks(static_cast<std::size_t>(n * a * plane));
  std::string ids;
  for (std::int64_t k = 0; k < n; ++k) {
    const data::case_ref x = cases[static_cast<std::size_t>(k)];
    throw_if<shape_error>(x.image.size(0) != c || x.height() != h || x.width() != w || x.annotations() != a,
                          "ambiseg export: ", name, " case '", x.id, "' has ", x.image.size(0), " channel(s), ",
                          x.annotations(), " annotation(s) of ", x.height(), "x", x.width(), "; the first has ", c,
                          ", ", a, " of ", h, "x", w, " (one array needs one shape; training cases are written uncropped, test cases at --crop)");
    std::copy(x.image.data(), x.image.data() + c * plane, images.begin() + k * c * plane);
    std::copy(x.masks.data(), x.masks.data() + a * plane, masks.begin() + k * a * plane);
    ids.append(x.id).append("\n");
  }
  io::write_npy<float>(dir / (name + "_images.npy"), images, std::vector<std::int64_t>{n, c, h, w});
  io::write_npy<std::uint8_t>(dir / (name + "_masks.npy"), masks, std::vector<std::int64_t>{n, a, h, w});
  io::write_file_atomically(dir / (name + "_ids.txt"), ids);
}

}  // namespace command_detail

inline int run_export(const export_command& cmd, std::ostream& out) {
  data_request dr = cmd.data;
  dr.synthetic_size = cmd.crop_size;
  const loaded_data d = load_data(dr);
  std::filesystem::create_directories(cmd.out);
  command_detail::write_case_arrays(d.train, cmd.out, "train");
  command_detail::write_case_arrays(data::evaluation_set(d.test, cmd.crop_size, cmd.crop, cmd.seed), cmd.out, "test");
  out << "ambiseg export: " << d.kind << " data, " << d.train.size() << " training and " << d.test.size()
      << " test cases (test crops " << cmd.crop_size << ", seed " << cmd.seed << ") → " << cmd.out.string()
      << "/{train,test}_{images,masks}.npy\n";
  return 0;
}

inline int run_command(const command& c, std::ostream& out, std::ostream& err, const run_options& ro = {}) {
  if (const auto* t = std::get_if<train_command>(&c)) return run_train(*t, out, err, ro);
  if (const auto* s = std::get_if<sample_command>(&c)) return run_sample(*s, out, err);
  if (const auto* e = std::get_if<eval_command>(&c)) return run_eval(*e, out, err);
  if (const auto* x = std::get_if<export_command>(&c)) return run_export(*x, out);
  out << cli_usage();
  return 0;
}

// The whole tool: parse, run, report errors as one line (exit 2 for usage, 1 otherwise).
inline int run_cli(std::span<const std::string> args, std::ostream& out, std::ostream& err,
                   const run_options& ro = {}) {
  command c;
  try {
    c = parse_command(args);
  } catch (const std::exception& e) {
    err << "ambiseg: " << e.what() << "\n\n" << cli_usage();
    return 2;
  }
  try {
    return run_command(c, out, err, ro);
  } catch (const std::exception& e) {
    err << "\nambiseg: error: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace ambiseg::train
