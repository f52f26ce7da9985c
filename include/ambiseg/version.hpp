#pragma once
namespace ambiseg {
inline constexpr const char* version = "0.1.0";
inline constexpr int version_major = 0, version_minor = 1, version_patch = 0;
}  // namespace ambiseg
