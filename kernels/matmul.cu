// Translation unit for the cuBLAS GEMM and matmul (one .cu per op keeps nvcc builds parallel).
#include "matmul.cuh"
