// Translation unit for the resize kernels (one .cu per op keeps nvcc builds parallel).
#include "resize.cuh"
