// Translation unit for the softmax kernels (one .cu per op keeps nvcc builds parallel).
#include "softmax.cuh"
