// Translation unit for the concat kernels (one .cu per op keeps nvcc builds parallel).
#include "concat.cuh"
