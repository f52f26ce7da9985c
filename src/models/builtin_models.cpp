// The built-in models registered on the CPU once for every program of this build
// (models/builtin_models.hpp says why).
#include "ambiseg/models/builtin_models.hpp"

namespace ambiseg::models {
bool register_builtin_models_cpu() {
  static const bool registered = register_builtin_models<cpu>();
  return registered;
}
}  // namespace ambiseg::models
