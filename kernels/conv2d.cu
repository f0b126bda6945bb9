// Translation unit for the cuDNN convolution (one .cu per op keeps nvcc builds parallel).
#include "conv2d.cuh"
