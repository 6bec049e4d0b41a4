/* The few-token int4 MoE (T·K pairs of a decode step) in one persistent launch: gate+up, the split of h into
 * 8-bit records, and down with the routing weights, as tasks that blocks take in order from a counter.
 *
 * Why (docs/cuda.md, round 17): at one token the per-pair path is split(x), gate+up, split(h), down, and every
 * kernel pays a fixed ~6–7 µs (first bytes after its start, its last wave's tail): gate+up reached 52 % of copy
 * and down 44 % on their own. Here the down tiles' weights stream while the last gate+up tiles finish.
 *
 * Tasks, in ticket order: gate+up tiles (as k_tc_up<8, 4, S>: two 16-row tiles, four warps each over a quarter of H),
 * one record task per pair (the pair's h into step records once every tile of it is written), then down tiles (as
 * k_tc_down<8, S, 2, 1>: 32 rows, warp w the slots w, w + 8, …). A block asks for its next ticket while it works on
 * the current one. Tickets are handed out in order, so a block that holds a record or down ticket waits only on
 * tasks that running blocks already hold and finish without waiting: no deadlock, however many blocks are resident
 * (another stream's kernels may hold SMs). The arithmetic and its order are those of the per-pair kernels, so the
 * output is bitwise theirs (mimo_cuda_check kernels compares).
 *
 * Counters (sync, per context): [0] ticket, [1] blocks done, [2, 2 + T·K) gate+up tiles done per pair,
 * [2 + T·K, 2 + T·K + T) record warps done per token. Zero before a launch: the last block out resets them, so
 * the ticket can be taken before the wait for the previous kernel (nothing before this kernel touches them). A
 * producer stores, fences (__threadfence: its stores are visible device-wide), then counts; a consumer reads the
 * count with a volatile load, fences, and reads the data through L2 (__ldcg, cp.async.cg). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "backend/cuda/cuda_moe_tc.cuh"

enum { FU_W = 8, FU_SYNC = 2 + 64 + 8 };

__device__ __forceinline__ void fu_wait_count(const unsigned *ctr, unsigned target) {
  if (threadIdx.x == 0) {
    while (*(volatile const unsigned *)ctr < target)
      __nanosleep(64);
    __threadfence();
  }
  __syncthreads();
}

/* S ring stages; P warps share a gate+up tile (FU_W / P tiles per task); down tasks of NT 16-row tiles */
template <int S, int P, int NT>
__global__ void __launch_bounds__(FU_W * 32, 2) k_tc_fused(float *out, float *hf, char *hrec, unsigned *sync,
                                                        const char *xrec, const cu_lin *tab, const int *sel,
                                                        const float *wts, int T, int K, int I, int H, int gshift,
                                                        bool tiled) {
  extern __shared__ uint4 tc_sm[];
  __shared__ float part[FU_W][32];
  __shared__ const uint4 *sq[32];
  __shared__ const uint32_t *ss[32];
  __shared__ float sw[32];
  __shared__ int tick[2];
  constexpr int UT = FU_W / P; /* gate+up tiles per task */
  const int wp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  const int TK = T * K, nsH = H / 128, nsI = I / 128, upt = I / (TC_ROWS * UT); /* gate+up tasks per pair */
  const int n_up = TK * upt, n_rec = TK, n_dn = T * (H / (TC_ROWS * NT)), n_all = n_up + n_rec + n_dn;
  const int rec_warps = nsI < FU_W ? nsI : FU_W; /* warps of a record task that write records */
  unsigned *ticket = sync, *done = sync + 1, *up_done = sync + 2, *rec_done = sync + 2 + TK;
  char *ring = (char *)tc_sm + (size_t)wp * S * tc_ring<2>::BYTES;
  const tc_map mpH = tc_map_of(tiled, H / 32, H >> gshift), mpI = tc_map_of(tiled, I / 32, I >> gshift);
  bool waited = false; /* pdl_start done (before the first task's activations) */
  const auto first_wait = [&] {
    if (!waited)
      pdl_start();
    waited = true;
  };
  if (threadIdx.x == 0)
    tick[0] = (int)atomicAdd(ticket, 1u);
  __syncthreads();
  int cur = tick[0], par = 1;
  while (cur < n_all) {
    unsigned nxt = 0;
    if (threadIdx.x == 0)
      nxt = atomicAdd(ticket, 1u); /* needed at the end of this task */
    if (cur < n_up) {
      /* gate+up+SiLU·up of two 16-row tiles of pair tk -> hf */
      const int tk = cur / upt, pi = wp % P, r0 = ((cur % upt) * UT + wp / P) * TC_ROWS;
      const int sa = pi * nsH / P, sb = (pi + 1) * nsH / P;
      const int e = __ldcg(sel + tk); /* routed two launches back: complete when this kernel starts (cu_launch) */
      const uint4 *const q[2] = {tc_q(tab[e * 3].q, tiled, r0, g, t, H / 32), tc_q(tab[e * 3 + 1].q, tiled, r0, g, t, H / 32)};
      const uint32_t *scp = tc_sz(tab[e * 3 + (lane >> 4)].sz, tiled, r0, lane & 15, H >> gshift);
      const char *rec = xrec + (size_t)(tk / K) * nsH * TC_REC;
      float acc[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
      tc_ring_walk_after<S>(
          ring, tc_ring<2>::BYTES, sb - sa, [&](char *st, int i) { tc_fill_w<2>(st, q, scp, mpH, sa + i, gshift, lane); },
          first_wait, [&](char *st, int i) { tc_fill_r<2>(st, rec, sa + i, lane); },
          [&](const char *st, int) { tc_use<2>(acc, st, g, t, lane); });
      tc_up_part(part[wp], part[wp] + 16, acc, g, t);
      __syncthreads();
      if (pi == 0 && lane < TC_ROWS) {
        float a = 0.f, u = 0.f;
#pragma unroll
        for (int p = 0; p < P; p++) {
          a += part[wp + p][lane];
          u += part[wp + p][16 + lane];
        }
        hf[(size_t)tk * I + r0 + lane] = a / (1.0f + expf(-a)) * u;
        __threadfence();
      }
      __syncwarp();
      if (pi == 0 && lane == 0)
        atomicAdd(up_done + tk, 1u);
    } else if (cur < n_up + n_rec) {
      /* pair tk's h into its step records, once all I / 16 of its tiles are in */
      const int tk = cur - n_up;
      first_wait();
      fu_wait_count(up_done + tk, (unsigned)(I / TC_ROWS));
      for (int s = wp; s < nsI; s += FU_W)
        tc_split_step(hrec + ((size_t)tk * nsI + s) * TC_REC, __ldcg((const float4 *)(hf + (size_t)tk * I + s * 128) + lane),
                      lane);
      if (wp < rec_warps) {
        __threadfence();
        __syncwarp();
        if (lane == 0)
          atomicAdd(rec_done + tk / K, 1u);
      }
    } else {
      /* down of 32 rows of token tt over its K slots, weighted */
      const int d = cur - n_up - n_rec, tt = d / (H / (TC_ROWS * NT)), r0 = d % (H / (TC_ROWS * NT)) * TC_ROWS * NT;
      if ((int)threadIdx.x < K) { /* routed launches back, complete now (cu_launch) */
        const cu_lin *D = tab + __ldcg(sel + tt * K + threadIdx.x) * 3 + 2;
        sq[threadIdx.x] = D->q;
        ss[threadIdx.x] = D->sz;
        sw[threadIdx.x] = __ldcg(wts + tt * K + threadIdx.x);
      }
      __syncthreads();
      const int st = lane >> 4 < NT ? lane >> 4 : 0; /* the row tile whose scale words this lane fetches */
      const int ns = wp < K ? (K - wp + FU_W - 1) / FU_W : 0;
      float acc[NT][2] = {}, og[NT][2] = {};
      int wk = wp, ws = 0, rk = wp, rs = 0, uk = wp, us = 0; /* slot and step of the next fill / record / use */
      tc_ring_walk_after<S>(
          ring, tc_ring<2>::BYTES, ns * nsI,
          [&](char *stg, int) {
            const uint4 *q[NT];
#pragma unroll
            for (int m = 0; m < NT; m++)
              q[m] = tc_q(sq[wk], tiled, r0 + m * TC_ROWS, g, t, I / 32);
            tc_fill_w<NT>(stg, q, tc_sz(ss[wk], tiled, r0 + st * TC_ROWS, lane & 15, I >> gshift), mpI, ws, gshift,
                             lane);
            if (++ws == nsI) {
              ws = 0;
              wk += FU_W;
            }
          },
          [&] {
            first_wait();
            fu_wait_count(rec_done + tt, (unsigned)(K * rec_warps));
          },
          [&](char *stg, int) {
            tc_fill_r<NT>(stg, hrec + (size_t)(tt * K + rk) * nsI * TC_REC, rs, lane);
            if (++rs == nsI) {
              rs = 0;
              rk += FU_W;
            }
          },
          [&](const char *stg, int) {
            tc_use<NT>(acc, stg, g, t, lane);
            if (++us == nsI) { /* the slot's last step: weight it into the output */
              tc_weigh_slot<NT>(og, acc, sw[uk]);
              us = 0;
              uk += FU_W;
            }
          });
      tc_down_store<NT, FU_W>(&part[0][0], 32, og, out + (size_t)tt * H + r0, wp, g, t);
    }
    if (threadIdx.x == 0)
      tick[par] = (int)nxt;
    __syncthreads(); /* also: part, sq, ss, sw are free for the next task */
    cur = tick[par];
    par ^= 1;
  }
  first_wait(); /* a block with no task still lets the next kernel start */
  if (threadIdx.x == 0) {
    __threadfence();
    if (atomicAdd(done, 1u) == gridDim.x - 1) { /* the last block out: every other one is past its counters */
      for (int i = 0; i < 2 + TK + T; i++)
        sync[i] = 0;
      __threadfence();
    }
  }
}

typedef void (*fu_fn)(float *, float *, char *, unsigned *, const char *, const cu_lin *, const int *, const float *,
                      int, int, int, int, int, bool);
typedef struct {
  fu_fn f;
  int per_tile; /* warps per gate+up tile */
  int nt;       /* 16-row tiles per down task */
} fu_shape;
enum { FU_STAGES = 4 };
/* The first is the default (bitwise the four launches' default shapes); the others are there to be measured. */
static const fu_shape fu_shapes[] = {{k_tc_fused<FU_STAGES, 4, 2>, 4, 2},
                                     {k_tc_fused<FU_STAGES, 2, 2>, 2, 2},
                                     {k_tc_fused<FU_STAGES, 8, 2>, 8, 2},
                                     {k_tc_fused<FU_STAGES, 4, 1>, 4, 1}};
enum { FU_NV = sizeof fu_shapes / sizeof *fu_shapes };
static int fu_v = -1;

static size_t fu_smem(void) { return (size_t)FU_W * FU_STAGES * tc_ring<2>::BYTES; }

/* MIMO_CUDA_MOE_FUSED=on and test hook: take the one launch. Off by default until it has run on a GPU: written in
 * a session that had none (docs/cuda.md, round 17); the four launches are the measured path. */
static int fu_on = -1;
extern "C" int mimo_cuda_moe_fused_on(int on) { return cu_switch(&fu_on, "MIMO_CUDA_MOE_FUSED", "on", on); }

/* Test hook and MIMO_CUDA_FUSED_VARIANT=v: the launch shape (v >= 0 sets it); returns how many there are and writes
 * a label of the current one. */
extern "C" int mimo_cuda_moe_fused_variant(int v, char *label, int n) {
  if (fu_v < 0) {
    const char *e = getenv("MIMO_CUDA_FUSED_VARIANT");
    fu_v = e && atoi(e) >= 0 && atoi(e) < FU_NV ? atoi(e) : 0;
  }
  if (v >= 0 && v < FU_NV)
    fu_v = v;
  if (label)
    snprintf(label, (size_t)n, "one launch, %d warps per gate+up tile, down tasks of %d rows", fu_shapes[fu_v].per_tile,
             16 * fu_shapes[fu_v].nt);
  return FU_NV;
}

bool cu_moe_fused_fits(int T, int K, int I, int H) {
  return mimo_cuda_moe_fused_on(-1) && T * K <= 64 && T <= 8 && K <= 32 && I % (TC_ROWS * FU_W) == 0 &&
         H % (TC_ROWS * 2) == 0 && fu_smem() <= TC_SMEM_MAX && 2 + T * K + T <= FU_SYNC;
}

/* Test hook: launches so far (a check that compares the one launch with the four knows it ran). */
static long fu_launches;
extern "C" long mimo_cuda_moe_fused_launches(void) { return fu_launches; }

void cu_moe_fused(cu_ctx *c, float *out, float *hf, void *hrec, const void *xrec, const cu_lin *tab, const int *sel,
                  const float *wts, int T, int K, int I, int H, int group, bool tiled) {
  static int blocks_per_sm[FU_NV][64]; /* per shape and device, 0 until asked */
  mimo_cuda_moe_fused_variant(-1, NULL, 0);
  const fu_shape *sh = &fu_shapes[fu_v];
  const size_t smem = fu_smem();
  const int dev = c->device >= 0 && c->device < 64 ? c->device : 0;
  int *bps = &blocks_per_sm[fu_v][dev];
  if (!*bps) {
    int n = 0;
    if (MIMO_CUDA(c, cudaFuncSetAttribute((const void *)sh->f, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          TC_SMEM_MAX)) != MIMO_OK ||
        MIMO_CUDA(c, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, sh->f, FU_W * 32, smem)) != MIMO_OK)
      return;
    *bps = n > 0 ? n : 1;
  }
  if (!cu_counters(c, &c->moe_sync, FU_SYNC, "fused moe"))
    return;
  const int ut = FU_W / sh->per_tile;
  const int n_all = T * K * (I / (TC_ROWS * ut)) + T * K + T * (H / (TC_ROWS * sh->nt));
  const int grid = *bps * c->sms < n_all ? *bps * c->sms : n_all;
  fu_launches++;
  cu_launch(c, sh->f, grid, FU_W * 32, smem, out, hf, (char *)hrec, c->moe_sync, (const char *)xrec, tab, sel, wts, T, K,
            I, H, __builtin_ctz((unsigned)group), tiled);
}
