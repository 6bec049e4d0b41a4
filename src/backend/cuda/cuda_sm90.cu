/* Host side of cuda_sm90.cuh: the tensor-map encoder and the sm_90a probe. */
#include <atomic>

#include "backend/cuda/cuda_sm90.cuh"

PFN_cuTensorMapEncodeTiled_v12000 cu_tmap_encoder(void) {
  /* looked up once; a function-local static is initialised once even with several GPUs' threads calling */
  static const PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void *f = NULL;
    cudaDriverEntryPointQueryResult q;
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) == cudaSuccess &&
        q == cudaDriverEntryPointSuccess)
      return (PFN_cuTensorMapEncodeTiled_v12000)f;
    (void)cudaGetLastError();
    return (PFN_cuTensorMapEncodeTiled_v12000)NULL;
  }();
  return fn;
}

/* Compiled into every target of the build; the PTX version of the code the driver loaded for it tells which. */
__global__ void k_sm90a_probe(int *p) {
  if (p)
    *p = 0;
}

bool cu_runs_sm90a(cu_ctx *c) {
  if (c->cc != 90)
    return false;
  static std::atomic<signed char> code[64]; /* per device: 0 not asked yet, 1 no, 2 yes */
  const int dev = c->device;
  signed char k = dev < 64 ? code[dev].load(std::memory_order_relaxed) : 0;
  if (!k) {
    cudaFuncAttributes fa;
    const bool ok = cudaFuncGetAttributes(&fa, k_sm90a_probe) == cudaSuccess;
    if (!ok)
      (void)cudaGetLastError();
    k = ok && fa.ptxVersion >= 90 ? 2 : 1;
    if (dev < 64)
      code[dev].store(k, std::memory_order_relaxed);
  }
  return k == 2;
}
