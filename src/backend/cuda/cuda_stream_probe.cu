/* The read-stream ceiling at a kernel's size (mimo_cuda_check bench, MIMO_BENCH_ONLY=stream): how fast a kernel that
 * does nothing but read `bytes` once can be, single and back to back, against which the decode kernels' figures are
 * read. Why: the copy ceiling is measured over 2 GiB, where a launch's first bytes and last wave cost nothing; the
 * one-token MoE's kernels read 33–67 MB each, and round 20 (docs/cuda.md) left open whether any kernel streams that
 * little at the copy rate. */
#include <stdlib.h>

#include "backend/cuda/cuda_internal.h"

/* Each warp reads one contiguous run of n16 / warps 16-byte words, IF loads in flight per lane, and folds them into
 * one word that is stored only if it equals a value the data never gives (so the loads stay). */
template <int IF> __global__ void k_read_stream(const uint4 *p, size_t n16, unsigned *sink) {
  pdl_start();
  const size_t warps = (size_t)gridDim.x * blockDim.x / 32, w = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
  const int lane = threadIdx.x & 31;
  const size_t per = (n16 / warps + 32 * IF - 1) / (32 * IF) * (32 * IF), a = w * per, b = a + per < n16 ? a + per : n16;
  unsigned acc = 0;
  for (size_t i = a + lane; i < b; i += 32 * IF) {
    uint4 v[IF];
#pragma unroll
    for (int j = 0; j < IF; j++)
      if (i + 32 * j < b)
        asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                     : "=r"(v[j].x), "=r"(v[j].y), "=r"(v[j].z), "=r"(v[j].w)
                     : "l"(p + i + 32 * j));
      else
        v[j] = make_uint4(0, 0, 0, 0);
#pragma unroll
    for (int j = 0; j < IF; j++)
      acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
  }
  if (acc == 0x9e3779b9u)
    *sink = acc;
}

static int cmp_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* cuda_backend.h. Back to back: copies of >= 256 MB in all, so the 16 launches do not read from L2. */
extern "C" double mimo_cuda_read_probe(mimo_backend *be, size_t bytes, int warps_per_sm, int inflight,
                                       int back_to_back) {
  cu_ctx *c = cu(be);
  MIMO_CUDA(c, cudaSetDevice(c->device));
  int sms = 0;
  if (MIMO_CUDA(c, cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, c->device)) != MIMO_OK)
    return 0;
  int copies = (int)(((size_t)256 << 20) / bytes + 1);
  copies = copies > 64 ? 64 : copies < 2 ? 2 : copies;
  const size_t n16 = bytes / 16;
  char *buf = NULL;
  unsigned *sink = NULL;
  if (MIMO_CUDA(c, cudaMalloc((void **)&buf, n16 * 16 * copies)) != MIMO_OK ||
      MIMO_CUDA(c, cudaMalloc((void **)&sink, 4)) != MIMO_OK) {
    cudaFree(buf);
    return 0;
  }
  MIMO_CUDA(c, cudaMemsetAsync(buf, 1, n16 * 16 * copies, c->st));
  const unsigned blocks = (unsigned)(sms * (warps_per_sm / 8 > 0 ? warps_per_sm / 8 : 1));
  const auto launch = [&](int i) {
    const uint4 *p = (const uint4 *)(buf + (size_t)(i % copies) * n16 * 16);
    if (inflight >= 8)
      cu_launch(c, k_read_stream<8>, blocks, 256, 0, p, n16, sink);
    else
      cu_launch(c, k_read_stream<4>, blocks, 256, 0, p, n16, sink);
  };
  float ms[20];
  for (int r = 0; r < 23; r++) {
    mimo_cuda_timer_start(be);
    if (back_to_back)
      for (int i = 0; i < 16; i++)
        launch(r * 16 + i);
    else
      launch(r);
    const float t = mimo_cuda_timer_stop(be) / (back_to_back ? 16 : 1);
    if (r >= 3)
      ms[r - 3] = t;
  }
  qsort(ms, 20, sizeof *ms, cmp_f);
  cudaFree(buf);
  cudaFree(sink);
  return mimo_cuda_sync(be) == MIMO_OK ? 1e3 * (ms[9] + ms[10]) / 2 : 0;
}
