#include <cstdio>

#include <segkit/ops/activation.hpp>

int main() {
  auto x = segkit::from_vector<float>({4}, {-1.f, 2.f, -3.f, 4.f});
  segkit::host_tensor<float> y(x.shape());
  segkit::ops::activation_forward({segkit::ops::activation::relu}, x, y);
  const bool ok = y[0] == 0.f && y[1] == 2.f && y[2] == 0.f && y[3] == 4.f;
  std::printf("consumer: relu %s\n", ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}
