// Translation unit for the optimizer kernels (one .cu per op keeps nvcc builds parallel).
#include "optimizer.cuh"
