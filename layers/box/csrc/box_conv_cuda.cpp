// Python bindings of the CUDA box-convolution kernels (box_conv_cuda.cu).
#include "box_conv_host.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "farconv box convolution, CUDA kernels";
  farconv::box::bind<farconv::box::CudaBackend>(m);
}
