// Translation unit for the loss kernels (one .cu per op keeps nvcc builds parallel).
#include "losses.cuh"
