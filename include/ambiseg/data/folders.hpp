// ambiseg/data/folders.hpp — data sets stored as image files.
//
// load_cimd_folder(dir): the example layout of the CIMD code (Rahman et al. 2023), which
//   /work/shared/data/lidc-cimd-samples/{training,testing} follows:
//     <dir>/<case>/image_<anything>.jpg   the slice
//     <dir>/<case>/label<i>_.jpg          annotation i = 0, 1, …, consecutive
//   JPEG labels are lossy: a pixel is foreground when its grey value > 127.
//   Cases are sorted by folder name, numerically when the names are numbers.
//
// load_lidc_crops_png(root): the DeepMind LIDC crops of the Probabilistic U-Net release:
//     <root>/images/<patient>/z-<Z>_c<k>.png
//     <root>/gt/<patient>/z-<Z>_c<k>_l<i>.png       i = 0, 1, …, consecutive
//   PNG is lossless: foreground is any non-zero value (the masks are 0/255 or 0/1).
//   Case id "<patient>_z-<Z>_c<k>", so patient_id() and the split work unchanged.
//
// Images become [1, H, W] float v / 255; masks [m, H, W] uint8 0/1.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/data/dataset.hpp"
#include "ambiseg/io/image.hpp"

namespace ambiseg::data {

namespace folder_detail {
namespace fs = std::filesystem;

inline bool all_digits(const std::string& s) {
  return !s.empty() && s.size() < 19 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}
// Numeric names in numeric order first, then the rest lexicographically.
inline bool name_less(const std::string& a, const std::string& b) {
  const bool da = all_digits(a), db = all_digits(b);
  if (da && db) return std::stoll(a) < std::stoll(b);
  if (da != db) return da;
  return a < b;
}
inline std::vector<fs::path> sorted_entries(const fs::path& dir, bool directories) {
  throw_if<io_error>(!fs::is_directory(dir), "data folder: '", dir.string(),
                     "' is not a directory");
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (directories ? e.is_directory() : e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end(), [](const fs::path& a, const fs::path& b) {
    return name_less(a.filename().string(), b.filename().string());
  });
  return out;
}

inline tensor<float> grey_to_float(const tensor<std::uint8_t>& pixels) {
  tensor<float> out(shape{1, pixels.size(0), pixels.size(1)});
  for (std::int64_t i = 0; i < pixels.numel(); ++i) out[i] = pixels[i] / 255.0f;
  return out;
}

// Reads the mask files in order into [m, H, W], checking each against the image size. A
// lossless mask (PNG) with a third grey level is a label map, not a binary annotation:
// refused rather than merged by the threshold (JPEG masks are lossy and only thresholded).
inline tensor<std::uint8_t> read_masks(const std::vector<fs::path>& files, std::int64_t h,
                                       std::int64_t w, int threshold, const std::string& id) {
  tensor<std::uint8_t> masks(shape{static_cast<std::int64_t>(files.size()), h, w});
  for (std::size_t k = 0; k < files.size(); ++k) {
    const auto m = io::read_image(files[k]);
    throw_if<shape_error>(m.size(0) != h || m.size(1) != w, "data folder: case '", id,
                          "' mask '", files[k].filename().string(), "' is ", m.size(0), "x",
                          m.size(1), ", image is ", h, "x", w);
    std::string ext = files[k].extension().string();
    for (auto& ch : ext) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (ext == ".png") {
      bool present[256] = {};
      int distinct = 0;
      for (std::int64_t i = 0; i < h * w; ++i)
        if (!present[m[i]]) distinct += (present[m[i]] = true);
      throw_if<value_error>(distinct > 2, "data folder: case '", id, "' mask '", files[k].string(), "' holds ",
                            distinct, " grey levels: a label map with more than two labels, but ambiseg's models "
                            "segment one foreground; give one binary mask per annotator");
    }
    std::uint8_t* out = masks.data() + static_cast<std::int64_t>(k) * h * w;
    for (std::int64_t i = 0; i < h * w; ++i) out[i] = m[i] > threshold;
  }
  return masks;
}

// What a loader expected, for the message when a folder holds none of it.
inline constexpr const char* cimd_layout =
    "the CIMD layout <dir>/<case>/image_*.jpg with <dir>/<case>/label0_.jpg, label1_.jpg, ...";
inline constexpr const char* crops_layout =
    "the DeepMind LIDC crops layout <root>/images/<patient>/z-<Z>_c<k>.png with "
    "<root>/gt/<patient>/z-<Z>_c<k>_l0.png, _l1.png, ...";

// "3 files and no folders": what a folder that matched no layout holds instead.
inline std::string describe_contents(const fs::path& dir) {
  std::size_t files = 0, folders = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) (e.is_directory(ec) ? folders : files) += 1;
  auto count = [](std::size_t n, const char* what) {
    return (n ? std::to_string(n) : std::string("no")) + " " + what + (n == 1 ? "" : "s");
  };
  return count(files, "file") + " and " + count(folders, "folder");
}

inline void expect_directory(const fs::path& dir, const char* loader, const char* layout) {
  throw_if<io_error>(!fs::is_directory(dir), loader, ": '", dir.string(),
                     "' is not a directory (expected ", layout, ")");
}

// path/prefix0suffix, path/prefix1suffix, … while they exist.
inline std::vector<fs::path> numbered_files(const fs::path& dir, const std::string& prefix,
                                            const std::string& suffix) {
  std::vector<fs::path> out;
  for (int i = 0;; ++i) {
    fs::path p = dir / (prefix + std::to_string(i) + suffix);
    if (!fs::is_regular_file(p)) break;
    out.push_back(std::move(p));
  }
  return out;
}
}  // namespace folder_detail

inline case_set load_cimd_folder(const std::filesystem::path& dir) {
  namespace fd = folder_detail;
  fd::expect_directory(dir, "load_cimd_folder", fd::cimd_layout);
  case_set out;
  for (const auto& case_dir : fd::sorted_entries(dir, true)) {
    const std::string id = case_dir.filename().string();
    std::vector<std::filesystem::path> images;
    for (const auto& f : fd::sorted_entries(case_dir, false)) {
      const std::string name = f.filename().string();
      if (name.rfind("image_", 0) == 0) images.push_back(f);
    }
    throw_if<format_error>(images.size() != 1, "load_cimd_folder: case '", id, "' has ",
                           images.size(), " image_* files, expected 1");
    const auto pixels = io::read_image(images[0]);
    const auto labels = fd::numbered_files(case_dir, "label", "_.jpg");
    throw_if<format_error>(labels.empty(), "load_cimd_folder: case '", id,
                           "' has no label0_.jpg");
    out.add({id, fd::grey_to_float(pixels),
             fd::read_masks(labels, pixels.size(0), pixels.size(1), 127, id)});
  }
  throw_if<format_error>(out.empty(), "load_cimd_folder: '", dir.string(), "' holds no case folder (",
                         fd::describe_contents(dir), "); expected ", fd::cimd_layout);
  return out;
}

inline case_set load_lidc_crops_png(const std::filesystem::path& root) {
  namespace fd = folder_detail;
  fd::expect_directory(root, "load_lidc_crops_png", fd::crops_layout);
  fd::expect_directory(root / "images", "load_lidc_crops_png", fd::crops_layout);
  case_set out;
  const auto patient_dirs = fd::sorted_entries(root / "images", true);
  for (const auto& patient_dir : patient_dirs) {
    const std::string patient = patient_dir.filename().string();
    for (const auto& image_file : fd::sorted_entries(patient_dir, false)) {
      if (image_file.extension() != ".png") continue;
      const std::string stem = image_file.stem().string();  // z-<Z>_c<k>
      const std::string id = patient + "_" + stem;
      const auto pixels = io::read_image(image_file);
      const auto labels = fd::numbered_files(root / "gt" / patient, stem + "_l", ".png");
      throw_if<format_error>(labels.empty(), "load_lidc_crops_png: no gt/", patient, "/", stem,
                             "_l0.png for '", image_file.string(), "'");
      out.add({id, fd::grey_to_float(pixels),
               fd::read_masks(labels, pixels.size(0), pixels.size(1), 0, id)});
    }
  }
  throw_if<format_error>(patient_dirs.empty(), "load_lidc_crops_png: '", (root / "images").string(),
                         "' holds no patient folder (", fd::describe_contents(root / "images"),
                         "); expected ", fd::crops_layout);
  throw_if<format_error>(out.empty(), "load_lidc_crops_png: the ", patient_dirs.size(),
                         " patient folders of '", (root / "images").string(),
                         "' hold no .png slice; expected ", fd::crops_layout);
  return out;
}

}  // namespace ambiseg::data
