// Translation unit for the pyramid fuser kernels (one .cu per op keeps nvcc builds parallel).
#include "pyramid_fuse.cuh"
