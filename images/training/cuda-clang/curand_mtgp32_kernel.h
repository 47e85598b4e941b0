/* Stand-in for cuRAND's curand_mtgp32_kernel.h in the clang build's CUDA root
 * (images/training/Dockerfile, CUDA_COMPILER=clang). clang's
 * __clang_cuda_runtime_wrapper.h force-includes that header into every CUDA compile, only
 * to neutralise the blockDim/threadIdx redeclarations it would make if a file included
 * it later; Horovod's cuda_kernels.cu uses no cuRAND, and the real header needs the
 * cuRAND wheel and newer libcu++ headers. Empty on purpose. */
