// Translation unit for the pyramid sampling kernels.
#include "pyramid_sampling.cuh"
