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
#include "backend/cuda/cuda_sample_select.cuh"

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
