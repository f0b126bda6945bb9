// Must NOT compile: the residual body turns 16 channels into 32, so the skip connection
// cannot add its input to the body's output. The channel_mismatch_is_a_compile_error test
// checks that the compiler's first error is segkit's one-line static_assert message.
#include "segkit/nn/network.hpp"

namespace nn = segkit::nn;
using broken = nn::seq<nn::conv<16>, nn::residual<nn::seq<nn::conv<32>, nn::relu>>>;

int main() {
  nn::network<3, broken> net;
  return static_cast<int>(net.parameter_count() % 2);
}
