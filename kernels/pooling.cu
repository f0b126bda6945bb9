// Translation unit for the pooling kernels (max, average, adaptive average).
#include "pooling.cuh"
