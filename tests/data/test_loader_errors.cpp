// The loaders' messages for bad input: LIDC pickle schema errors name the file, the case
// and the key; an image folder of the wrong layout names the folder and the layout; a
// truncated PNG names the file and says it is truncated.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "ambiseg/data/folders.hpp"
#include "ambiseg/data/pickle_dataset.hpp"
#include "ambiseg/io/image.hpp"
#include "scratch_dir.hpp"

namespace fs = std::filesystem;
using namespace ambiseg;
using namespace std::string_literals;
using ambiseg_test::scratch_dir;

namespace {
// Protocol-4 opcodes for the values a LIDC pickle holds (CPython's Lib/pickletools.py).
std::string str(const std::string& s) { return "\x8c"s + static_cast<char>(s.size()) + s; }
std::string list(const std::vector<std::string>& items) {
  std::string s = "](";
  for (const auto& i : items) s += i;
  return s + "e";
}
std::string dict(const std::vector<std::pair<std::string, std::string>>& items) {
  std::string s = "}(";
  for (const auto& [k, v] : items) s += str(k) + v;
  return s + "u";
}
// numpy's reduce protocol for an h × w uint8 array (zeros, or the given h·w bytes):
// _reconstruct(ndarray, (0,), b'b') then BUILD (1, (h, w), dtype('u1'), False, bytes).
std::string u8_array(int h, int w, const std::string& payload = {}) {
  std::string s = str("numpy.core.multiarray") + str("_reconstruct") + "\x93";
  s += str("numpy") + str("ndarray") + "\x93" + "K\x00\x85"s + "C\x01" "b" "\x87R"s;
  s += "(K\x01"s + "K" + static_cast<char>(h) + "K" + static_cast<char>(w) + "\x86";
  s += str("numpy") + str("dtype") + "\x93" + str("u1") + "\x89\x88\x87R";
  s += "(K\x03"s + str("|") + "NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"s;
  s += "\x89"s + "C" + static_cast<char>(h * w) +
       (payload.empty() ? std::string(static_cast<std::size_t>(h * w), '\0') : payload);
  return s + "tb";
}
fs::path write_pickle(const scratch_dir& dir, const std::string& name, const std::string& body) {
  const fs::path p = dir / name;
  std::ofstream(p, std::ios::binary) << "\x80\x04"s + body + ".";
  return p;
}
}  // namespace

TEST_CASE("lidc pickle: schema errors name the file, the case and the key", "[data][lidc][errors]") {
  using data::load_lidc_pickle;
  using Catch::Contains;
  const scratch_dir dir("loader-errors");
  auto lidc_case = [](const std::string& image, const std::string& masks) {
    return dict({{"image", image}, {"masks", masks}});
  };
  auto quoted = [](const fs::path& p) { return "'" + p.string() + "'"; };

  const auto top_list = write_pickle(dir, "top_list.pkl", list({u8_array(2, 2)}));
  CHECK_THROWS_WITH(load_lidc_pickle(top_list),
                    Contains(quoted(top_list)) && Contains("top level is a list"));

  const auto mismatch = write_pickle(
      dir, "mismatch.pkl",
      dict({{"a_slice0", lidc_case(u8_array(8, 8), list({u8_array(8, 8), u8_array(7, 8)}))}}));
  CHECK_THROWS_WITH(load_lidc_pickle(mismatch),
                    Contains(quoted(mismatch)) && Contains("case 'a_slice0' key 'masks'") &&
                        Contains("mask 1 is 7x8, image is 8x8"));

  const auto masks_str =
      write_pickle(dir, "masks_str.pkl", dict({{"b_slice3", lidc_case(u8_array(4, 4), str("oops"))}}));
  CHECK_THROWS_WITH(load_lidc_pickle(masks_str),
                    Contains(quoted(masks_str)) && Contains("case 'b_slice3' key 'masks' is a str"));

  const auto mask_item_str =
      write_pickle(dir, "mask_item_str.pkl",
                   dict({{"c_slice1", lidc_case(u8_array(4, 4), list({u8_array(4, 4), str("x")}))}}));
  CHECK_THROWS_WITH(load_lidc_pickle(mask_item_str),
                    Contains("case 'c_slice1' key 'masks': item 1 is a str, expected a NumPy array"));

  const auto no_image =
      write_pickle(dir, "no_image.pkl", dict({{"d_slice0", dict({{"masks", list({u8_array(4, 4)})}})}}));
  CHECK_THROWS_WITH(load_lidc_pickle(no_image),
                    Contains(quoted(no_image)) && Contains("case 'd_slice0' has no key 'image'"));

  const auto image_str =
      write_pickle(dir, "image_str.pkl", dict({{"e_slice0", lidc_case(str("pixels"), list({}))}}));
  CHECK_THROWS_WITH(load_lidc_pickle(image_str),
                    Contains("case 'e_slice0' key 'image' is a str, expected a NumPy array"));

  const auto case_list = write_pickle(dir, "case_list.pkl", dict({{"f_slice0", list({})}}));
  CHECK_THROWS_WITH(load_lidc_pickle(case_list), Contains("case 'f_slice0' is a list, expected a dict"));

  // A pickle parsed from memory says so instead of naming a file.
  const std::string bytes = "\x80\x04"s + list({}) + ".";
  const auto doc = io::pickle::loads(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
  CHECK_THROWS_WITH(data::lidc_cases(doc), Contains("pickle in memory") && Contains("top level is a list"));
}

TEST_CASE("image folders: a folder of the wrong layout names the folder and the layout",
          "[data][folders][errors]") {
  using Catch::Contains;
  const scratch_dir scratch("loader-errors");
  const fs::path crops = scratch.path / "crops", cimd = scratch.path / "cimd";
  const tensor<std::uint8_t> pixels = tensor<std::uint8_t>::zeros(shape{4, 4});
  // PNG files straight in images/, without patient subfolders.
  fs::create_directories(crops / "images");
  io::write_png(crops / "images" / "z-1_c0.png", pixels.cview());
  io::write_png(crops / "images" / "z-2_c0.png", pixels.cview());
  CHECK_THROWS_WITH(data::load_lidc_crops_png(crops),
                    Contains("'" + (crops / "images").string() + "' holds no patient folder") &&
                        Contains("2 files and no folders") &&
                        Contains("<root>/images/<patient>/z-<Z>_c<k>.png"));
  // Patient folders holding no PNG.
  fs::create_directories(crops / "images" / "LIDC-IDRI-0001");
  CHECK_THROWS_WITH(data::load_lidc_crops_png(crops),
                    Contains("1 patient folders") && Contains("hold no .png slice"));
  // No folder at all.
  CHECK_THROWS_WITH(data::load_lidc_crops_png(scratch.path / "nothing"),
                    Contains("'" + (scratch.path / "nothing").string() + "' is not a directory") &&
                        Contains("DeepMind LIDC crops layout"));
  // The CIMD layout: images straight in the folder, no case subfolders.
  fs::create_directories(cimd);
  io::write_png(cimd / "image_0.png", pixels.cview());
  CHECK_THROWS_WITH(data::load_cimd_folder(cimd),
                    Contains("'" + cimd.string() + "' holds no case folder") &&
                        Contains("1 file and no folders") && Contains("<dir>/<case>/image_*.jpg"));
}

TEST_CASE("image: a truncated PNG names the file and says it is truncated", "[data][image][errors]") {
  using Catch::Contains;
  const scratch_dir dir("loader-errors");
  tensor<std::uint8_t> grey(shape{40, 50});
  for (std::int64_t i = 0; i < grey.numel(); ++i) grey[i] = static_cast<std::uint8_t>(i * 7);
  const auto png = io::encode_png(grey.cview());
  const fs::path cut = dir / "cut.png";
  for (std::size_t n : {png.size() - 12, png.size() / 2, std::size_t{40}, std::size_t{20}}) {
    INFO(n << " of " << png.size() << " bytes");
    std::ofstream(cut, std::ios::binary).write(reinterpret_cast<const char*>(png.data()),
                                               static_cast<std::streamsize>(n));
    CHECK_THROWS_WITH(io::read_image(cut), Contains("read_image: '" + cut.string() + "': truncated PNG (") &&
                                               Contains("the file ends at byte " + std::to_string(n)));
  }
  // Damage that is not truncation keeps stb's reason (here: a zlib stream of zeros).
  auto damaged = png;
  std::fill(damaged.begin() + 41, damaged.begin() + 60, std::uint8_t{0});
  CHECK_THROWS_WITH(io::decode_image(damaged),
                    Contains("decode_image: truncated or corrupt PNG (") && !Contains("()"));
}

TEST_CASE("a mask with more than two labels is refused, naming the file, the case and the mask",
          "[data][errors]") {
  using Catch::Contains;
  const scratch_dir dir("loader-errors");
  auto lidc_case = [](const std::string& image, const std::string& masks) {
    return dict({{"image", image}, {"masks", masks}});
  };
  // A label map 0/1/2 as the second annotation; 0/255 is binary and loads.
  const std::string labels = "\x00\x01\x02\x00"s, binary = "\x00\xff\xff\x00"s;
  const auto three = write_pickle(
      dir, "three.pkl", dict({{"c_slice0", lidc_case(u8_array(2, 2), list({u8_array(2, 2, binary), u8_array(2, 2, labels)}))}}));
  CHECK_THROWS_WITH(data::load_lidc_pickle(three), Contains(three.string()) && Contains("case 'c_slice0'") &&
                                                       Contains("mask 1 holds the values 0, 1, 2") &&
                                                       Contains("more than two labels"));
  const auto two = write_pickle(dir, "two.pkl", dict({{"c_slice0", lidc_case(u8_array(2, 2), list({u8_array(2, 2, binary)}))}}));
  const auto cases = data::load_lidc_pickle(two);
  REQUIRE(cases.size() == 1);
  CHECK(cases[0].masks[1] == 1);
  CHECK(cases[0].masks[0] == 0);

  // The same in a folder of PNG masks (lossless: a third grey level is a label).
  const fs::path root = dir.path / "crops";
  fs::create_directories(root / "images" / "LIDC-IDRI-0001");
  fs::create_directories(root / "gt" / "LIDC-IDRI-0001");
  tensor<std::uint8_t> pixels = tensor<std::uint8_t>::zeros(shape{4, 4}), mask = tensor<std::uint8_t>::zeros(shape{4, 4});
  io::write_png(root / "images" / "LIDC-IDRI-0001" / "z-1_c0.png", pixels.cview());
  mask[1] = 1;
  mask[2] = 2;
  const fs::path bad = root / "gt" / "LIDC-IDRI-0001" / "z-1_c0_l0.png";
  io::write_png(bad, mask.cview());
  CHECK_THROWS_WITH(data::load_lidc_crops_png(root), Contains(bad.string()) && Contains("3 grey levels") &&
                                                         Contains("more than two labels"));
  mask[2] = 1;
  io::write_png(bad, mask.cview());
  CHECK(data::load_lidc_crops_png(root).size() == 1);
}
