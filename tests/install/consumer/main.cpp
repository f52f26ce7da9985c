// A downstream project: only the installed headers and the exported target.
#include <ambiseg/ambiseg.hpp>

#include <iostream>

int main() {
  ambiseg::tensor<float> t(ambiseg::shape{2, 3});
  t.fill(1.5f);
  float sum = 0;
  for (float v : t) sum += v;
  std::cout << "ambiseg " << ambiseg::version << " consumer: sum " << sum << "\n";
  return sum == 9.0f ? 0 : 1;
}
