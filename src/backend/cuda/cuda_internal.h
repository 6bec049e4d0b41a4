/* CUDA backend internals shared by its .cu files. */
#ifndef MIMO_BACKEND_CUDA_INTERNAL_H
#define MIMO_BACKEND_CUDA_INTERNAL_H
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "core/status.h"
}

/* Device view of a linear layer (POD: also stored in device tables for the MoE). */
enum { CU_BF16 = 0, CU_F32 = 1, CU_F16 = 2, CU_INT4 = 3 };
typedef struct cu_lin {
  int fmt, out, in, group;
  const void *w;         /* dense [out][in] */
  const uint4 *q;        /* int4: 16-byte words of 32 elements of a row (nibble c%8 of 32-bit word c/8), see q4_idx */
  const uint32_t *sz;    /* int4 [out][in/group]: bf16 scale in the high half; the offset o subtracted from each
                          * nibble (the zero point, or 8 when symmetric) in the low byte */
  int tiled;             /* int4 words and scale words in the tiled order (q4_idx, sz_idx) */
  void *table;           /* MoE: device array of this layer's experts (on experts[0] only) */
} cu_lin;

typedef struct cu_block {
  void *p;
  size_t bytes;
  int used;
} cu_block;

/* Small per-step host inputs (ids, positions) on the device: staged through pinned memory so the copy is
 * asynchronous (a pageable source may make the driver wait for the stream); `done` guards the staging buffer. */
typedef struct cu_ints {
  int *dev, *pinned;
  int cap;
  cudaEvent_t done;
  bool pending;
} cu_ints;

enum { CU_BLAS_WS = 32 << 20 }; /* cuBLAS's workspace (its guide asks 32 MiB on Hopper) */

typedef struct cu_ctx {
  int device, cc, sms;
  char name[256];
  cudaStream_t st;
  cublasHandle_t blas;
  void *blas_ws;             /* cuBLAS workspace, CU_BLAS_WS bytes */
  mimo_status err;           /* first error met by an op (ops return void) */
  cu_block *blocks;          /* scratch cache: freed blocks are reused by size */
  int nblocks, capblocks;
  char **arenas;             /* weight memory, never freed before the backend */
  int narenas;
  size_t arena_used, arena_cap;
  /* --cpu-offload-gb: routed experts in pinned, mapped host memory (the kernels read it over the bus) while
   * offload_left lasts; host arenas hold them (base for cudaFreeHost, dev its device address) */
  size_t offload_left, offloaded;
  struct { char *base, *dev; } *harenas;
  int nharenas;
  size_t harena_used, harena_cap;
  cu_lin **lins;             /* host handles to free */
  int nlins, caplins;
  void *tmp;                 /* reusable temporaries: bf16 activations, dequantized weights, ids */
  size_t tmp_bytes;
  void *tmp2;
  size_t tmp2_bytes;
  bool tmp_plain, tmp2_plain; /* tmp/tmp2 from cudaMalloc (grown while capturing), not cudaMallocAsync */
  cu_ints pos;               /* rope positions (last uploaded copy in pos.pinned, pos_n of them) */
  int pos_n;
  cu_ints ids;               /* token ids for embed */
  cu_ints vis_ints, vis_seq; /* the vision ops' positions / gather indices, and sequence starts */
  char *mapped, *mapped_dev; /* pinned host memory the device reads and writes directly (cu_mapped) */
  size_t mapped_cap;
  int *fed, *fed_host;       /* the last sampled tokens on the device and their host copy (fed_n rows): the next */
  int fed_n, fed_cap;        /* step's embed reads them there instead of uploading the same ids */
  struct { double theta; int rot_dim; const float *inv; } rope_inv[4]; /* inverse frequencies per (theta, dims) */
  cudaEvent_t ev0, ev1;
  struct cu_prof *prof;      /* MIMO_CUDA_PROFILE: op timing (cuda_profile.cu), else NULL */
  unsigned *route_done;      /* k_router_route's finished-block counter (zero between launches) */
  int pdl;                   /* programmatic dependent launch usable: SM90+ device running SM90+ code (cu_launch) */
  const char *skip_kernels;  /* MIMO_CUDA_SKIP_KERNELS (measurement only, wrong results): see cu_launch */
  int extra_links;           /* MIMO_CUDA_EXTRA_LINKS (measurement only): see cu_launch */
  size_t mem_limit;          /* --gpu-memory-utilization x total (0: none); weights + KV + scratch */
  size_t mem_used;
  size_t mem_total;
  struct cu_graphs *graphs;  /* decode steps' CUDA graphs (cuda_graph.cu), NULL until the first */
  bool capturing;            /* the stream is being captured: temporaries grow by cudaMalloc, old ones deferred */
  void **deferred;           /* device buffers to free at the next wait (replaced while capturing) */
  int n_deferred, cap_deferred;
} cu_ctx;

static inline cu_ctx *cu(mimo_backend *be) { return (cu_ctx *)be->ctx; }

mimo_status cu_fail(cu_ctx *c, const char *what, const char *msg, const char *file, int line);
/* Checks a CUDA runtime call; on failure records "file:line: call: error" once and yields MIMO_E_CUDA. */
#define MIMO_CUDA(c, x)                                                                      \
  ((void)0, ({                                                                               \
    cudaError_t e_ = (x);                                                                    \
    e_ == cudaSuccess ? MIMO_OK : cu_fail((c), #x, cudaGetErrorString(e_), __FILE__, __LINE__); \
  }))
#define MIMO_CUBLAS(c, x)                                                                    \
  ({                                                                                         \
    cublasStatus_t s_ = (x);                                                                 \
    s_ == CUBLAS_STATUS_SUCCESS ? MIMO_OK : cu_fail((c), #x, cublasGetStatusString(s_), __FILE__, __LINE__); \
  })
/* After a launch. */
#define MIMO_CUDA_LAUNCHED(c) MIMO_CUDA(c, cudaGetLastError())
#define MIMO_CUDA_TRY(c, x)               \
  do {                                    \
    if (MIMO_CUDA(c, x) != MIMO_OK)       \
      return MIMO_E_CUDA;                 \
  } while (0)

/* A test switch (before/after in one run): starts as "environment variable var equals value", on >= 0 sets it;
 * returns the value before the call. */
static inline int cu_switch(int *state, const char *var, const char *value, int on) {
  if (*state < 0) {
    const char *e = getenv(var);
    *state = e && !strcmp(e, value);
  }
  const int o = *state;
  if (on >= 0)
    *state = on;
  return o;
}

/* Head dims any attention path takes (the scalar kernel's shared query row). */
enum { ATT_MAXD = 256, ATT_MAXV = 256 };

/* A cached layer as kernels address it (backend.h mimo_kv_view, kv_cache.c): sliding layers a ring of cap slots in
 * k/v, full layers paged through the device block table bt; elements float32, or bf16 (offsets count elements). */
struct kv_ref {
  void *k, *v;
  void *const *bt;
  int koff, voff, cap, ring, bf16;
};
static inline kv_ref kv_ref_of(const mimo_kv_view *kv) {
  return kv_ref{kv->k, kv->v, kv->blocks, kv->k_off, kv->v_off, kv->cap, kv->ring, kv->bf16};
}
/* Whether r names a cache (the batched kernels take it per sequence). */
__host__ __device__ __forceinline__ bool kv_set(const kv_ref &r) { return r.ring ? r.k != nullptr : r.bt != nullptr; }
/* Position p's keys (isv = 0) or values of every kv head, `row` = n_kv · dim elements. */
__device__ __forceinline__ void *kv_row(const kv_ref &r, int p, int isv, int row) {
  const size_t es = r.bf16 ? 2 : 4;
  if (r.ring)
    return (char *)(isv ? r.v : r.k) + (size_t)(p % r.cap) * row * es;
  return (char *)r.bt[p >> MIMO_KV_BLOCK_LOG2] +
         ((size_t)(isv ? r.voff : r.koff) + (size_t)(p & (MIMO_KV_BLOCK - 1)) * row) * es;
}
/* Element i of a cache row as float (exact for bf16). */
__device__ __forceinline__ float kv_get(const void *row, size_t i, int bf16) {
  return bf16 ? __uint_as_float((uint32_t)((const uint16_t *)row)[i] << 16) : ((const float *)row)[i];
}
/* x as the cache keeps it: bf16 rounds to nearest even (as the host's mimo_f32_to_bf16, NaN kept NaN). */
__device__ __forceinline__ uint16_t kv_bf16_bits(float x) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}
__device__ __forceinline__ float kv_round(float x, int bf16) {
  return bf16 ? __uint_as_float((uint32_t)kv_bf16_bits(x) << 16) : x;
}
/* Four bf16 cache elements (8 bytes) widened to floats (exact), and two floats packed as the cache keeps them. */
__device__ __forceinline__ float4 kv_widen4(uint2 u) {
  return make_float4(__uint_as_float(u.x << 16), __uint_as_float(u.x & 0xffff0000u), __uint_as_float(u.y << 16),
                     __uint_as_float(u.y & 0xffff0000u));
}
__device__ __forceinline__ uint32_t kv_pack2(float a, float b) {
  return kv_bf16_bits(a) | (uint32_t)kv_bf16_bits(b) << 16;
}
__device__ __forceinline__ void kv_store(void *row, size_t i, float x, int bf16) {
  if (bf16)
    ((uint16_t *)row)[i] = kv_bf16_bits(x);
  else
    ((float *)row)[i] = x;
}

/* Programmatic dependent launch (SM90, issue 5's decode step): a kernel launched by cu_launch may be scheduled
 * while the kernel before it on the stream is still finishing, so its launch latency and its first weight loads
 * overlap the previous kernel's tail (at batch 1 a decode step is ~50 dependent launches of a few µs each).
 * The contract of a kernel launched that way:
 * - before pdl_start() it reads only constant data (weights, tables built at load, host memory the host filled
 *   before the launch) or, through L2 (__ldcg), what a launch at least two back on the stream wrote, and it writes
 *   no global memory;
 * - pdl_start() waits until the previous kernel has finished and its writes are visible, then lets the next
 *   kernel be scheduled. Every kernel calls it after its own wait, so when a kernel starts, the one before it has
 *   passed its wait: everything two launches back is complete.
 * On devices or builds below SM90 both are no-ops and cu_launch launches normally. */
__device__ __forceinline__ void pdl_start() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}
/* Test hook and MIMO_CUDA_PDL=off: launch every kernel fully serialised (before/after in one run). */
extern "C" int mimo_cuda_pdl_off(int on);
static inline bool cu_pdl(cu_ctx *c) { return c->pdl && !mimo_cuda_pdl_off(-1); }
/* MIMO_CUDA_SKIP_KERNELS=name,name...: a measurement knob, never for results. A kernel launched by cu_launch whose
 * name contains one of the comma-separated parts is replaced by an empty one-block kernel that keeps the dependent
 * launch chain (so the kernels after it still find everything two launches back complete): the step's time without
 * that kernel's work is the most that fusing it into a neighbour could save. Outputs are wrong while it is set. */
bool cu_skip_kernel(cu_ctx *c, const void *k); /* true: the stand-in was launched instead */
/* MIMO_CUDA_EXTRA_LINKS=n: n stand-ins before every kernel cu_launch launches (results unchanged): the step's time
 * grows by what one more kernel in the dependent chain costs, i.e. what removing one by fusion could save. */
void cu_extra_links(cu_ctx *c);
/* Launches k<<<g, b, smem, c->st>>>(args...), programmatically dependent on the previous kernel where cu_pdl(c), with
 * no measurement knob applied (the knobs' own stand-ins go through here). */
template <typename... P, typename... A>
static inline void cu_launch_now(cu_ctx *c, void (*k)(P...), dim3 g, dim3 b, size_t smem, A... args) {
  cudaLaunchAttribute at[1];
  at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  at[0].val.programmaticStreamSerializationAllowed = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = g;
  cfg.blockDim = b;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = c->st;
  cfg.attrs = at;
  cfg.numAttrs = cu_pdl(c) ? 1 : 0;
  MIMO_CUDA(c, cudaLaunchKernelEx(&cfg, k, args...));
}
/* Launches k<<<g, b, smem, c->st>>>(args...), programmatically dependent on the previous kernel where cu_pdl(c);
 * k must keep the contract above. A launch error is recorded like MIMO_CUDA_LAUNCHED. */
template <typename... P, typename... A>
static inline void cu_launch(cu_ctx *c, void (*k)(P...), dim3 g, dim3 b, size_t smem, A... args) {
  if (c->skip_kernels && cu_skip_kernel(c, (const void *)k))
    return;
  if (c->extra_links)
    cu_extra_links(c);
  cu_launch_now(c, k, g, b, smem, args...);
}

static inline unsigned cdiv(long a, long b) { return (unsigned)((a + b - 1) / b); }

/* Temporaries (grown on demand; contents do not survive the next call). */
void *cu_tmp(cu_ctx *c, size_t bytes);
void *cu_tmp2(cu_ctx *c, size_t bytes);
/* bytes of pinned host memory that kernels read and write through *dev (zero-copy: no stream op between them and
 * the host); contents do not survive the next call, whose caller must have waited for the stream first. */
void *cu_mapped(cu_ctx *c, size_t bytes, void **dev);
/* Scratch from the cache (step activations). */
float *cu_alloc(mimo_backend *be, size_t n);
void cu_release(mimo_backend *be, float *p);

/* cuda_graph.cu: graph_begin/graph_end of the backend table; frees the graphs at the backend's end */
void cu_graphs_install(mimo_backend *be);
void cu_graphs_free(cu_ctx *c);
/* Frees p after the next wait for the stream (queued work or a captured graph may still read it). */
void cu_defer_free(cu_ctx *c, void *p);

/* cuda_ops.cu: sets the small ops of the backend table; frees their staging at the backend's end */
void cu_ops_install(mimo_backend *be);
void cu_vision_install(mimo_backend *be); /* the vision tower's ops (cuda_vision.cu) */
/* n ints from the host to u's device buffer, stream-ordered through pinned memory; NULL on failure (recorded). */
int *cu_upload_ints(cu_ctx *c, cu_ints *u, const int *src, int n);
/* The device table of RoPE inverse frequencies mimo_rope_inv_freq(theta, d, rot_dim), d < rot_dim / 2. */
const float *cu_rope_inv(cu_ctx *c, double theta, int rot_dim);
void cu_ops_free(cu_ctx *c);
/* cuda_linear.cu */
void cu_linear(mimo_backend *be, float *y, const float *x, int T, const mimo_linear *W);
void cu_linear_dev(cu_ctx *c, float *y, const float *x, int T, const cu_lin *L);
/* cuda_linear_x3.cu: an fp32 linear as three tf32 products on SM90a wgmma where the shape fits (MIMO_CUDA_F32_GEMM=sgemm
 * turns it off); false: not taken (the caller runs SGEMM) */
bool cu_linear_x3(cu_ctx *c, float *y, const float *x, int T, const cu_lin *L);
mimo_status cu_upload_linear(mimo_backend *be, mimo_linear *W);
/* A routed expert's weight: into pinned host memory while --cpu-offload-gb lasts, else as cu_upload_linear. */
mimo_status cu_upload_linear_cold(mimo_backend *be, mimo_linear *W);
void *cu_arena(cu_ctx *c, size_t bytes);
/* bytes of pinned host memory mapped into the device's address space, for weights (--cpu-offload-gb); its device
 * address, NULL with the error recorded when the host has none to give */
void *cu_host_arena(cu_ctx *c, size_t bytes);
/* *slot, or on first use n zeroed unsigned counters from the arena (kernels leave them zero between launches);
 * NULL on failure (recorded, naming what). */
unsigned *cu_counters(cu_ctx *c, unsigned **slot, size_t n, const char *what);
/* cuda_attention.cu, cuda_moe.cu */
void cu_attention(mimo_backend *be, mimo_attn_args *a);
void cu_attention_seqs(mimo_backend *be, mimo_attn_args *a, int n);
void cu_moe(mimo_backend *be, mimo_moe_args *a);
/* cuda_moe_gemm.cu: grouped tensor-core experts (prefill) for local experts [e0, e0+n_local), after the routing;
 * tc_decode: the tensor-core decode kernels could take this MoE instead (a higher threshold) */
bool cu_moe_grouped_fits(cu_ctx *c, const mimo_moe_args *a, int n_local, bool tc_decode);
void cu_moe_grouped(mimo_backend *be, const mimo_moe_args *a, const cu_lin *tab, const int *sel, const float *wts,
                    int e0, int n_local);
/* cuda_moe_tc.cu: int4 decode experts on tensor cores (groups of 128k, H and I multiples of 128), after
 * the routing. hf: T·K·I floats; hrec, xrec: cu_moe_tc_scratch bytes (8-bit step records, see the file). */
bool cu_moe_tc_fits(const cu_lin *L0, int H, int I, int K);
void cu_moe_tc(cu_ctx *c, float *out, float *hf, void *hrec, void *xrec, const float *x, const cu_lin *tab,
               const int *sel, const float *wts, int T, int K, int I, int H, int group, bool tiled);
/* Bytes of the tensor-core decode's 8-bit step records of n vectors of len inputs (x: n = T; h: n = T·K). */
size_t cu_moe_tc_scratch(int n, int len);
/* The same kernels with the step's (token, slot) pairs grouped by expert (from mimo_cuda_moe_tcg_min_t tokens):
 * each local expert [e0, e0 + n_local) is read once per 4 pairs that chose it; sel and wts as routed. */
bool cu_moe_tcg_fits(int T, int n_local);
void cu_moe_tcg(mimo_backend *be, float *out, const float *x, const cu_lin *tab, const int *sel, const float *wts,
                int T, int K, int I, int H, int group, bool tiled, int e0, int n_local);
/* cuda_moe_gemm.cu: out[t] = Σ over k, in order, of y[slot[t·K + k]] (rows of H; slot −1: nothing) */
void cu_moe_combine(cu_ctx *c, float *out, const float *y, const int *slot, int T, int H, int K);
/* cuda_profile.cu: MIMO_CUDA_PROFILE=1 wraps the op table with timing events; flush after each download's
 * wait, report (stderr) and free at the backend's end. */
typedef struct cu_prof cu_prof;
void cu_profile_install(mimo_backend *be);
void cu_profile_flush(cu_ctx *c);
/* Waits for the stream and returns the first error any op met (download's second half). */
mimo_status cu_wait(cu_ctx *c);
/* backend op `sample` (cuda_sample.cu) */
extern "C" mimo_status cu_sample(mimo_backend *be, float *logits, int rows, int V, const mimo_sample_job *jobs,
                                 int *tokens, mimo_sample_info *infos);
void cu_profile_report(cu_ctx *c);
/* cuda_moe_route.cu: router GEMV + sigmoid / biased top-k / renormalise into sel [T][K], wts [T][K];
 * z: cu_moe_route_scratch(T, E) floats of scratch. */
void cu_moe_route(cu_ctx *c, float *z, const float *x, int T, const cu_lin *router, const float *bias, int E, int K,
                  int norm, float scaling, int *sel, float *wts);
size_t cu_moe_route_scratch(int T, int E);
/* cuda_moe.cu: the phase events of the test hook (no-op when unset) */
void cu_moe_mark(cu_ctx *c, int i);
/* test hook: NULL or five cudaEvent_t recorded around router, routing, gate+up, down */
extern "C" void mimo_cuda_moe_events(void *ev5);

/* Warp-wide dot of row r of L with x (fp32, in floats): every lane gets the sum. */
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

/* cp.async (sm_80+): global -> shared without a register round trip; L2-only (.cg) for streams read once. */
__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void cp16(void *dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(__cvta_generic_to_global(src))
               : "memory");
}
__device__ __forceinline__ void cp4(void *dst, const void *src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_u32(dst)), "l"(__cvta_generic_to_global(src))
               : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
/* Waits until at most N of this thread's committed groups are still in flight. */
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

/* Where int4 word j (inputs 32j..32j+31) of row r and the scale word of row r, group gi, sit. Row-major (the
 * checkpoint's order), or tiled when in % 128 == 0 and out % 16 == 0: [16-row tile][128-input step][row % 16 >= 8]
 * [row % 8][j % 4] words and [tile][group][row % 16] scale words, so that one step of a 16-row tile is 1 KB
 * contiguous and a warp's load of rows g, g + 8 two 512-byte runs (the decode kernels stream tiles; in the
 * checkpoint's order a step is 16 pieces of 64 B at a row's stride, which the DRAM serves at ~15 % less). */
__host__ __device__ __forceinline__ size_t q4_idx(bool tiled, int n16, int r, int j) {
  return tiled ? ((size_t)(r >> 4) * (n16 >> 2) + (j >> 2)) * 64 + ((r >> 3) & 1) * 32 + (r & 7) * 4 + (j & 3)
               : (size_t)r * n16 + j;
}
__host__ __device__ __forceinline__ size_t sz_idx(bool tiled, int groups, int r, int gi) {
  return tiled ? ((size_t)(r >> 4) * groups + gi) * 16 + (r & 15) : (size_t)r * groups + gi;
}

__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }

/* 8 weights of a dense row at element k (16-byte aligned for bf16/f16). */
template <int FMT> __device__ __forceinline__ void load8(const void *w, size_t k, float *o) {
  if (FMT == CU_BF16) {
    uint4 u = __ldg((const uint4 *)((const uint16_t *)w + k));
    o[0] = bf16_lo(u.x); o[1] = bf16_hi(u.x); o[2] = bf16_lo(u.y); o[3] = bf16_hi(u.y);
    o[4] = bf16_lo(u.z); o[5] = bf16_hi(u.z); o[6] = bf16_lo(u.w); o[7] = bf16_hi(u.w);
  } else if (FMT == CU_F16) {
    uint4 u = __ldg((const uint4 *)((const uint16_t *)w + k));
    const __half2 *h = (const __half2 *)&u;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      float2 f = __half22float2(h[i]);
      o[2 * i] = f.x; o[2 * i + 1] = f.y;
    }
  } else {
    float4 a = __ldg((const float4 *)((const float *)w + k)), b = __ldg((const float4 *)((const float *)w + k) + 1);
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w; o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
  }
}

/* A lane's batch of a dense row's stream: 4 × 8 weights at k, k + 256, k + 512, k + 768 (all loads issued before
 * the first use, so that a warp keeps 2 KB in flight: one load at a time left the memory system idle between round
 * trips), and its dot with x (one order, whoever loaded the batch). */
template <int FMT> __device__ __forceinline__ void load_batch4(const cu_lin &L, size_t base, int k, float (&w)[4][8]) {
#pragma unroll
  for (int u = 0; u < 4; u++)
    load8<FMT>(L.w, base + k + u * 256, w[u]);
}
__device__ __forceinline__ float dot_batch4(const float (&w)[4][8], const float *x, int k, float acc) {
#pragma unroll
  for (int u = 0; u < 4; u++) {
    const float4 x0 = *(const float4 *)(x + k + u * 256), x1 = *(const float4 *)(x + k + u * 256 + 4);
    acc += w[u][0] * x0.x + w[u][1] * x0.y + w[u][2] * x0.z + w[u][3] * x0.w + w[u][4] * x1.x + w[u][5] * x1.y +
           w[u][6] * x1.z + w[u][7] * x1.w;
  }
  return acc;
}

/* Dense row r · x from the lane's element k (k ≡ 8·lane mod 256) to k1, added to acc: batches of 4 steps of 256,
 * then single steps. */
template <int FMT>
__device__ __forceinline__ float warp_dot_dense_from(const cu_lin &L, int r, const float *x, int k, int k1, float acc) {
  const size_t base = (size_t)r * L.in;
  for (; k + 3 * 256 < k1; k += 4 * 256) {
    float w[4][8];
    load_batch4<FMT>(L, base, k, w);
    acc = dot_batch4(w, x, k, acc);
  }
  for (; k < k1; k += 256) {
    float w[8];
    load8<FMT>(L.w, base + k, w);
    float4 x0 = *(const float4 *)(x + k), x1 = *(const float4 *)(x + k + 4);
    acc += w[0] * x0.x + w[1] * x0.y + w[2] * x0.z + w[3] * x0.w + w[4] * x1.x + w[5] * x1.y + w[6] * x1.z +
           w[7] * x1.w;
  }
  return acc;
}

/* Dense row · x over elements [k0, k1) (multiples of 8): each lane takes 8 consecutive weights per step. */
template <int FMT>
__device__ __forceinline__ float warp_dot_dense_range(const cu_lin &L, int r, const float *x, int lane, int k0, int k1) {
  return warp_dot_dense_from<FMT>(L, r, x, k0 + lane * 8, k1, 0.f);
}

/* Dense row · x: each lane takes 8 consecutive weights (16 bytes of bf16) per step. */
template <int FMT> __device__ __forceinline__ float warp_dot_dense(const cu_lin &L, int r, const float *x, int lane) {
  return warp_sum(warp_dot_dense_range<FMT>(L, r, x, lane, 0, L.in));
}

/* int4 row · x: each lane takes 16 bytes (32 weights) per step, each byte read once.
 * A nibble u becomes the float 2^23 + u by OR-ing it into the exponent pattern
 * (no int->float conversion, which runs at a quarter rate); subtracting 2^23 + o
 * gives u − o exactly; the group's scale multiplies the 8-weight partial sum. */
__device__ __forceinline__ float int4_word(uint32_t w, uint32_t sz, const float *x) {
  const float4 x0 = *(const float4 *)x, x1 = *(const float4 *)(x + 4);
  const float base = __uint_as_float(0x4b000000u | (sz & 0xffu));
#define MIMO_NIB(i) (__uint_as_float(0x4b000000u | ((w >> (4 * (i))) & 15u)) - base)
  float d = MIMO_NIB(0) * x0.x;
  d = fmaf(MIMO_NIB(1), x0.y, d);
  d = fmaf(MIMO_NIB(2), x0.z, d);
  d = fmaf(MIMO_NIB(3), x0.w, d);
  d = fmaf(MIMO_NIB(4), x1.x, d);
  d = fmaf(MIMO_NIB(5), x1.y, d);
  d = fmaf(MIMO_NIB(6), x1.z, d);
  d = fmaf(MIMO_NIB(7), x1.w, d);
#undef MIMO_NIB
  return bf16_hi(sz) * d;
}

__device__ __forceinline__ float warp_dot_int4(const cu_lin &L, int r, const float *x, int lane) {
  const int n16 = L.in / 32, groups = L.in / L.group;
  const bool tl = L.tiled;
  const uint32_t *sz = L.sz;
#define MIMO_SZ(k) __ldg(sz + sz_idx(tl, groups, r, (k) / L.group))
  float acc = 0.f;
  int i = lane;
  for (; i + 32 < n16; i += 64) { /* two 16-byte loads in flight per lane */
    uint4 a = __ldg(L.q + q4_idx(tl, n16, r, i)), b = __ldg(L.q + q4_idx(tl, n16, r, i + 32));
    int ka = i * 32, kb = (i + 32) * 32;
    acc += int4_word(a.x, MIMO_SZ(ka), x + ka) + int4_word(a.y, MIMO_SZ(ka + 8), x + ka + 8) +
           int4_word(a.z, MIMO_SZ(ka + 16), x + ka + 16) + int4_word(a.w, MIMO_SZ(ka + 24), x + ka + 24);
    acc += int4_word(b.x, MIMO_SZ(kb), x + kb) + int4_word(b.y, MIMO_SZ(kb + 8), x + kb + 8) +
           int4_word(b.z, MIMO_SZ(kb + 16), x + kb + 16) + int4_word(b.w, MIMO_SZ(kb + 24), x + kb + 24);
  }
  for (; i < n16; i += 32) {
    uint4 a = __ldg(L.q + q4_idx(tl, n16, r, i));
    int ka = i * 32;
    acc += int4_word(a.x, MIMO_SZ(ka), x + ka) + int4_word(a.y, MIMO_SZ(ka + 8), x + ka + 8) +
           int4_word(a.z, MIMO_SZ(ka + 16), x + ka + 16) + int4_word(a.w, MIMO_SZ(ka + 24), x + ka + 24);
  }
#undef MIMO_SZ
  return warp_sum(acc);
}

template <int FMT> __device__ __forceinline__ float warp_dot(const cu_lin &L, int r, const float *x, int lane) {
  if (FMT == CU_INT4)
    return warp_dot_int4(L, r, x, lane);
  return warp_dot_dense<FMT>(L, r, x, lane);
}
#endif
