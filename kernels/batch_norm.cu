// Translation unit for the batch norm kernels (cuDNN spatial batch norm + eval kernels).
#include "batch_norm.cuh"
