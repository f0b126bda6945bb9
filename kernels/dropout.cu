// Translation unit for the dropout kernels (one .cu per op keeps nvcc builds parallel).
#include "dropout.cuh"
