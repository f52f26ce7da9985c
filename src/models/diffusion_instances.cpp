// The diffusion policies on the CPU, instantiated once for every program of this build
// (models/diffusion_policies.hpp says why; the library stays header-only for its users).
#include "ambiseg/models/diffusion_policies.hpp"

namespace ambiseg::models {
template std::unique_ptr<diffusion_model<cpu>> make_diffusion<cpu>(const policy_choice&);
}  // namespace ambiseg::models
