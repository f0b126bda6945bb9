// Translation unit for the activation kernels (one .cu per op keeps nvcc builds parallel).
#include "activation.cuh"
