// ambiseg_apps/inputs.hpp — the images a sample or eval command runs on: test cases of a
// data set (cropped as the model was trained, windows fixed by the model's seed) or one
// image file (.npy [H, W] / [1, H, W] in [0, 1], or uint8; .png / .jpg grey).
//
// Shape legend: B images, C encoded channels, H×W pixels; images [B, C, H, W].
#pragma once

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <optional>
#include <vector>

#include "ambiseg/data/all.hpp"
#include "ambiseg/io/image.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg_apps/data_source.hpp"
#include "ambiseg_apps/model_api.hpp"

namespace ambiseg::apps {

// Images [B, C, H, W] encoded for the model, the cases they came from (annotations).
struct sample_inputs {
  tensor<float> images;
  data::case_set cases;  // annotations known when loaded from a data set
  bool has_annotations = false;
  std::vector<std::uint64_t> generator_indices;  // synthetic only: the generator's index of each case
};

inline tensor<float> read_grey_image(const std::filesystem::path& path) {
  if (path.extension() == ".npy") {
    auto a = io::read_npy<float>(path);
    std::int64_t h = 0, w = 0;
    if (a.rank() == 2) h = a.shape[0], w = a.shape[1];
    else if (a.rank() == 3 && a.shape[0] == 1) h = a.shape[1], w = a.shape[2];
    else throw shape_error("--image '" + path.string() + "': expected an [H, W] or [1, H, W] array");
    throw_if<shape_error>(h < 1 || w < 1, "--image '", path.string(), "' is empty (", h, "x", w, ")");
    tensor<float> out(shape{1, h, w});
    const bool bytes = a.stored_dtype == io::npy_dtype::uint8;
    for (std::int64_t i = 0; i < h * w; ++i) {
      const float v = a.data[static_cast<std::size_t>(i)];
      throw_if<value_error>(!std::isfinite(v), "--image '", path.string(), "' holds a non-finite value at pixel ", i);
      out[i] = bytes ? v / 255.0f : v;
    }
    return out;
  }
  const auto pixels = io::read_image(path);
  tensor<float> out(shape{1, pixels.size(0), pixels.size(1)});
  for (std::int64_t i = 0; i < pixels.numel(); ++i) out[i] = pixels[i] / 255.0f;
  return out;
}

// in.images [B, C, H, W]: in.cases' images encoded for the model (every image H×W).
inline void encode_images(const input_format& format, sample_inputs& in) {
  const int channels = data::encoded_channels(format.encoding);
  const std::int64_t b = static_cast<std::int64_t>(in.cases.size());
  const std::int64_t h = in.cases[0].height(), w = in.cases[0].width();
  in.images.resize(shape{b, channels, h, w});
  for (std::int64_t i = 0; i < b; ++i) {
    const data::case_ref c = in.cases[static_cast<std::size_t>(i)];
    throw_if<shape_error>(c.height() != h || c.width() != w, "image '", c.id, "' is ", c.height(), "x", c.width(),
                          ", the first is ", h, "x", w);
    data::encode_image(c.image, format.encoding,
                       tensor_view<float>(in.images.data() + i * channels * h * w, shape{channels, h, w}));
  }
}

// count: how many test cases to take (default: all).
inline sample_inputs gather_inputs(const input_format& format, const std::optional<data_request>& data,
                                   const std::optional<std::filesystem::path>& image, std::optional<std::int64_t> count) {
  sample_inputs in;
  const std::int64_t s = format.crop_size;
  if (data) {
    data_request dr = *data;
    dr.synthetic_size = s;
    const loaded_data d = load_data(dr);
    const data::case_set test = data::evaluation_set(d.test, s, format.crop, format.seed);
    const std::size_t k = count ? std::min<std::size_t>(static_cast<std::size_t>(*count), test.size()) : test.size();
    std::vector<std::size_t> idx(k);
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    in.cases = test.subset(idx);
    in.has_annotations = true;
    if (!d.test_indices.empty()) in.generator_indices.assign(d.test_indices.begin(), d.test_indices.begin() + k);
  } else {
    tensor<float> grey = read_grey_image(*image);
    data::case_data c{image->filename().string(), std::move(grey), tensor<std::uint8_t>::zeros(shape{1, 1, 1})};
    const std::int64_t h = c.image.size(1), w = c.image.size(2);
    c.masks = tensor<std::uint8_t>::zeros(shape{1, h, w});
    in.cases.add(std::move(c));
  }
  throw_if<value_error>(in.cases.size() == 0, "the test set of '", data ? data->spec : std::string(), "' is empty");
  encode_images(format, in);
  return in;
}

}  // namespace ambiseg::apps
