// Translation unit for the attention2d kernels (one .cu per op keeps nvcc builds parallel).
#include "attention2d.cuh"
