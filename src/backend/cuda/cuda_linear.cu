/* y[T][out] = x[T][in] · Wᵀ on the GPU.
 *
 * Decode (T <= 4): one warp per weight row, each lane streaming 16-byte loads
 * (8 bf16 or 32 int4 weights), every token of the step against the same loads:
 * each weight byte is read once per step. Larger T: bf16 through cuBLAS (x
 * split into bf16 hi + lo, two bf16 products accumulated in fp32: fp32-accurate),
 * f32 through cuBLAS SGEMM, int4 dequantized to fp32 slabs of rows on the GPU then SGEMM.
 *
 * int4 weights are repacked at load, on the GPU: 16-byte words of 32 consecutive
 * weights of a row (what a GEMV lane reads), stored in 16-row × 128-input tiles
 * when the shape allows (q4_idx in cuda_internal.h: what the MoE decode streams),
 * and scale and zero point become one 32-bit word per (row, group): bf16 scale
 * high, offset low — one load gives both. */
#include <stdlib.h>

#include "backend/cuda/cuda_internal.h"

enum { GEMV_ROWS = 8, SMALL_T = 4 };

/* ---- load ---- */

/* The checkpoint's row-major int4 words into the tiled order (q4_idx). */
__global__ void k_tile_q4(uint4 *q, const uint4 *src, int out, int n16) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i >= (long)out * n16)
    return;
  q[q4_idx(true, n16, (int)(i / n16), (int)(i % n16))] = src[i];
}

__global__ void k_repack_sz(uint32_t *sz, const void *scale, int scale_dt, const uint32_t *zero, int out, int groups,
                            bool tiled) {
  long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i >= (long)out * groups)
    return;
  int r = (int)(i / groups), g = (int)(i % groups);
  float s;
  if (scale_dt == CU_BF16)
    s = __uint_as_float((uint32_t)((const uint16_t *)scale)[i] << 16);
  else if (scale_dt == CU_F16)
    s = __half2float(((const __half *)scale)[i]);
  else
    s = ((const float *)scale)[i];
  uint32_t off = zero ? (zero[(size_t)(r / 8) * groups + g] >> (4 * (r % 8))) & 15u : 8u;
  /* Round the scale to bf16 (exact for the checkpoint's bf16 scales). */
  uint32_t b = __float_as_uint(s);
  b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
  sz[sz_idx(tiled, groups, r, g)] = b | off;
}

/* Test hook and MIMO_CUDA_INT4_TILED=off: int4 weights uploaded after this keep the checkpoint's row-major order
 * (before/after in one run). */
static int tiled_off = -1;
extern "C" int mimo_cuda_int4_tiled_off(int on) { return cu_switch(&tiled_off, "MIMO_CUDA_INT4_TILED", "off", on); }

static int cu_fmt(mimo_dtype dt) {
  return dt == MIMO_DT_BF16 ? CU_BF16 : dt == MIMO_DT_F16 ? CU_F16 : dt == MIMO_DT_F32 ? CU_F32 : -1;
}

static mimo_status track(cu_ctx *c, cu_lin *L) {
  if (c->nlins == c->caplins) {
    int cap = c->caplins ? 2 * c->caplins : 1024;
    cu_lin **n = (cu_lin **)realloc(c->lins, (size_t)cap * sizeof *n);
    if (!n)
      return mimo_errf(MIMO_E_NOMEM, "linear handles");
    c->lins = n;
    c->caplins = cap;
  }
  c->lins[c->nlins++] = L;
  return MIMO_OK;
}

/* The weight's bytes in the backend's memory, or with host (--cpu-offload-gb) in pinned host memory that the kernels
 * read over the bus: the same layout, so every kernel takes either (copies into it go by cudaMemcpyDefault). */
static mimo_status upload_linear_to(mimo_backend *be, mimo_linear *W, bool host) {
  cu_ctx *c = cu(be);
  void *(*weight_alloc)(cu_ctx *, size_t) = host ? cu_host_arena : cu_arena;
  const cudaMemcpyKind to = host ? cudaMemcpyDefault : cudaMemcpyHostToDevice;
  cu_lin *L = (cu_lin *)calloc(1, sizeof *L);
  if (!L || track(c, L) != MIMO_OK) {
    free(L);
    return mimo_errf(MIMO_E_NOMEM, "linear handle");
  }
  L->out = W->out;
  L->in = W->in;
  if (W->fmt == MIMO_WF_DENSE) {
    L->fmt = cu_fmt(W->dt);
    if (L->fmt < 0 || W->in % 8)
      return mimo_errf(MIMO_E_INVALID, "cuda: dense weight [%d, %d] of dtype %s is not supported (in %% 8 == 0)",
                       W->out, W->in, mimo_dtype_name(W->dt));
    size_t bytes = (size_t)W->out * W->in * mimo_dtype_size(W->dt);
    void *d = weight_alloc(c, bytes);
    if (!d)
      return MIMO_E_NOMEM;
    MIMO_CUDA_TRY(c, cudaMemcpy(d, W->w, bytes, to));
    L->w = d;
  } else {
    int sfmt = cu_fmt(W->scale_dt);
    if (W->in % 32 || W->group % 8 || W->in % W->group || sfmt < 0)
      return mimo_errf(MIMO_E_INVALID, "cuda: int4 weight [%d, %d] group %d is not supported (in %% 32, group %% 8)",
                       W->out, W->in, W->group);
    L->fmt = CU_INT4;
    L->group = W->group;
    int groups = W->in / W->group;
    size_t qb = (size_t)W->out * W->in / 2, sb = (size_t)W->out * groups * mimo_dtype_size(W->scale_dt),
           zb = W->zero ? (size_t)((W->out + 7) / 8) * groups * 4 : 0;
    L->tiled = W->in % 128 == 0 && W->out % 16 == 0 && !mimo_cuda_int4_tiled_off(-1);
    void *q = weight_alloc(c, qb);
    uint32_t *sz = (uint32_t *)weight_alloc(c, (size_t)W->out * groups * 4);
    const size_t qt = L->tiled ? (qb + 255) & ~(size_t)255 : 0; /* the row-major words, before tiling */
    char *tmp = (char *)cu_tmp(c, qt + sb + zb + 512);
    if (!q || !sz || !tmp)
      return MIMO_E_NOMEM;
    MIMO_CUDA_TRY(c, cudaMemcpyAsync(L->tiled ? tmp : q, W->packed, qb, L->tiled ? cudaMemcpyHostToDevice : to, c->st));
    if (L->tiled) {
      k_tile_q4<<<cdiv((long)W->out * (W->in / 32), 256), 256, 0, c->st>>>((uint4 *)q, (const uint4 *)tmp, W->out,
                                                                            W->in / 32);
      MIMO_CUDA_TRY(c, cudaGetLastError());
    }
    char *st = tmp + qt;
    MIMO_CUDA_TRY(c, cudaMemcpyAsync(st, W->scale, sb, cudaMemcpyHostToDevice, c->st));
    uint32_t *zd = NULL;
    if (zb) {
      zd = (uint32_t *)(st + ((sb + 255) & ~(size_t)255));
      MIMO_CUDA_TRY(c, cudaMemcpyAsync(zd, W->zero, zb, cudaMemcpyHostToDevice, c->st));
    }
    long n = (long)W->out * groups;
    k_repack_sz<<<cdiv(n, 256), 256, 0, c->st>>>(sz, st, sfmt, zd, W->out, groups, L->tiled);
    MIMO_CUDA_TRY(c, cudaGetLastError());
    MIMO_CUDA_TRY(c, cudaStreamSynchronize(c->st)); /* tmp is reused by the next upload */
    L->q = (const uint4 *)q;
    L->sz = sz;
  }
  W->dev = L;
  return MIMO_OK;
}

mimo_status cu_upload_linear(mimo_backend *be, mimo_linear *W) { return upload_linear_to(be, W, false); }

/* Bytes a weight takes in backend memory (what upload_linear_to allocates for it, before rounding). */
static size_t linear_bytes(const mimo_linear *W) {
  if (W->fmt == MIMO_WF_DENSE)
    return (size_t)W->out * W->in * mimo_dtype_size(W->dt);
  return (size_t)W->out * W->in / 2 + (size_t)W->out * (W->group > 0 ? W->in / W->group : 0) * 4;
}

mimo_status cu_upload_linear_cold(mimo_backend *be, mimo_linear *W) {
  cu_ctx *c = cu(be);
  const size_t bytes = linear_bytes(W) + 512;
  if (c->offload_left < bytes)
    return upload_linear_to(be, W, false);
  MIMO_TRY(upload_linear_to(be, W, true));
  c->offload_left -= bytes;
  c->offloaded += bytes;
  return MIMO_OK;
}

/* ---- decode GEMV ---- */

template <int FMT, int MT>
__global__ void __launch_bounds__(256) k_gemv(float *y, const float *x, cu_lin L) {
  const int lane = threadIdx.x & 31, r = blockIdx.x * GEMV_ROWS + (threadIdx.x >> 5);
  const bool live = r < L.out;
  float acc[MT];
  if (FMT == CU_INT4) {
    pdl_start();
    if (!live)
      return;
    /* each token re-reads the row from L1 (it was just fetched) */
#pragma unroll
    for (int t = 0; t < MT; t++)
      acc[t] = warp_dot<FMT>(L, r, x + (size_t)t * L.in, lane);
  } else {
    /* The row's first batch is loaded before the previous kernel has finished (cu_launch) and serves every token;
     * the rest of the row is re-read from L1 for tokens after the first. */
    const int k0 = lane * 8;
    const bool head = live && k0 + 3 * 256 < L.in;
    float w0[4][8];
    if (head)
      load_batch4<FMT>(L, (size_t)r * L.in, k0, w0);
    pdl_start();
    if (!live)
      return;
#pragma unroll
    for (int t = 0; t < MT; t++) {
      const float *xt = x + (size_t)t * L.in;
      const float a = head ? dot_batch4(w0, xt, k0, 0.f) : 0.f;
      acc[t] = warp_sum(warp_dot_dense_from<FMT>(L, r, xt, head ? k0 + 4 * 256 : k0, L.in, a));
    }
  }
  if (lane == 0)
#pragma unroll
    for (int t = 0; t < MT; t++)
      y[(size_t)t * L.out + r] = acc[t];
}

/* Few rows (the fp32 router's 256, small shapes): a warp per row would leave most
 * SMs idle, so a block takes one row and its 8 warps split K, summed in a fixed order. */
template <int FMT, int MT>
__global__ void __launch_bounds__(256) k_gemv_splitk(float *y, const float *x, cu_lin L) {
  __shared__ float part[8][MT];
  pdl_start();
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, r = blockIdx.x;
  const int per = (L.in + 8 * 256 - 1) / (8 * 256) * 256, k0 = warp * per, k1 = k0 + per < L.in ? k0 + per : L.in;
#pragma unroll
  for (int t = 0; t < MT; t++) {
    float a = k0 < k1 ? warp_dot_dense_range<FMT>(L, r, x + (size_t)t * L.in, lane, k0, k1) : 0.f;
    a = warp_sum(a);
    if (lane == 0)
      part[warp][t] = a;
  }
  __syncthreads();
  if (threadIdx.x < MT) {
    float sum = 0.f;
#pragma unroll
    for (int w = 0; w < 8; w++)
      sum += part[w][threadIdx.x];
    y[(size_t)threadIdx.x * L.out + r] = sum;
  }
}

template <int FMT> static void gemv_fmt(cu_ctx *c, float *y, const float *x, int T, const cu_lin *L) {
  /* Split K below two blocks of the row kernel per SM. */
  const bool splitk = FMT != CU_INT4 && L->out < 2 * GEMV_ROWS * c->sms;
  for (int t0 = 0; t0 < T; t0 += SMALL_T) {
    int n = T - t0 < SMALL_T ? T - t0 : SMALL_T;
    float *yy = y + (size_t)t0 * L->out;
    const float *xx = x + (size_t)t0 * L->in;
    dim3 g(cdiv(L->out, GEMV_ROWS));
    if (splitk) {
      switch (n) {
      case 1: cu_launch(c, k_gemv_splitk<FMT, 1>, L->out, 256, 0, yy, xx, *L); break;
      case 2: cu_launch(c, k_gemv_splitk<FMT, 2>, L->out, 256, 0, yy, xx, *L); break;
      case 3: cu_launch(c, k_gemv_splitk<FMT, 3>, L->out, 256, 0, yy, xx, *L); break;
      default: cu_launch(c, k_gemv_splitk<FMT, 4>, L->out, 256, 0, yy, xx, *L); break;
      }
      continue;
    }
    switch (n) {
    case 1: cu_launch(c, k_gemv<FMT, 1>, g, 256, 0, yy, xx, *L); break;
    case 2: cu_launch(c, k_gemv<FMT, 2>, g, 256, 0, yy, xx, *L); break;
    case 3: cu_launch(c, k_gemv<FMT, 3>, g, 256, 0, yy, xx, *L); break;
    default: cu_launch(c, k_gemv<FMT, 4>, g, 256, 0, yy, xx, *L); break;
    }
  }
}

static void gemv(cu_ctx *c, float *y, const float *x, int T, const cu_lin *L) {
  switch (L->fmt) {
  case CU_BF16: gemv_fmt<CU_BF16>(c, y, x, T, L); break;
  case CU_F16: gemv_fmt<CU_F16>(c, y, x, T, L); break;
  case CU_F32: gemv_fmt<CU_F32>(c, y, x, T, L); break;
  default: gemv_fmt<CU_INT4>(c, y, x, T, L); break;
  }
}

/* ---- larger T ---- */

/* x = hi + lo with both in bf16 (x − hi is exact in fp32): two bf16 products
 * give an fp32-accurate result (relative error ~2^-16 instead of 2^-9). */
__global__ void k_split_bf16(__nv_bfloat16 *hi, __nv_bfloat16 *lo, const float *x, long n) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    __nv_bfloat16 h = __float2bfloat16_rn(x[i]);
    hi[i] = h;
    lo[i] = __float2bfloat16_rn(x[i] - __bfloat162float(h));
  }
}

/* Rows [r0, r0+rows) of an int4 weight as fp32 ((u − o)·s, exact). */
__global__ void k_dequant(float *o, cu_lin L, int r0, int rows) {
  long n = (long)rows * (L.in / 8);
  int groups = L.in / L.group;
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
    int r = (int)(i / (L.in / 8)), w8 = (int)(i % (L.in / 8));
    uint32_t w = ((const uint32_t *)(L.q + q4_idx(L.tiled, L.in / 32, r0 + r, w8 >> 2)))[w8 & 3];
    uint32_t sz = L.sz[sz_idx(L.tiled, groups, r0 + r, (w8 * 8) / L.group)];
    float s = __uint_as_float(sz & 0xffff0000u), off = (float)(sz & 0xffu);
    float *d = o + (size_t)r * L.in + w8 * 8;
#pragma unroll
    for (int j = 0; j < 8; j++)
      d[j] = ((float)((w >> (4 * j)) & 15u) - off) * s;
  }
}

static unsigned grid_for(long n) {
  long b = (n + 255) / 256;
  return (unsigned)(b < 8192 ? (b > 0 ? b : 1) : 8192);
}

/* Column-major view: yᵀ[out][T] = W[out][in] · xᵀ, i.e. C(out×T) = op_T(A: in×out) · B(in×T). */
static void gemm_bf16(cu_ctx *c, float *y, int ldy, const __nv_bfloat16 *xb, int T, const __nv_bfloat16 *w, int out,
                      int in, float beta) {
  const float one = 1.f;
  MIMO_CUBLAS(c, cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, out, T, in, &one, w, CUDA_R_16BF, in, xb,
                              CUDA_R_16BF, in, &beta, y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void cu_linear_dev(cu_ctx *c, float *y, const float *x, int T, const cu_lin *L) {
  if (T <= SMALL_T || L->fmt == CU_F16) {
    gemv(c, y, x, T, L);
    return;
  }
  if (L->fmt == CU_F32) {
    if (cu_linear_x3(c, y, x, T, L))
      return;
    const float one = 1.f, zero = 0.f;
    MIMO_CUBLAS(c, cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, L->out, T, L->in, &one, (const float *)L->w, L->in,
                               x, L->in, &zero, y, L->out));
    return;
  }
  if (L->fmt == CU_BF16) {
    __nv_bfloat16 *xb = (__nv_bfloat16 *)cu_tmp(c, (size_t)T * L->in * 4);
    if (!xb)
      return;
    __nv_bfloat16 *lo = xb + (size_t)T * L->in;
    k_split_bf16<<<grid_for((long)T * L->in), 256, 0, c->st>>>(xb, lo, x, (long)T * L->in);
    MIMO_CUDA_LAUNCHED(c);
    gemm_bf16(c, y, L->out, xb, T, (const __nv_bfloat16 *)L->w, L->out, L->in, 0.f);
    gemm_bf16(c, y, L->out, lo, T, (const __nv_bfloat16 *)L->w, L->out, L->in, 1.f);
    return;
  }
  /* int4 (in the model only the experts are int4, and they take the MoE path):
   * dequantize a slab of rows to fp32 (<= 32 MB) and SGEMM it; y columns [r0, r0+rows). */
  int slab = (int)(((size_t)32 << 20) / ((size_t)L->in * 4));
  slab = slab < 64 ? 64 : slab - slab % 64;
  if (slab > L->out)
    slab = L->out;
  float *wd = (float *)cu_tmp2(c, (size_t)slab * L->in * 4);
  if (!wd)
    return;
  const float one = 1.f, zero = 0.f;
  for (int r0 = 0; r0 < L->out; r0 += slab) {
    int rows = L->out - r0 < slab ? L->out - r0 : slab;
    k_dequant<<<grid_for((long)rows * L->in / 8), 256, 0, c->st>>>(wd, *L, r0, rows);
    MIMO_CUDA_LAUNCHED(c);
    MIMO_CUBLAS(c, cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, rows, T, L->in, &one, wd, L->in, x, L->in, &zero,
                               y + r0, L->out));
  }
}

void cu_linear(mimo_backend *be, float *y, const float *x, int T, const mimo_linear *W) {
  cu_ctx *c = cu(be);
  if (!W->dev) {
    cu_fail(c, "linear", "weight not uploaded", __FILE__, __LINE__);
    return;
  }
  cu_linear_dev(c, y, x, T, (const cu_lin *)W->dev);
}
