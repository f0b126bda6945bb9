// Translation unit for the elementwise kernels (one .cu per op keeps nvcc builds parallel).
#include "elementwise.cuh"
