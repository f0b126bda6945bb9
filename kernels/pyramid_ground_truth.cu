// Translation unit for the pyramidal ground-truth kernels (one .cu per op keeps nvcc builds parallel).
#include "pyramid_ground_truth.cuh"
