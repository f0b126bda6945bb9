// Translation unit for the axial attention kernels (one .cu per op keeps nvcc builds parallel).
#include "axial_attention.cuh"
