// ambiseg/data/dataset.hpp — the common shape of every data set: cases of one image and
// several annotations, and the image encodings of SPEC §1.
//
//   case_ref      a view: id, image [C, H, W] float, masks [m, H, W] uint8 (0/1)
//   case_data     the owning form (C = 1 grey channel in [0, 1] for every loader here)
//   case_set      an in-memory data set of case_data; any type with size() and
//                 operator[](i) → case_ref satisfies the `dataset` concept
//   image_encoding  grey (1 channel, [0, 1] as loaded) or imagenet_rgb (3 identical
//                 channels, (v − mean_c) / std_c with ImageNet's mean/std, as the
//                 reference implementation feeds the network)
#pragma once

#include <array>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"

namespace ambiseg::data {

struct case_ref {
  std::string_view id;
  tensor_view<const float> image;          // [C, H, W]
  tensor_view<const std::uint8_t> masks;   // [m, H, W], values 0/1

  std::int64_t height() const { return image.size(1); }
  std::int64_t width() const { return image.size(2); }
  std::int64_t annotations() const { return masks.size(0); }
};

struct case_data {
  std::string id;
  tensor<float> image;          // [C, H, W]
  tensor<std::uint8_t> masks;   // [m, H, W]

  case_ref ref() const { return {id, image.view(), masks.view()}; }
};

// Checks what every case must satisfy; loaders call it so a bad file fails at load time.
inline void validate_case(const case_ref& c, const char* where) {
  throw_if<shape_error>(c.image.rank() != 3, where, ": case '", c.id, "' image has shape ",
                        c.image.shape().to_string(), ", expected [C, H, W]");
  throw_if<shape_error>(c.masks.rank() != 3, where, ": case '", c.id, "' masks have shape ",
                        c.masks.shape().to_string(), ", expected [m, H, W]");
  throw_if<shape_error>(c.masks.size(1) != c.image.size(1) || c.masks.size(2) != c.image.size(2),
                        where, ": case '", c.id, "' masks ", c.masks.shape().to_string(),
                        " do not match image ", c.image.shape().to_string());
  throw_if<shape_error>(c.masks.size(0) < 1, where, ": case '", c.id, "' has no annotation");
  for (std::uint8_t m : c.masks)
    throw_if<value_error>(m > 1, where, ": case '", c.id, "' mask value ", int(m), " is not 0/1");
}

template <class D>
concept dataset = requires(const D& d, std::size_t i) {
  { d.size() } -> std::convertible_to<std::size_t>;
  { d[i] } -> std::convertible_to<case_ref>;
};

class case_set {
 public:
  case_set() = default;
  case_set(case_set&&) noexcept = default;
  case_set& operator=(case_set&&) noexcept = default;

  std::size_t size() const { return cases_.size(); }
  bool empty() const { return cases_.empty(); }
  case_ref operator[](std::size_t i) const {
    throw_if<value_error>(i >= cases_.size(), "case_set: index ", i, " out of range for ",
                          cases_.size(), " cases");
    return cases_[i].ref();
  }
  void add(case_data c) {
    validate_case(c.ref(), "case_set::add");
    cases_.push_back(std::move(c));
  }
  // The cases at `indices`, copied (a split of a loaded set).
  case_set subset(const std::vector<std::size_t>& indices) const {
    case_set out;
    for (std::size_t i : indices) {
      const case_ref c = (*this)[i];
      out.cases_.push_back({std::string(c.id), cases_[i].image.clone(), cases_[i].masks.clone()});
    }
    return out;
  }
  const case_data& data(std::size_t i) const { return cases_.at(i); }

 private:
  std::vector<case_data> cases_;
};
static_assert(dataset<case_set>);

// The LIDC pickle key is "<patient id>_slice<k>": the patient is the part before the first '_'.
inline std::string_view patient_id(std::string_view key) {
  return key.substr(0, key.find('_'));
}

enum class image_encoding { grey, imagenet_rgb };

inline int encoded_channels(image_encoding e) { return e == image_encoding::grey ? 1 : 3; }

inline constexpr std::array<float, 3> imagenet_mean{0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> imagenet_std{0.229f, 0.224f, 0.225f};

// grey [1, H, W] in [0, 1] → out [C, H, W] in the network's input encoding.
inline void encode_image(tensor_view<const float> grey, image_encoding e, tensor_view<float> out) {
  throw_if<shape_error>(grey.rank() != 3 || grey.size(0) != 1, "encode_image: input ",
                        grey.shape().to_string(), " must be [1, H, W]");
  const std::int64_t h = grey.size(1), w = grey.size(2), c = encoded_channels(e);
  expect_shape("encode_image", "out", out, shape{c, h, w});
  const std::int64_t plane = h * w;
  if (e == image_encoding::grey) {
    for (std::int64_t i = 0; i < plane; ++i) out[i] = grey[i];
    return;
  }
  for (std::int64_t ch = 0; ch < 3; ++ch)
    for (std::int64_t i = 0; i < plane; ++i)
      out[ch * plane + i] = (grey[i] - imagenet_mean[ch]) / imagenet_std[ch];
}

}  // namespace ambiseg::data
