/* Sampling where the logits are (backend op `sample`): each sampled row's steps of engine/sampler.h run on the
 * row in device memory, by one block, or while rows leave SMs idle by a cluster of up to 16 blocks (SM90), and
 * only the tokens (and asked-for logprobs) come back, instead of vocab floats per row to a host loop.
 *
 * The order "value desc, then id asc" is found without sorting the row: values map to order-preserving 32-bit
 * keys, and a selection finds the key and id of the k-th best (top-k, the top-N logprobs) or of the element where
 * the mass in that order reaches a target (top-p): a pass on 2048 bins linear in the value, then the crossing
 * bin's ids sorted in shared memory (at most 4096 of them; more, as with many tied values, and 8-bit key digits
 * inside the bin plus a tie cut in id order take over). At most 1024 candidates (after top-k, or few left by
 * min-p) are sorted in shared memory from the start. The draw walks ids in ascending order, as the host sampler
 * does, so the same logits and uniform give the same token on either. */
#include <float.h>
#include <limits.h>
#include <math.h>

#include "backend/cuda/cuda_internal.h"

#include "backend/cuda/cuda_sample_block.cuh"

/* This thread's contiguous share of ids [0, L), for the steps that go in id order (the group's threads in rank
 * order). */
__device__ __forceinline__ void my_chunk(int L, int &c0, int &c1) {
  const int nt = SNT * grp_size(), ch = (L + nt - 1) / nt;
  c0 = min(L, (grp_rank() * SNT + (int)threadIdx.x) * ch);
  c1 = min(L, c0 + ch);
}

/* The id of the r-th (1-based, in id order) counted id with key K; every thread gets it. */
__device__ int tie_cut(const sview &s, int L, uint32_t K, int r, sshared *sh) {
  int c0, c1, n = 0;
  my_chunk(L, c0, c1);
  chunk_pass(s.x, c0, c1, [&](int i, float xi) {
    float v;
    uint32_t k;
    n += s.test(i, xi, v, k) && k == K;
    return false;
  });
  const int pre = group_exscan<int>(n, sh->red_i, sh);
  int found = -1;
  if (pre < r && r <= pre + n) {
    int c = pre;
    chunk_pass(s.x, c0, c1, [&](int i, float xi) {
      float v;
      uint32_t k;
      if (s.test(i, xi, v, k) && k == K && ++c == r) {
        found = i;
        return true;
      }
      return false;
    });
  }
  return group_max_int(found, sh); /* one thread of the group found it */
}

__device__ void hist_clear(sshared *sh) {
  for (int b = threadIdx.x; b < HCOPIES * 256; b += SNT) {
    sh->hist[0][b] = 0;
    sh->massfx[0][b] = 0;
  }
  __syncthreads();
}

/* After the adds: the copies summed into copy 0, and then the group's blocks' copies 0 into each one's copy 0
 * (integer sums: every block gets the same). */
__device__ void hist_fold(sshared *sh) {
  __syncthreads();
  for (int b = threadIdx.x; b < 256; b += SNT)
    for (int c = 1; c < HCOPIES; c++) {
      sh->hist[0][b] += sh->hist[c][b];
      sh->massfx[0][b] += sh->massfx[c][b];
    }
  __syncthreads();
  const int G = grp_size();
  if (G == 1)
    return;
  static_assert(SNT % 256 == 0 && HCOPIES >= 2 + SNT / 256, "a partial sum per quarter of the threads");
  cl_sync(); /* every block's copy 0 is final */
  const int b = threadIdx.x & 255, q = threadIdx.x >> 8;
  constexpr int NR = GMAX / (SNT / 256); /* ranks a thread reads: all loads issued before any is used */
  unsigned nr[NR];
  unsigned long long mr[NR];
#pragma unroll
  for (int i = 0; i < NR; i++) {
    const int r = q + i * (SNT / 256);
    nr[i] = r < G ? cl_ld32(cl_addr(&sh->hist[0][b], r)) : 0u;
    mr[i] = r < G ? cl_ld64(cl_addr(&sh->massfx[0][b], r)) : 0ull;
  }
  unsigned n = 0;
  unsigned long long m = 0;
#pragma unroll
  for (int i = 0; i < NR; i++)
    n += nr[i], m += mr[i];
  sh->hist[2 + q][b] = n;
  sh->massfx[2 + q][b] = m;
  cl_sync(); /* nobody reads another block's copy 0 any more */
  if (q == 0) {
    for (int c = 3; c < 2 + SNT / 256; c++) {
      n += sh->hist[c][b];
      m += sh->massfx[c][b];
    }
    sh->hist[0][b] = n;
    sh->massfx[0][b] = m;
  }
  __syncthreads();
}

/* After the adds of a pass into the flat histogram (NLIN bins over the copies' storage): the group's blocks' sums
 * into each one's (integer sums: every block gets the same). Reduce-scatter, then all-gather: block r adds up
 * slice r of everyone's histogram into its own (nobody else reads that slice of it meanwhile), then every block
 * copies the other slices from their owners. Each block reads about two histograms' worth, not G. */
__device__ void lin_hist_group(sshared *sh) {
  __syncthreads();
  const int G = grp_size();
  if (G == 1)
    return;
  static_assert(NLIN == HCOPIES * 256 && NLIN % SNT == 0, "the flat histogram is the copies' storage");
  unsigned *hf = &sh->hist[0][0];
  unsigned long long *mf = &sh->massfx[0][0];
  const int rank = grp_rank(), slice = NLIN / G, lanes = SNT / slice; /* G <= 16: slice >= 128, lanes <= 8 */
  cl_sync(); /* every block's histogram is final */
  {
    const int b = rank * slice + (int)threadIdx.x % slice, lane = (int)threadIdx.x / slice;
    unsigned n = 0;
    unsigned long long m = 0;
    if (lane < lanes) {
      constexpr int RMAX = GMAX;
      unsigned nr[RMAX];
      unsigned long long mr[RMAX];
#pragma unroll
      for (int i = 0; i < RMAX; i++) { /* ranks lane, lane + lanes, ...: all loads in flight before any add */
        const int r = lane + i * lanes;
        const bool on = r < G && r != rank;
        nr[i] = on ? cl_ld32(cl_addr(hf + b, r)) : 0u;
        mr[i] = on ? cl_ld64(cl_addr(mf + b, r)) : 0ull;
      }
#pragma unroll
      for (int i = 0; i < RMAX; i++)
        n += nr[i], m += mr[i];
    }
    __syncthreads(); /* own adds go on top of this block's own counts */
    if (lane < lanes && (n || m)) {
      atomicAdd(hf + b, n);
      atomicAdd(mf + b, m);
    }
  }
  cl_sync(); /* every slice is summed in its owner */
  for (int b = threadIdx.x; b < NLIN; b += SNT) {
    const int owner = b / slice;
    if (owner != rank) {
      hf[b] = cl_ld32(cl_addr(hf + b, owner));
      mf[b] = cl_ld64(cl_addr(mf + b, owner));
    }
  }
  cl_sync(); /* nobody reads this block's slice any more (the next pass may overwrite it) */
}

/* bin_walk over the NLIN linear bins, by the whole block (thread t takes bins NLIN - 1 - 2t and NLIN - 2 - 2t). */
template <bool MASS> __device__ int lin_walk(sshared *sh, double &need, double frac, double *above) {
  static_assert(NLIN == 2 * SNT, "two bins a thread");
  const unsigned *hf = &sh->hist[0][0];
  const unsigned long long *mf = &sh->massfx[0][0];
  const int t = threadIdx.x, b0 = NLIN - 1 - 2 * t, b1 = b0 - 1;
  const unsigned long long w0 = MASS ? mf[b0] : hf[b0], w1 = MASS ? mf[b1] : hf[b1];
  const bool ne0 = hf[b0] != 0u, ne1 = hf[b1] != 0u;
  const unsigned long long pre = block_exscan<unsigned long long>(w0 + w1, sh->red_u);
  const unsigned long long tot =
      block_reduce<unsigned long long>(w0 + w1, sh->red_u, [](unsigned long long a, unsigned long long b) { return a + b; });
  const double unit = MASS ? 0x1p-40 : 1.0;
  if (frac > 0)
    need = frac * (double)tot * unit;
  int hit = INT_MAX;
  if (ne0 && (double)(pre + w0) * unit >= need)
    hit = 2 * t;
  else if (ne1 && (double)(pre + w0 + w1) * unit >= need)
    hit = 2 * t + 1;
  const int low = block_max_int(ne1 ? 2 * t + 1 : ne0 ? 2 * t : -1, sh);
  hit = block_min_int(hit, sh);
  if (low < 0)
    return *above = 0, -1;
  const int pos = hit != INT_MAX ? hit : low;
  if (t == pos >> 1)
    sh->bcast_w = pre + (pos & 1 ? w0 : 0);
  __syncthreads();
  *above = (double)sh->bcast_w * unit;
  __syncthreads();
  return NLIN - 1 - pos;
}

/* One radix pass: how many counted ids whose key matches prefix under mask fall in each 8-bit digit at shift,
 * and (MASS) their summed exp(v) in fixed point (2^-40 units: integer sums are exact, so the pass is
 * reproducible whatever order the warps land in), left in copy 0. Values cluster (most of a row shares a few
 * leading digits): the lanes of a warp with the same digit add once, through their leader, and warps spread over
 * HCOPIES copies. */
template <bool MASS> __device__ void radix_hist(const sview &s, int L, uint32_t prefix, uint32_t mask, int shift,
                                                sshared *sh) {
  hist_clear(sh);
  const int lane = threadIdx.x & 31, copy = (threadIdx.x >> 5) % HCOPIES;
  row_pass_warp(s.x, L, [&](int i, float xi, bool valid) {
    float v = 0;
    uint32_t key = 0;
    const bool on = valid && s.test(i, xi, v, key) && (key & mask) == prefix;
    const unsigned act = __ballot_sync(~0u, on);
    if (!on)
      return;
    const unsigned bin = (key >> shift) & 255;
    const unsigned grp = __match_any_sync(act, bin);
    const bool leader = lane == __ffs(grp) - 1;
    if (MASS) { /* w <= 1: 2^40 w in three 14-bit limbs, so 32 lanes' sums fit in 32 bits */
      const unsigned long long f = (unsigned long long)llrint((double)expf(v) * 0x1p40);
      const unsigned l0 = __reduce_add_sync(grp, (unsigned)(f & 0x3fff));
      const unsigned l1 = __reduce_add_sync(grp, (unsigned)((f >> 14) & 0x3fff));
      const unsigned l2 = __reduce_add_sync(grp, (unsigned)(f >> 28));
      if (leader)
        atomicAdd(&sh->massfx[copy][bin], l0 + ((unsigned long long)l1 << 14) + ((unsigned long long)l2 << 28));
    }
    if (leader)
      atomicAdd(&sh->hist[copy][bin], (unsigned)__popc(grp));
  });
  hist_fold(sh);
}

/* Warp 0 (every lane gets the result): walks copy 0's 256 bins from the top to the first non-empty one where
 * `need` (an id count, or with MASS a mass) is met counting the bins above it, whose total goes to *above; with
 * frac > 0 the need becomes frac of all the bins' total (and is returned in need). When no bin meets it (top-p within rounding of 1, or
 * weights that underflow): the lowest non-empty bin, with *above the bins above that one only, so that the passes
 * inside it keep everything (-1: every bin empty). Lane l takes bins 255 - 8l down to 248 - 8l; the running sums
 * are integers (counts, or the masses' fixed-point units), so they are exact whatever the order. */
template <bool MASS> __device__ int bin_walk(const sshared *sh, double &need, double frac, double *above) {
  const int lane = threadIdx.x & 31;
  unsigned long long w[8], mine = 0;
  unsigned nonempty = 0;
#pragma unroll
  for (int u = 0; u < 8; u++) {
    const int b = 255 - 8 * lane - u;
    w[u] = MASS ? sh->massfx[0][b] : sh->hist[0][b];
    nonempty |= (sh->hist[0][b] != 0u) << u;
    mine += w[u];
  }
  unsigned long long incl = mine; /* inclusive scan over lanes, from the top bins down */
  for (int o = 1; o < 32; o <<= 1) {
    const unsigned long long y = __shfl_up_sync(~0u, incl, o);
    if (lane >= o)
      incl += y;
  }
  const double unit = MASS ? 0x1p-40 : 1.0;
  if (frac > 0)
    need = frac * (double)__shfl_sync(~0u, incl, 31) * unit;
  unsigned long long run = incl - mine;
  int hit = -1, low = -1;
  unsigned long long hit_above = 0, low_above = 0;
#pragma unroll
  for (int u = 0; u < 8; u++) {
    if (nonempty >> u & 1) {
      if (hit < 0 && (double)(run + w[u]) * unit >= need)
        hit = u, hit_above = run;
      low = u, low_above = run;
    }
    run += w[u];
  }
  const unsigned hits = __ballot_sync(~0u, hit >= 0), lows = __ballot_sync(~0u, low >= 0);
  if (!lows)
    return *above = 0, -1;
  const int src = hits ? __ffs(hits) - 1 : 31 - __clz(lows);
  const int u = __shfl_sync(~0u, hits ? hit : low, src);
  *above = (double)__shfl_sync(~0u, hits ? hit_above : low_above, src) * unit;
  return 255 - 8 * src - u;
}

/* A first pass whose NLIN bins are linear in the value over the counted ids' range: order-preserving like the key
 * digits, but spread out where the keys' leading digits are not (one or two exponents hold most of a row), so
 * plain atomics do not queue on one counter, and fine enough that the crossing bin of a 152k-logit row holds a
 * few hundred ids, which bin_select sorts. Returns s restricted to the bin where lin_walk stops for `need` (k
 * ids, or with MASS a mass target; with frac > 0, frac of the pass's total, returned in *target), and in *above
 * what the bins above it hold. range: the counted values' (min, max) when a pass found them already, else NULL.
 * With one value (no range to spread) s comes back unrestricted and *target is -1. */
template <bool MASS>
__device__ sview lin_first(const sview &s, int L, double need, double frac, const float2 *range, double *above,
                           double *target, sshared *sh) {
  float lo = INFINITY, hi = -INFINITY;
  if (range) { /* the counted ids' range, from a pass already made */
    lo = range->x;
    hi = range->y;
  } else {
    row_pass(s.x, L, [&](int i, float xi) {
      float v;
      uint32_t key;
      if (s.test(i, xi, v, key))
        lo = fminf(lo, v), hi = fmaxf(hi, v);
    });
    lo = -group_max(-lo, sh);
    hi = group_max(hi, sh);
  }
  sview r = s;
  *above = 0;
  *target = -1;
  if (!(hi - lo > 0) || !isfinite(hi - lo))
    return r; /* one value (or a range float cannot scale): the key digits alone */
  r.lo = lo;
  r.scale = (float)NLIN / (hi - lo);
  hist_clear(sh);
  unsigned *hf = &sh->hist[0][0];
  unsigned long long *mf = &sh->massfx[0][0];
  row_pass(s.x, L, [&](int i, float xi) {
    float v;
    uint32_t key;
    if (s.test(i, xi, v, key)) {
      const int b = r.lin_bin(v);
      atomicAdd(hf + b, 1u);
      if (MASS)
        atomicAdd(mf + b, (unsigned long long)llrint((double)expf(v) * 0x1p40));
    }
  });
  lin_hist_group(sh);
  double a;
  r.lb = lin_walk<MASS>(sh, need, frac, &a);
  *above = a;
  *target = need;
  return r;
}

/* The selection inside one linear bin, when it holds at most SORTN counted ids: they are gathered in the group's
 * rank 0 (a pass that keeps only the bin's ids, whose (key, id) pairs go to shared memory), sorted there in the
 * order value desc, id asc, and the answer is read off the sorted list: the rem-th of them (count: rem 1-based),
 * or (MASS) the first at which their masses, summed in that order in the histograms' fixed point, reach rem (the
 * last when they never do). Replaces four key-digit passes and the tie cut's two over the whole row. */
template <bool MASS> __device__ void bin_select(const sview &s, int L, double rem, uint32_t *K, int *cut, sshared *sh) {
  if (threadIdx.x == 0)
    sh->n_cmp = 0;
  __syncthreads();
  const int lane = threadIdx.x & 31;
  row_pass_warp(s.x, L, [&](int i, float xi, bool valid) {
    float v = 0;
    uint32_t key = 0;
    const bool on = valid && s.test(i, xi, v, key);
    const unsigned act = __ballot_sync(~0u, on);
    if (!act)
      return;
    int base = 0;
    if (lane == __ffs(act) - 1)
      base = atomicAdd(&sh->n_cmp, __popc(act));
    base = __shfl_sync(~0u, base, __ffs(act) - 1);
    if (on)
      sh->cand[base + __popc(act & ((1u << lane) - 1))] = (unsigned long long)~key << 32 | (unsigned)i;
  });
  __syncthreads();
  const int G = grp_size();
  int n = sh->n_cmp;
  if (G > 1) { /* append every block's pairs to rank 0's, in rank order */
    group_exchange((unsigned long long)n, 0, sh);
    int off = 0, tot = 0;
    for (int k = 0; k < G; k++) {
      const int nk = (int)sh->xg[k][0];
      off += k < grp_rank() ? nk : 0;
      tot += nk;
    }
    if (grp_rank() > 0)
      for (int e = threadIdx.x; e < n; e += SNT) {
        const uint32_t a = cl_addr(&sh->cand[off + e], 0);
        cl_st32(a, (unsigned)sh->cand[e]);
        cl_st32(a + 4, (unsigned)(sh->cand[e] >> 32));
      }
    cl_sync(); /* rank 0 has them all */
    n = tot;
  }
  unsigned long long pick = 0;
  if (grp_rank() == 0) {
    int S = 32; /* the sort's size: a power of two */
    while (S < n)
      S <<= 1;
    for (int e = n + threadIdx.x; e < S; e += SNT)
      sh->cand[e] = ~0ull; /* sentinels sort last */
    __syncthreads();
    for (int k = 2; k <= S; k <<= 1)
      for (int jj = k >> 1; jj > 0; jj >>= 1) {
        for (int e = threadIdx.x; e < S; e += SNT) {
          const int q = e ^ jj;
          if (q > e) {
            const unsigned long long a = sh->cand[e], b = sh->cand[q];
            if ((a > b) == ((e & k) == 0)) {
              sh->cand[e] = b;
              sh->cand[q] = a;
            }
          }
        }
        __syncthreads();
      }
    /* thread t holds sorted entries 4t..4t+3 */
    static_assert(SORTN == 4 * SNT, "four entries a thread");
    int p = INT_MAX;
    if (MASS) {
      unsigned long long w[4], sum = 0;
#pragma unroll
      for (int u = 0; u < 4; u++) {
        const int e = 4 * threadIdx.x + u;
        w[u] = e < n ? (unsigned long long)llrint((double)expf(key_value(~(uint32_t)(sh->cand[e] >> 32))) * 0x1p40)
                     : 0ull;
        sum += w[u];
      }
      unsigned long long run = block_exscan<unsigned long long>(sum, sh->red_u);
#pragma unroll
      for (int u = 0; u < 4; u++) {
        run += w[u];
        if (p == INT_MAX && 4 * (int)threadIdx.x + u < n && (double)run * 0x1p-40 >= rem)
          p = 4 * threadIdx.x + u;
      }
      p = block_min_int(p, sh);
      p = p == INT_MAX ? n - 1 : p;
    } else {
      p = (int)rem - 1;
      p = p < 0 ? 0 : p >= n ? n - 1 : p;
    }
    pick = sh->cand[p];
  }
  if (G > 1) {
    group_exchange(pick, 0, sh);
    pick = sh->xg[0][0];
  }
  *K = ~(uint32_t)(pick >> 32);
  *cut = (int)(uint32_t)pick;
  __syncthreads(); /* the candidates' storage is the histograms' again */
}

/* The k-th best (1 <= k <= counted ids) in order value desc, id asc: everything better is key > *K or key == *K
 * and id <= *cut. */
__device__ void select_kth(const sview &s0, int L, int k, uint32_t *K, int *cut, sshared *sh) {
  double above;
  double target;
  const sview s = lin_first<false>(s0, L, k, 0, NULL, &above, &target, sh);
  if (s.lb >= 0) {
    const unsigned nb = (&sh->hist[0][0])[s.lb];
    __syncthreads();
    if (nb <= SORTN)
      return bin_select<false>(s, L, k - above, K, cut, sh);
  }
  uint32_t prefix = 0, mask = 0;
  int rem = k - (int)above;
  for (int shift = 24; shift >= 0; shift -= 8) {
    radix_hist<false>(s, L, prefix, mask, shift, sh);
    if (threadIdx.x < 32) {
      double a, need = rem;
      const int b = bin_walk<false>(sh, need, 0, &a);
      if (threadIdx.x == 0)
        sh->bcast_u = (unsigned)(b < 0 ? 0 : b), sh->bcast_i = rem - (int)a;
    }
    __syncthreads();
    prefix |= sh->bcast_u << shift;
    mask |= 255u << shift;
    rem = sh->bcast_i;
    __syncthreads();
  }
  *K = prefix;
  *cut = tie_cut(s, L, prefix, rem, sh);
}

/* The ties at the crossing key all weigh w: how many of them (in id order) finish a prefix that still lacks rem
 * of its mass (all n_eq when they never do). */
__device__ int ties_needed(double w, double rem, int n_eq) {
  int m = n_eq;
  if (w > 0 && rem / w < n_eq) {
    m = (int)ceil(rem / w);
    m = m < 1 ? 1 : m;
    while (m > 1 && (m - 1) * w >= rem)
      m--;
    while (m < n_eq && m * w < rem)
      m++;
  }
  return m;
}

/* Top-p: the first id, in order value desc then id asc, at which the mass exp(v) summed in that order reaches frac
 * of the counted ids' mass (all of them when it never does), as *K / *cut like select_kth. range: the counted ids'
 * values' (min, max) when a pass has found them, else NULL. The mass is the first histogram's total. */
__device__ void select_mass(const sview &s0, int L, double frac, const float2 *range, uint32_t *K, int *cut,
                            sshared *sh) {
  double above, target;
  const sview s = lin_first<true>(s0, L, 0, frac, range, &above, &target, sh);
  if (s.lb >= 0) {
    const unsigned nb = (&sh->hist[0][0])[s.lb];
    __syncthreads();
    if (nb <= SORTN)
      return bin_select<true>(s, L, target - above, K, cut, sh);
  }
  uint32_t prefix = 0, mask = 0;
  bool known = target >= 0; /* else the first key-digit pass (over every counted id) gives the total */
  double rem = target - above;
  int n_eq = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    radix_hist<true>(s, L, prefix, mask, shift, sh);
    if (threadIdx.x < 32) {
      double a, need = rem;
      int b = bin_walk<true>(sh, need, known ? 0 : frac, &a);
      b = b < 0 ? 0 : b;
      if (threadIdx.x == 0) {
        sh->bcast_u = (unsigned)b;
        sh->bcast_d = need - a;
        sh->bcast_i = (int)sh->hist[0][b];
      }
    }
    known = true;
    __syncthreads();
    prefix |= sh->bcast_u << shift;
    mask |= 255u << shift;
    rem = sh->bcast_d;
    n_eq = sh->bcast_i;
    __syncthreads();
  }
  *K = prefix;
  *cut = tie_cut(s, L, prefix, ties_needed(expf(key_value(prefix)), rem, n_eq), sh);
}

/* Step 9: the first counted id, ascending, whose running mass exceeds u times the counted ids' mass; past the end
 * (rounding), the highest id with weight. */
__device__ int draw(const sview &s, int L, double u, sshared *sh) {
  int c0, c1, last = -1;
  my_chunk(L, c0, c1);
  double mine = 0;
  chunk_pass(s.x, c0, c1, [&](int i, float xi) {
    float v;
    uint32_t k;
    if (s.test(i, xi, v, k)) {
      const float w = expf(v);
      mine += w;
      if (w > 0)
        last = i;
    }
    return false;
  });
  double z;
  const double pre = group_exscan<double>(mine, sh->red_d, sh, &z), uz = u * z;
  int found = -1;
  if (pre <= uz && uz < pre + mine) {
    double cum = pre;
    int tok = -1;
    chunk_pass(s.x, c0, c1, [&](int i, float xi) {
      float v;
      uint32_t k;
      if (!s.test(i, xi, v, k))
        return false;
      const float w = expf(v);
      cum += w;
      if (w > 0)
        tok = i;
      return uz < cum;
    });
    found = tok;
  }
  /* at most one thread of the group finds the crossing; the highest id with weight is the fallback */
  int tok = block_max_int(found, sh);
  last = block_max_int(last, sh);
  const int G = grp_size();
  if (G > 1) {
    group_exchange((unsigned long long)(unsigned)tok, (unsigned long long)(unsigned)last, sh);
    for (int k = 0; k < G; k++)
      tok = max(tok, (int)(unsigned)sh->xg[k][0]), last = max(last, (int)(unsigned)sh->xg[k][1]);
  }
  return tok >= 0 ? tok : last;
}

/* The group's entries (id[0..n) and v[0..n) of each block, n <= cap in all) appended in rank order to rank 0's
 * arrays, whose own come first; every block returns the total. */
__device__ int gather_to_rank0(int *id, float *v, int n, int cap, sshared *sh) {
  const int G = grp_size();
  if (G == 1)
    return n;
  group_exchange((unsigned long long)n, 0, sh);
  int off = 0, tot = 0;
  for (int k = 0; k < G; k++) {
    const int nk = (int)sh->xg[k][0];
    off += k < grp_rank() ? nk : 0;
    tot += nk;
  }
  if (grp_rank() > 0)
    for (int e = threadIdx.x; e < n && off + e < cap; e += SNT) {
      cl_st32(cl_addr(id + off + e, 0), (unsigned)id[e]);
      cl_st32(cl_addr(v + off + e, 0), __float_as_uint(v[e]));
    }
  cl_sync(); /* rank 0 sees them */
  return min(tot, cap);
}

/* log-softmax over the counted ids at tok, and the n_top best of them. */
__device__ void fill_info(const sview &s, int L, int tok, int n_top, sout *o, sshared *sh) {
  float mx = -INFINITY;
  int n = 0;
  row_pass(s.x, L, [&](int i, float xi) {
    float v;
    uint32_t k;
    if (s.test(i, xi, v, k))
      mx = fmaxf(mx, v), n++;
  });
  mx = group_max(mx, sh);
  n = group_sum_int(n, sh);
  double z = 0;
  row_pass(s.x, L, [&](int i, float xi) {
    float v;
    uint32_t k;
    if (s.test(i, xi, v, k))
      z += exp((double)v - mx);
  });
  z = group_sum(z, sh);
  const double lse = mx + log(z);
  n_top = n_top < n ? n_top : n;
  if (n_top > 0) {
    uint32_t K;
    int cut;
    select_kth(s, L, n_top, &K, &cut, sh);
    if (threadIdx.x == 0)
      sh->n_sel = 0;
    __syncthreads();
    row_pass(s.x, L, [&](int i, float xi) {
      float v;
      uint32_t k;
      if (s.test(i, xi, v, k) && (k > K || (k == K && i <= cut))) {
        const int at = atomicAdd(&sh->n_sel, 1);
        if (at < MIMO_MAX_LOGPROBS) {
          sh->sel_id[at] = i;
          sh->sel_v[at] = v;
        }
      }
    });
    __syncthreads();
    gather_to_rank0(sh->sel_id, sh->sel_v, min(sh->n_sel, MIMO_MAX_LOGPROBS), MIMO_MAX_LOGPROBS, sh);
  }
  if (threadIdx.x == 0 && grp_rank() == 0) {
    const float xt = s.mode ? (s.x[tok] - s.m) * s.inv_t : s.x[tok];
    o->logprob = (float)((double)xt - lse);
    const int m = n_top;
    for (int a = 1; a < m; a++) { /* at most 20: insertion, value desc then id asc */
      const int id = sh->sel_id[a];
      const float val = sh->sel_v[a];
      int b = a;
      for (; b > 0 && (sh->sel_v[b - 1] < val || (sh->sel_v[b - 1] == val && sh->sel_id[b - 1] > id)); b--) {
        sh->sel_id[b] = sh->sel_id[b - 1];
        sh->sel_v[b] = sh->sel_v[b - 1];
      }
      sh->sel_id[b] = id;
      sh->sel_v[b] = val;
    }
    o->n_top = m;
    for (int a = 0; a < m; a++) {
      o->top_id[a] = sh->sel_id[a];
      o->top_lp[a] = (float)((double)sh->sel_v[a] - lse);
    }
  }
  __syncthreads();
}

/* ---- the compact path: at most SNT candidates (after top-k, or few left by min-p), in shared memory ---- */

/* Sorts cv/cid (SNT entries) so that entry 0 comes first: by value desc then id asc (BY_ID false), or by id asc. */
template <bool BY_ID> __device__ void bitonic(sshared *sh) {
  const int t = threadIdx.x;
  for (int k = 2; k <= SNT; k <<= 1)
    for (int jj = k >> 1; jj > 0; jj >>= 1) {
      const int p = t ^ jj;
      if (p > t) {
        const float av = sh->cv[t], bv = sh->cv[p];
        const int ai = sh->cid[t], bi = sh->cid[p];
        const bool b_first = BY_ID ? bi < ai : (bv > av || (bv == av && bi < ai));
        const bool a_first = BY_ID ? ai < bi : (av > bv || (av == bv && ai < bi));
        if ((t & k) == 0 ? b_first : a_first) {
          sh->cv[t] = bv, sh->cv[p] = av;
          sh->cid[t] = bi, sh->cid[p] = ai;
        }
      }
      __syncthreads();
    }
}

/* Entries n.. become sentinels that sort last, then the sort. */
template <bool BY_ID> __device__ void sort_first(sshared *sh, int n) {
  if ((int)threadIdx.x >= n) {
    sh->cv[threadIdx.x] = -INFINITY;
    sh->cid[threadIdx.x] = INT_MAX;
  }
  __syncthreads();
  bitonic<BY_ID>(sh);
}

/* Steps 8-9 (and processed logprobs) on the counted ids of s, n <= SNT of them; returns the token (in the group's
 * rank 0, which does the work once the candidates are gathered there; -1 in the others). */
__device__ int sample_compact(const sview &s, int L, const sjob &j, sout *o, sshared *sh) {
  const int t = threadIdx.x;
  if (t == 0)
    sh->n_cmp = 0;
  __syncthreads();
  row_pass(s.x, L, [&](int i, float xi) {
    float v;
    uint32_t k;
    if (s.test(i, xi, v, k)) {
      const int at = atomicAdd(&sh->n_cmp, 1);
      sh->cv[at] = v;
      sh->cid[at] = i;
    }
  });
  __syncthreads();
  const int n = gather_to_rank0(sh->cid, sh->cv, sh->n_cmp, SNT, sh);
  if (grp_rank() != 0)
    return -1;
  sort_first<false>(sh, n);
  /* weights in value order; top-p keeps the shortest prefix whose mass reaches p of the whole */
  const float w = t < n ? expf(sh->cv[t]) : 0.0f;
  double cum_before = block_exscan<double>((double)w, sh->red_d);
  const double z = block_sum((double)w, sh);
  int keep = n;
  if (j.top_p < 1) {
    const double target = j.top_p * z * (1 - 1e-9);
    const int first = block_min_int(t < n && cum_before + w >= target ? t : INT_MAX, sh);
    keep = first == INT_MAX ? n : first + 1;
  }
  const double zk = block_sum(t < keep ? (double)w : 0.0, sh);
  if (j.logprobs > 0 && j.processed && t == 0) { /* log-softmax over the kept ones: the best n_top of them */
    const int m = j.logprobs < keep ? j.logprobs : keep;
    for (int a = 0; a < m; a++) {
      sh->sel_id[a] = sh->cid[a];
      sh->sel_v[a] = sh->cv[a];
    }
    o->n_top = m;
  }
  double zl = block_sum(t < keep ? exp((double)sh->cv[t] - sh->cv[0]) : 0.0, sh); /* host fill_info's sum */
  const double lse = sh->cv[0] + log(zl);
  __syncthreads();
  /* the draw in id order */
  sort_first<true>(sh, keep);
  const float wi = t < keep ? expf(sh->cv[t]) : 0.0f;
  const double pre = block_exscan<double>((double)wi, sh->red_d), uz = j.u * zk;
  /* the first crossing: the host's test */
  const int hpos = block_min_int(t < keep && wi > 0 && uz < pre + wi ? t : INT_MAX, sh);
  int last = t < keep && wi > 0 ? t : -1;
  last = block_max_int(last, sh);
  const int pos = hpos != INT_MAX ? hpos : last;
  if (pos < 0)
    return -1;
  const int tok = sh->cid[pos];
  if (j.logprobs > 0 && j.processed && t == 0) {
    o->logprob = (float)((double)sh->cv[pos] - lse);
    for (int a = 0; a < o->n_top; a++) {
      o->top_id[a] = sh->sel_id[a];
      o->top_lp[a] = (float)((double)sh->sel_v[a] - lse);
    }
  }
  __syncthreads();
  return tok;
}

__global__ void __launch_bounds__(SNT) k_sample(float *logits, float *raw, int V, const sjob *jobs, const int *pen,
                                                sout *out, int *fed) {
  static_assert(sizeof(sjob) % 4 == 0 && sizeof(sjob) / 4 <= SNT, "a job is read as words");
  __shared__ sshared sh;
  __shared__ sjob js;
  const int G = grp_size(), job = blockIdx.x / G; /* a row's group is a cluster of consecutive blocks */
  const bool lead = threadIdx.x == 0 && grp_rank() == 0;
  /* jobs, pen and out live in host memory the device maps (cu_sample): the job is read once per block, before
   * the wait, since the host wrote it before the launch */
  if (threadIdx.x < sizeof(sjob) / 4)
    ((int *)&js)[threadIdx.x] = ((const int *)(jobs + job))[threadIdx.x];
  if (threadIdx.x == 0)
    sh.xpar = 0;
  pdl_start();
  __syncthreads();
  const sjob j = js;
  float *x = logits + (size_t)j.row * V;
  sout *o = out + job;
  const int L = j.limit > 0 && j.limit < V ? j.limit : V;
  /* 1. mask; 2. the raw copy; without penalties the argmax in the same pass */
  float *rx = j.raw >= 0 ? raw + (size_t)j.raw * V : NULL;
  float m = -INFINITY;
  int arg = INT_MAX;
  row_pass(x, V, [&](int i, float a) {
    const float b = i < L ? sanitize(a) : -INFINITY;
    if (__float_as_uint(a) != __float_as_uint(b))
      x[i] = b;
    if (rx)
      rx[i] = b;
    if (b > m)
      m = b, arg = i;
  });
  if (j.n_pen) {
    G > 1 ? cl_sync() : __syncthreads(); /* the group's masked logits are in place */
    /* 3. penalties (unique ids: no two threads touch one logit) */
    for (int e = grp_rank() * SNT + threadIdx.x; e < j.n_pen; e += SNT * G) {
      const int t = pen[2 * (j.pen0 + e)], count = pen[2 * (j.pen0 + e) + 1];
      float v = x[t];
      if (j.rep != 1)
        v = v > 0 ? v / j.rep : v * j.rep;
      if (count > 0)
        v -= j.frequency * (float)count + j.presence;
      x[t] = sanitize(v);
    }
    G > 1 ? cl_sync() : __syncthreads();
    m = -INFINITY;
    arg = INT_MAX;
    row_pass(x, L, [&](int i, float v) {
      if (v > m)
        m = v, arg = i;
    });
  }
  group_argmax(m, arg, &sh);
  if (arg == INT_MAX) {
    if (lead) {
      o->token = -1;
      o->n_top = 0;
      fed[j.row] = -1;
    }
    if (G > 1)
      cl_sync(); /* no block leaves while another may read its shared memory */
    return;
  }
  int tok = arg;
  bool info_done = false;
  sview s = view_all(x);
  if (j.temperature >= GREEDY_EPS) {
    s.mode = 1;
    s.m = m;
    s.inv_t = 1.0f / j.temperature;
    s.min_log = j.min_p > 0 ? logf(j.min_p) : -INFINITY;
    /* 6-7. min-p and top-k: how many candidates are left */
    int n = 0;
    float2 range = make_float2(INFINITY, -INFINITY); /* the counted values' (min, max), for top-p's first pass */
    row_pass(x, L, [&](int i, float xi) {
      float v;
      uint32_t k;
      if (s.test(i, xi, v, k))
        n++, range.x = fminf(range.x, v), range.y = fmaxf(range.y, v);
    });
    n = group_count_range(n, &range, &sh);
    const bool cut_k = j.top_k > 0 && j.top_k < n;
    if (cut_k) {
      select_kth(s, L, j.top_k, &s.kk, &s.kcut, &sh);
      n = j.top_k;
    }
    if (n <= SNT) {
      tok = sample_compact(s, L, j, o, &sh);
      info_done = j.processed;
    } else {
      /* 8. top-p, with the host's tolerance for summation rounding */
      if (j.top_p < 1)
        select_mass(s, L, j.top_p * (1 - 1e-9), cut_k ? NULL : &range, &s.pk, &s.pcut, &sh);
      tok = draw(s, L, j.u, &sh);
    }
    if (tok < 0)
      tok = arg;
  }
  if (lead) {
    o->token = tok;
    fed[j.row] = tok; /* the next step's embed may read it here (cu_embed) */
  }
  if (j.logprobs > 0 && !info_done) {
    if (!j.processed)
      s = view_all(rx);
    fill_info(s, j.processed ? L : V, tok, j.logprobs, o, &sh);
  }
  if (G > 1)
    cl_sync(); /* no block leaves while another may read its shared memory */
}

/* Blocks per row. A row's passes are bound by one block's instructions (a 152k-logit row: ~25-45 us a pass, ~12
 * passes for top-p), so while rows leave SMs idle each row is split over a cluster of G blocks (SM90 code; G = 1
 * otherwise), as many as keep every row's blocks resident at once. MIMO_CUDA_SAMPLE_GROUP=N (or the test hook)
 * fixes G (clamped to what the device allows). */
static int group_forced = -1;
extern "C" int mimo_cuda_sample_group(int g) {
  if (group_forced < 0) {
    const char *e = getenv("MIMO_CUDA_SAMPLE_GROUP");
    group_forced = e ? atoi(e) : 0;
  }
  const int o = group_forced;
  if (g >= 0)
    group_forced = g;
  return o;
}

enum { MAX_DEVICES = 64 };
static int group_max_of[MAX_DEVICES], blocks_per_sm_of[MAX_DEVICES]; /* 0: not asked yet */

static int sample_group(cu_ctx *c, int rows) {
  if (!c->pdl || c->device < 0 || c->device >= MAX_DEVICES) /* c->pdl: an SM90 device running SM90 code */
    return 1;
  if (!group_max_of[c->device]) {
    int gmax = 1, bps = 1;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = GMAX;
    at[0].val.clusterDim.y = at[0].val.clusterDim.z = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(GMAX);
    cfg.blockDim = dim3(SNT);
    cfg.stream = c->st;
    cfg.attrs = at;
    cfg.numAttrs = 1;
    if (MIMO_CUDA(c, cudaFuncSetAttribute(k_sample, cudaFuncAttributeNonPortableClusterSizeAllowed, 1)) != MIMO_OK ||
        MIMO_CUDA(c, cudaOccupancyMaxPotentialClusterSize(&gmax, k_sample, &cfg)) != MIMO_OK ||
        MIMO_CUDA(c, cudaOccupancyMaxActiveBlocksPerMultiprocessor(&bps, k_sample, SNT, 0)) != MIMO_OK)
      gmax = bps = 1;
    int g = 1;
    while (g * 2 <= gmax && g * 2 <= GMAX)
      g *= 2;
    group_max_of[c->device] = g;
    blocks_per_sm_of[c->device] = bps > 0 ? bps : 1;
  }
  const int gmax = group_max_of[c->device], forced = mimo_cuda_sample_group(-1);
  if (forced > 0) {
    int g = 1;
    while (g * 2 <= forced && g * 2 <= gmax)
      g *= 2;
    return g;
  }
  int g = gmax;
  while (g > 1 && (long)rows * g > (long)c->sms * blocks_per_sm_of[c->device])
    g /= 2;
  return g;
}

/* The fed-back tokens' device array for rows rows (grown; -1 where nothing was sampled). */
static int *fed_rows(cu_ctx *c, int rows) {
  if (rows <= c->fed_cap)
    return c->fed;
  const int cap = rows < 256 ? 256 : rows;
  int *h = (int *)realloc(c->fed_host, (size_t)cap * sizeof *h);
  if (!h)
    return NULL;
  c->fed_host = h;
  if (c->fed)
    MIMO_CUDA(c, cudaFree(c->fed));
  c->fed = NULL;
  c->fed_cap = 0;
  if (MIMO_CUDA(c, cudaMalloc((void **)&c->fed, (size_t)cap * sizeof(int))) != MIMO_OK)
    return NULL;
  c->fed_cap = cap;
  return c->fed;
}

extern "C" mimo_status cu_sample(mimo_backend *be, float *logits, int rows, int V, const mimo_sample_job *jobs,
                                 int *tokens, mimo_sample_info *infos) {
  cu_ctx *c = cu(be);
  int n = 0, n_pen = 0, n_raw = 0;
  for (int r = 0; r < rows; r++) {
    tokens[r] = -1;
    if (!jobs[r].skip) {
      n++;
      n_pen += jobs[r].n_pen;
      n_raw += infos && jobs[r].logprobs > 0 && !jobs[r].processed_logprobs;
    }
  }
  c->fed_n = 0; /* the device array changes below */
  mimo_status st = MIMO_OK;
  /* Jobs, penalties and outputs in mapped host memory, which the kernel reads and writes itself: no copy in the
   * stream between the forward's last kernel and this one (a copy from pageable memory would also make the host
   * wait for the whole step before the launch), and nothing to bring back but the sync. */
  const size_t jb = ((size_t)n * sizeof(sjob) + 255) / 256 * 256, ob = ((size_t)n * sizeof(sout) + 255) / 256 * 256,
               pb = (size_t)2 * n_pen * sizeof(int), rb = (size_t)n_raw * V * sizeof(float);
  char *hm = NULL, *dm = NULL;
  float *raw_rows = n_raw ? cu_alloc(be, rb / sizeof(float)) : NULL;
  int *fed = n ? fed_rows(c, rows) : NULL;
  if (n && (!(hm = (char *)cu_mapped(c, jb + ob + pb, (void **)&dm)) || !fed))
    st = mimo_errf(MIMO_E_NOMEM, "pinned host memory to sample %d rows", n);
  else if (n_raw && !raw_rows)
    st = mimo_errf(MIMO_E_NOMEM, "device scratch for the logprobs of %d rows", n_raw);
  sjob *hj = (sjob *)hm;
  sout *ho = (sout *)(hm + jb);
  int *hp = (int *)(hm + jb + ob);
  if (st == MIMO_OK && n) {
    int a = 0, p = 0, rr = 0;
    for (int r = 0; r < rows; r++) {
      const mimo_sample_job *q = &jobs[r];
      if (q->skip)
        continue;
      const bool info = infos && q->logprobs > 0;
      hj[a] = (sjob){.row = r, .top_k = q->top_k, .limit = q->limit, .pen0 = p, .n_pen = q->n_pen,
                     .logprobs = info ? q->logprobs : 0, .processed = q->processed_logprobs,
                     .raw = info && !q->processed_logprobs ? rr++ : -1, .temperature = q->temperature,
                     .top_p = q->top_p, .min_p = q->min_p, .rep = q->repetition_penalty,
                     .presence = q->presence_penalty, .frequency = q->frequency_penalty, .u = q->u};
      if (q->n_pen)
        memcpy(hp + 2 * p, q->pen, (size_t)2 * q->n_pen * sizeof(int));
      p += q->n_pen;
      a++;
    }
    const int G = sample_group(c, n);
    cudaLaunchAttribute at[2];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    at[1].id = cudaLaunchAttributeClusterDimension;
    at[1].val.clusterDim.x = G;
    at[1].val.clusterDim.y = at[1].val.clusterDim.z = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(n * G);
    cfg.blockDim = dim3(SNT);
    cfg.stream = c->st;
    cfg.attrs = cu_pdl(c) ? at : at + 1;
    cfg.numAttrs = (cu_pdl(c) ? 1 : 0) + (G > 1 ? 1 : 0);
    st = MIMO_CUDA(c, cudaLaunchKernelEx(&cfg, k_sample, logits, raw_rows, V, (const sjob *)dm,
                                         (const int *)(dm + jb + ob), (sout *)(dm + jb), fed));
  }
  if (st == MIMO_OK)
    st = cu_wait(c);
  for (int r = 0, a = 0; st == MIMO_OK && r < rows; r++) {
    if (jobs[r].skip) { /* no block wrote its fed-back id */
      c->fed_host[r] = -1;
      continue;
    }
    const sout *o = &ho[a++];
    tokens[r] = o->token;
    c->fed_host[r] = o->token;
    if (o->token < 0) {
      const int L = jobs[r].limit > 0 && jobs[r].limit < V ? jobs[r].limit : V;
      mimo_errf(MIMO_E_INVALID, "sampler: no token below %d has a usable logit (all NaN or -inf)", L);
    } else if (infos && jobs[r].logprobs > 0) {
      mimo_sample_info *i = &infos[r];
      i->logprob = o->logprob;
      i->n_top = o->n_top;
      for (int t = 0; t < o->n_top; t++)
        i->top[t] = (mimo_token_logprob){o->top_id[t], o->top_lp[t]};
    }
  }
  if (st == MIMO_OK && n)
    c->fed_n = rows;
  if (raw_rows)
    cu_release(be, raw_rows);
  return st;
}
