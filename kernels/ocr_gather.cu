// Translation unit for the OCR spatial gather (softmax rows + cuBLAS products).
#include "ocr_gather.cuh"
