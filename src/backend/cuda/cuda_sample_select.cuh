/* The device sampler's selections over a whole row (cuda_sample.cu includes this once, after
 * cuda_sample_block.cuh): histograms linear in the value and by 8-bit key digits, the walks that find where a count
 * or a mass is crossed, the k-th best, the top-p cut, the draw, the group's gathers and the log-softmax with the
 * top-N logprobs. The rows with few candidates take the compact path in cuda_sample.cu instead. */
#ifndef MIMO_BACKEND_CUDA_SAMPLE_SELECT_CUH
#define MIMO_BACKEND_CUDA_SAMPLE_SELECT_CUH
#include "backend/cuda/cuda_sample_block.cuh"

/* Every block of the group (G of them) exchanges its count n: where this block's entries go after the lower ranks'
 * (off), and all of them (tot). Whole group. */
__device__ __forceinline__ void group_counts(int n, int G, sshared *sh, int &off, int &tot) {
  group_exchange((unsigned long long)n, 0, sh);
  off = tot = 0;
  for (int k = 0; k < G; k++) {
    const int nk = (int)sh->xg[k][0];
    off += k < grp_rank() ? nk : 0;
    tot += nk;
  }
}

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
    int off, tot;
    group_counts(n, G, sh, off, tot);
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
  int off, tot;
  group_counts(n, G, sh, off, tot);
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
#endif
