/* Tensor-core attention: checks against the CPU backend and benchmarks.
 *   mimo_cuda_check attn check   GPU vs CPU attention on fresh random inputs: prompts in chunks (every
 *                                chunk's output compared), ring caches with T > cap, long decodes (split-KV),
 *                                each case through the automatic path and, where it matters, forced through
 *                                the decode / prefill kernels, and through both operand precisions;
 *                                rel ‖gpu − cpu‖ / ‖cpu‖ within the tolerance of (path, precision), tol[] below
 *   mimo_cuda_check attn bench   ceilings (copy, cuBLAS bf16), prefill 32K causal and sliding, decode at 128K,
 *                                each in every precision
 * GPU outputs are poisoned with NaN before each run. */
#include "cuda_common.h"

/* cuda_attention.cu test hook: 0 automatic, 1 scalar, 2 split-KV decode, 3 tensor-core prefill */
void mimo_cuda_attn_force(int path);
/* prefill warps per block: 0 automatic (4 for windows ≤ 512, else 8), 4 or 8 */
void mimo_cuda_attn_prefill_warps(int nw);
/* operand precision: 0 fast (bf16 prefill, tf32 decode), 1 fp16 (fp16 prefill, 3xTF32 decode; the default);
 * < 0 only asks; returns the precision in force */
int mimo_cuda_attn_precision(int prec);

/* the fp32-grade decode over a bf16 cache through three bf16 parts instead of 3xTF32: on (1) or off (0), returning
 * the previous setting; < 0 only asks */
int mimo_cuda_attn_decode_bf16x3(int on);

/* cuda_attention_wgmma.cu test hooks: the SM90a prefill on (1, the default) or off (0), returning the previous
 * setting; _last: whether the last fp16 prefill ran it */
int mimo_cuda_attn_prefill_wgmma(int mode);
int mimo_cuda_attn_prefill_wgmma_last(void);
/* consumer warpgroups per block: 0 the default (3), 2 or 3 */
int mimo_cuda_attn_prefill_wgmma_wgs(int n);

enum { NPREC = 2 };
static const char *prec_name[NPREC] = {"fast", "fp16"};
static const char *path_name[] = {"auto", "scalar", "decode", "prefill"};
/* Tolerance per [path][precision], about 3x the worst seen on H200 (sm_90a and compute_80 PTX alike):
 * fp32 scalar 3.4e-7; decode tf32 1.5e-3 / 3xTF32 6.0e-6 (20000 keys); prefill bf16 3.1e-3 / fp16 3.9e-4. */
static const double tol[4][NPREC] = {{0}, {1e-6, 1e-6}, {5e-3, 2e-5}, {1e-2, 1e-3}};

static int n_pass, n_fail;
static double worst[4][NPREC];
static double worst_bf3; /* decode over bf16 caches through bf16 parts (tolerance: 3xTF32's) */
static int bf3_cases;
/* fp16 prefills run both ways on an SM90a build: how many, how many came out bitwise equal, the largest difference */
static int wg_cases, wg_bitwise;
static double wg_worst;

/* The kernel cuda_attention.cu picks (its rule: tensor-core dims, 16-byte rows, T·G ≤ 256 → decode). */
static int gpu_path(int force, int nh, int nkv, int T, int D, int V) {
  if (!((D == 192 && V == 128) || (D == 128 && V == 128) || (D == 64 && V == 64)))
    return 1;
  return force ? force : T * (nh / nkv) <= 256 ? 2 : 3;
}

/* Fills a device buffer with a repeated random pattern (fast for GB-sized benchmark inputs; not zeros). */
static void dev_fill(mimo_backend *g, float *d, size_t n, float s) {
  static float *pat;
  const size_t P = (size_t)1 << 22;
  if (!pat) {
    pat = xmalloc(P * 4);
    fill(pat, P, 1.0f);
  }
  float *tmp = xmalloc(P * 4);
  for (size_t i = 0; i < P; i++)
    tmp[i] = pat[i] * s;
  for (size_t o = 0; o < n; o += P)
    must(mimo_cuda_upload(g, d + o, tmp, n - o < P ? n - o : P), "upload");
  free(tmp);
}

typedef struct {
  int nh, nkv, D, V, window, sink, past; /* past: positions already cached (random), before the steps */
  int steps[4];
  int force; /* path forced on the GPU (0 = automatic) */
  int bf16;  /* bf16 cache */
} acase;

/* The GPU attention once more over its cache as it stood before the step (length len0; a ring's slots restored from
 * rs unless NULL), output poisoned first, into host out. */
static void attn_rerun(mimo_backend *g, kv_pair *kp, int len0, const char *rs, mimo_attn_args *ag, float *dout,
                       size_t no, float *out) {
  kp->g.len = len0;
  if (rs)
    kv_pair_put(kp, g, rs);
  mimo_cuda_poison(g, dout, no);
  g->attention(g, ag);
  from_dev(g, out, dout, no);
}

static void run_case(mimo_backend *c, mimo_backend *g, const acase *cf) {
  const int nh = cf->nh, nkv = cf->nkv, D = cf->D, V = cf->V, W = cf->window;
  int total = cf->past;
  for (int s = 0; s < 4; s++)
    total += cf->steps[s];
  kv_pair kp;
  kv_pair_init(&kp, g, W ? W : total, W > 0, nkv, D, V, cf->bf16);
  mimo_kv_view *kc = &kp.c, *kg = &kp.g;
  /* the same random cache on both sides; with past > 0, a long context without running the CPU over it */
  kv_pair_fill(&kp, g);
  kc->len = kg->len = cf->past;
  float sinkv[128];
  fill(sinkv, nh, 2.0f);
  mimo_vec sv = {nh, MIMO_DT_F32, sinkv, NULL};
  must(mimo_backend_upload_vec(g, &sv), "upload");
  mimo_cuda_attn_force(cf->force);
  for (int s = 0; s < 4 && cf->steps[s]; s++) {
    const int T = cf->steps[s];
    const size_t nq = (size_t)T * nh * D, nk = (size_t)T * nkv * D, nv = (size_t)T * nkv * V, no = (size_t)T * nh * V;
    float *q = xmalloc(nq * 4), *kk = xmalloc(nk * 4), *v = xmalloc(nv * 4), *oc = xmalloc(no * 4), *og = xmalloc(no * 4);
    fill(q, nq, 3.0f); /* sharper than uniform attention, so the softmax matters */
    fill(kk, nk, 1.0f);
    fill(v, nv, 1.0f);
    float *dq = to_dev(g, q, nq), *dk = to_dev(g, kk, nk), *dv = to_dev(g, v, nv), *dout = g->alloc(g, no);
    mimo_cuda_poison(g, dout, no);
    mimo_attn_args ac = {.q = q, .k = kk, .v = v, .out = oc, .T = T, .n_heads = nh, .n_kv = nkv, .head_dim = D,
                         .v_head_dim = V, .window = W, .scale = 1.0f / sqrtf((float)D),
                         .sink = cf->sink ? &sv : NULL, .kv = kc};
    mimo_attn_args ag = ac;
    ag.q = dq;
    ag.k = dk;
    ag.v = dv;
    ag.out = dout;
    ag.kv = kg;
    const int len0 = kc->len, path = gpu_path(cf->force, nh, nkv, T, D, V);
    c->attention(c, &ac);
    /* Every precision over the same cache. Full caches: the append writes slots ≥ len0, which this step reads
     * from the step buffers; rings: it overwrites slots still read, so the ring is restored before each rerun. */
    char *rs = NULL;
    if (kg->ring && path != 1) {
      rs = xmalloc((kp.n * kp.es + 3) / 4 * 4);
      kv_pair_get(&kp, g, rs);
    }
    char line[256];
    int ok = 1, at = 0, wg = 0;
    float *ow = NULL; /* the fp16 output through the warpgroup-MMA kernel */
    /* variants: each precision, then fp16 again with the SM90a kernel off where it ran */
    for (int vi = 0; vi < (path == 1 ? 1 : NPREC + 1); vi++) {
      const int pr = vi < NPREC ? vi : 1;
      if (vi == NPREC && !wg)
        break;
      mimo_cuda_attn_precision(pr);
      mimo_cuda_attn_prefill_wgmma(vi < NPREC);
      /* against the SM90a kernel, mma.sync with its 128 rows per block: the same blocks, splits and tile order */
      mimo_cuda_attn_prefill_warps(vi == NPREC ? 8 : 0);
      attn_rerun(g, &kp, len0, vi > 0 ? rs : NULL, &ag, dout, no, og);
      const double e = relerr(og, oc, no);
      ok &= e <= tol[path][pr];
      if (e > worst[path][pr])
        worst[path][pr] = e;
      at += snprintf(line + at, sizeof line - at, " %s %.2e", path == 1 ? "fp32" : vi == NPREC ? "fp16-mma.sync" : prec_name[pr], e);
      if (vi == 1 && path == 3 && mimo_cuda_attn_prefill_wgmma_last()) {
        /* the SM90a kernel ran (3 warpgroups a block): again with 2, whose 128-row blocks mma.sync
         * with 8 warps shares, for the bitwise comparison below; against the CPU like every variant */
        wg = 1;
        ow = xmalloc(no * 4);
        const int w0 = mimo_cuda_attn_prefill_wgmma_wgs(2);
        attn_rerun(g, &kp, len0, rs, &ag, dout, no, ow);
        mimo_cuda_attn_prefill_wgmma_wgs(w0);
        const double e2 = relerr(ow, oc, no);
        ok &= e2 <= tol[path][pr];
        if (e2 > worst[path][pr])
          worst[path][pr] = e2;
        at += snprintf(line + at, sizeof line - at, " (wgmma) fp16-wgmma2 %.2e", e2);
      }
      if (vi == NPREC) {
        /* and mma.sync with the same 128-row blocks: the same products in the same order, so bit for bit */
        const double d = relerr(ow, og, no);
        wg_cases++;
        if (memcmp(ow, og, no * 4)) {
          printf("FAIL wgmma and mma.sync (8 warps) prefill differ: relative %.2e\n", d);
          ok = 0;
        } else {
          wg_bitwise++;
        }
        wg_worst = d > wg_worst ? d : wg_worst;
      }
    }
    mimo_cuda_attn_prefill_wgmma(1);
    mimo_cuda_attn_prefill_warps(0);
    if (path == 2 && cf->bf16) { /* the decode kernel once more with bf16 parts instead of 3xTF32 */
      mimo_cuda_attn_precision(1);
      const int b0 = mimo_cuda_attn_decode_bf16x3(1);
      attn_rerun(g, &kp, len0, rs, &ag, dout, no, og);
      mimo_cuda_attn_decode_bf16x3(b0);
      const double e = relerr(og, oc, no);
      ok &= e <= tol[2][1];
      worst_bf3 = e > worst_bf3 ? e : worst_bf3;
      bf3_cases++;
      at += snprintf(line + at, sizeof line - at, " bf16x3 %.2e", e);
    }
    free(ow);
    free(rs);
    printf("%-4s h%d/kv%d %d/%d win %d sink %d past %d T %d%s (%s: %s) rel%s\n", ok ? "ok" : "FAIL", nh, nkv, D, V, W,
           cf->sink, len0, T, cf->bf16 ? " bf16" : "", path_name[cf->force], path_name[path], line);
    ok ? n_pass++ : n_fail++;
    g->release(g, dq);
    g->release(g, dk);
    g->release(g, dv);
    g->release(g, dout);
    free(q);
    free(kk);
    free(v);
    free(oc);
    free(og);
  }
  /* The caches after the appends must agree too (ring slots, T > cap; blocks, keys and values). */
  if (!kv_pair_equal(&kp, g)) {
    printf("FAIL h%d/kv%d win %d: cache after append differs from the CPU's\n", nh, nkv, W);
    n_fail++;
  }
  mimo_cuda_attn_force(0);
  kv_pair_free(&kp, g);
}

/* Many sequences in one attention_seqs call (the model's step): one-token sequences with different cache lengths
 * (empty, short, a ring that wrapped, long) share launches on the GPU, a few longer ones (mixed) go alone; outputs
 * against the CPU's attention per sequence, two steps in a row (the second reads what the first appended), then
 * every cache and length. nseq > 64: more than one batch launch. */
static void run_seqs_case(mimo_backend *c, mimo_backend *g, int nh, int nkv, int D, int V, int W, int sink, int nseq,
                          int mixed, int bf16) {
  kv_pair *kp = xmalloc((size_t)nseq * sizeof *kp);
  const int pasts[] = {0, 1, 5, 127, 128, 300, 3000, 40};
  for (int i = 0; i < nseq; i++) {
    const int past = pasts[i % 8] + i / 8;
    kv_pair_init(&kp[i], g, W ? W : past + 16, W > 0, nkv, D, V, bf16);
    kv_pair_fill(&kp[i], g);
    kp[i].c.len = kp[i].g.len = past;
  }
  float sinkv[128];
  fill(sinkv, nh, 2.0f);
  mimo_vec sv = {nh, MIMO_DT_F32, sinkv, NULL};
  must(mimo_backend_upload_vec(g, &sv), "upload");
  int ok = 1;
  double worst_e = 0;
  for (int step = 0; step < 2; step++) {
    int Ts[256], T = 0;
    for (int i = 0; i < nseq; i++)
      T += Ts[i] = mixed && i % 7 == 3 ? 5 : 1;
    const size_t nq = (size_t)T * nh * D, nk = (size_t)T * nkv * D, nv = (size_t)T * nkv * V, no = (size_t)T * nh * V;
    float *q = xmalloc(nq * 4), *kk = xmalloc(nk * 4), *v = xmalloc(nv * 4), *oc = xmalloc(no * 4), *og = xmalloc(no * 4);
    fill(q, nq, 3.0f);
    fill(kk, nk, 1.0f);
    fill(v, nv, 1.0f);
    float *dq = to_dev(g, q, nq), *dk = to_dev(g, kk, nk), *dv = to_dev(g, v, nv), *dout = g->alloc(g, no);
    mimo_cuda_poison(g, dout, no);
    mimo_attn_args *ag = xmalloc((size_t)nseq * sizeof *ag);
    for (int i = 0, off = 0; i < nseq; off += Ts[i], i++) {
      mimo_attn_args a = {.q = q + (size_t)off * nh * D, .k = kk + (size_t)off * nkv * D, .v = v + (size_t)off * nkv * V,
                          .out = oc + (size_t)off * nh * V, .T = Ts[i], .n_heads = nh, .n_kv = nkv, .head_dim = D,
                          .v_head_dim = V, .window = W, .scale = 1.0f / sqrtf((float)D), .sink = sink ? &sv : NULL,
                          .kv = &kp[i].c};
      c->attention(c, &a);
      a.q = dq + (size_t)off * nh * D;
      a.k = dk + (size_t)off * nkv * D;
      a.v = dv + (size_t)off * nkv * V;
      a.out = dout + (size_t)off * nh * V;
      a.kv = &kp[i].g;
      ag[i] = a;
    }
    g->attention_seqs(g, ag, nseq);
    from_dev(g, og, dout, no);
    const double e = relerr(og, oc, no);
    worst_e = e > worst_e ? e : worst_e;
    ok &= e <= 2e-5;
    g->release(g, dq);
    g->release(g, dk);
    g->release(g, dv);
    g->release(g, dout);
    free(ag);
    free(q);
    free(kk);
    free(v);
    free(oc);
    free(og);
  }
  int cache_ok = 1;
  for (int i = 0; i < nseq; i++) {
    cache_ok &= kv_pair_equal(&kp[i], g);
    kv_pair_free(&kp[i], g);
  }
  ok &= cache_ok;
  printf("%-4s attention_seqs h%d/kv%d %d/%d win %d sink %d%s: %d sequences%s, 2 steps, rel %.2e (tol 2e-05), caches %s\n",
         ok ? "ok" : "FAIL", nh, nkv, D, V, W, sink,
         !bf16 ? "" : mimo_cuda_attn_decode_bf16x3(-1) ? " bf16 (bf16x3 decode)" : " bf16", nseq, mixed ? " (every 7th 5 tokens)" : "", worst_e,
         cache_ok ? "equal" : "DIFFER");
  ok ? n_pass++ : n_fail++;
  free(kp);
}

static int attn_check(void) {
  mimo_backend *c, *g;
  must(mimo_backend_cpu_init(&c, 0), "cpu backend");
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(g));
  const int prec0 = mimo_cuda_attn_precision(-1);
  const acase cases[] = {
      /* MiMo shapes: full (64/4), sliding (64/8, window 128, sink); prompts in chunks */
      {64, 4, 192, 128, 0, 0, 0, {1000, 0, 0, 0}, 0, 0},
      {64, 8, 192, 128, 128, 1, 0, {1000, 0, 0, 0}, 0, 0},
      {64, 8, 192, 128, 128, 1, 0, {200, 64, 3, 1}, 0, 0},
      {64, 4, 192, 128, 0, 1, 0, {200, 64, 3, 1}, 0, 0},
      {8, 1, 192, 128, 0, 0, 0, {64, 200, 1, 3}, 0, 0},
      {8, 1, 192, 128, 8, 1, 0, {64, 3, 200, 1}, 0, 0}, /* ring, T > cap */
      {16, 2, 192, 128, 0, 1, 0, {3, 1, 64, 200}, 0, 0},
      {16, 2, 192, 128, 128, 0, 0, {200, 200, 1, 3}, 0, 0},
      {16, 2, 192, 128, 8, 0, 0, {200, 1, 64, 3}, 0, 0},
      /* the same through the other kernel than the automatic choice */
      {16, 2, 192, 128, 0, 1, 0, {3, 1, 64, 200}, 2, 0},
      {64, 8, 192, 128, 128, 1, 0, {200, 64, 3, 1}, 2, 0},
      {16, 2, 192, 128, 0, 1, 0, {3, 1, 64, 200}, 3, 0},
      {64, 4, 192, 128, 0, 0, 0, {1, 3, 4, 64}, 3, 0},
      {8, 1, 192, 128, 8, 1, 0, {1, 3, 64, 1}, 3, 0},
      /* 64/64 and 128/128 templates */
      {16, 2, 64, 64, 0, 1, 0, {200, 3, 1, 64}, 0, 0},
      {8, 1, 64, 64, 8, 0, 0, {64, 1, 200, 3}, 0, 0},
      {16, 4, 128, 128, 128, 1, 0, {200, 1, 3, 64}, 0, 0},
      {16, 4, 128, 128, 0, 0, 0, {200, 1, 3, 64}, 3, 0},
      /* odd shape: the scalar fallback */
      {6, 2, 40, 24, 0, 1, 0, {64, 3, 1, 0}, 0, 0},
      {6, 2, 40, 24, 8, 0, 0, {64, 3, 1, 0}, 0, 0},
      /* long decode: split-KV over 20000 cached positions */
      {64, 4, 192, 128, 0, 0, 20000, {1, 4, 1, 0}, 0, 0},
      {64, 4, 192, 128, 0, 1, 20000, {1, 4, 0, 0}, 0, 0},
      {16, 2, 192, 128, 0, 1, 20000, {4, 1, 64, 0}, 0, 0},
      {64, 8, 192, 128, 128, 1, 20000, {1, 4, 1, 0}, 0, 0},
      {64, 4, 192, 128, 0, 0, 20000, {16, 5, 0, 0}, 3, 0}, /* prefill with key splits */
      /* bf16 caches: each path, full (paged) and sliding (ring), prompts in chunks, long contexts */
      {64, 4, 192, 128, 0, 1, 0, {200, 64, 3, 1}, 0, 1},
      {64, 8, 192, 128, 128, 1, 0, {200, 64, 3, 1}, 0, 1},
      {8, 1, 192, 128, 8, 1, 0, {64, 3, 200, 1}, 0, 1},
      {16, 2, 192, 128, 0, 1, 0, {3, 1, 64, 200}, 2, 1},
      {16, 2, 192, 128, 0, 1, 0, {3, 1, 64, 200}, 3, 1},
      {16, 2, 64, 64, 0, 1, 0, {200, 3, 1, 64}, 0, 1},
      {16, 4, 128, 128, 128, 1, 0, {200, 1, 3, 64}, 0, 1},
      {6, 2, 40, 24, 0, 1, 0, {64, 3, 1, 0}, 0, 1},
      {6, 2, 40, 24, 8, 0, 0, {64, 3, 1, 0}, 0, 1},
      {64, 4, 192, 128, 0, 0, 20000, {1, 4, 1, 0}, 0, 1},
      {64, 8, 192, 128, 128, 1, 20000, {1, 4, 1, 0}, 0, 1},
      {64, 4, 192, 128, 0, 0, 20000, {16, 5, 0, 0}, 3, 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
    run_case(c, g, &cases[i]);
  mimo_cuda_attn_precision(prec0);
  run_seqs_case(c, g, 64, 4, 192, 128, 0, 1, 24, 0, 0);  /* MiMo full layer */
  run_seqs_case(c, g, 64, 8, 192, 128, 128, 1, 24, 1, 0); /* MiMo sliding layer, with longer steps among them */
  run_seqs_case(c, g, 16, 2, 128, 128, 8, 0, 70, 0, 0);  /* two batch launches; ring of 8 */
  run_seqs_case(c, g, 8, 1, 64, 64, 0, 1, 9, 1, 0);
  run_seqs_case(c, g, 64, 4, 192, 128, 0, 1, 24, 0, 1);  /* the same with bf16 caches */
  run_seqs_case(c, g, 64, 8, 192, 128, 128, 1, 24, 1, 1);
  const int bf3 = mimo_cuda_attn_decode_bf16x3(1); /* the batched decode launches through bf16 parts */
  run_seqs_case(c, g, 64, 4, 192, 128, 0, 1, 24, 0, 1);
  run_seqs_case(c, g, 64, 8, 192, 128, 128, 1, 24, 1, 1);
  mimo_cuda_attn_decode_bf16x3(bf3);
  must(mimo_cuda_sync(g), "final sync");
  mimo_cuda_attn_precision(prec0);
  printf("worst relative error: scalar %.2e (tol %.0e)\n", worst[1][0], tol[1][0]);
  for (int pr = 0; pr < NPREC; pr++)
    printf("worst relative error %-6s: decode %.2e (tol %.0e), prefill %.2e (tol %.0e)\n", prec_name[pr],
           worst[2][pr], tol[2][pr], worst[3][pr], tol[3][pr]);
  printf("worst relative error bf16x3: decode %.2e over %d bf16-cache cases (tol %.0e)\n", worst_bf3, bf3_cases,
         tol[2][1]);
  printf("fp16 prefill through warpgroup MMA and again through mma.sync: %d cases, %d bitwise equal, largest relative "
         "difference %.2e\n", wg_cases, wg_bitwise, wg_worst);
  printf("attn: %d passed, %d failed\n", n_pass, n_fail);
  g->free(g);
  c->free(c);
  return n_fail ? 1 : 0;
}

/* Median ms of `reps` runs of one attention step of T tokens over `past` cached positions (len reset each run). */
static float time_attn(mimo_backend *g, mimo_attn_args *a, int past, int reps) {
  float ms[16];
  a->kv->len = past;
  g->attention(g, a); /* warm-up */
  for (int r = 0; r < reps; r++) {
    a->kv->len = past;
    mimo_cuda_timer_start(g);
    g->attention(g, a);
    ms[r] = mimo_cuda_timer_stop(g);
  }
  must(mimo_cuda_sync(g), "bench");
  return median(ms, reps);
}

typedef struct {
  float *q, *k, *v, *out, *sink;
  kv_pair kp;
  mimo_vec sv;
  mimo_attn_args a;
} bcase;

static void bcase_init(mimo_backend *g, bcase *b, int T, int nh, int nkv, int window, int sink, int cap, int bf16) {
  const int D = 192, V = 128;
  memset(b, 0, sizeof *b);
  b->q = g->alloc(g, (size_t)T * nh * D);
  b->k = g->alloc(g, (size_t)T * nkv * D);
  b->v = g->alloc(g, (size_t)T * nkv * V);
  b->out = g->alloc(g, (size_t)T * nh * V);
  if (!b->q || !b->k || !b->v || !b->out)
    must(MIMO_E_NOMEM, "bench alloc");
  dev_fill(g, b->q, (size_t)T * nh * D, 3.0f);
  dev_fill(g, b->k, (size_t)T * nkv * D, 1.0f);
  dev_fill(g, b->v, (size_t)T * nkv * V, 1.0f);
  kv_pair_init(&b->kp, g, cap, window > 0, nkv, D, V, bf16);
  kv_pair_fill(&b->kp, g);
  static float sk[64];
  fill(sk, 64, 2.0f);
  b->sv = (mimo_vec){nh, MIMO_DT_F32, sk, NULL};
  must(mimo_backend_upload_vec(g, &b->sv), "upload");
  b->a = (mimo_attn_args){.q = b->q, .k = b->k, .v = b->v, .out = b->out, .T = T, .n_heads = nh, .n_kv = nkv,
                          .head_dim = D, .v_head_dim = V, .window = window, .scale = 1.0f / sqrtf(192.0f),
                          .sink = sink ? &b->sv : NULL, .kv = &b->kp.g};
}

static void bcase_free(mimo_backend *g, bcase *b) {
  g->release(g, b->q);
  g->release(g, b->k);
  g->release(g, b->v);
  g->release(g, b->out);
  kv_pair_free(&b->kp, g);
}

/* fp16 prefill: the SM90a kernel against mma.sync, where it runs */
static void wg_variants(mimo_backend *g, mimo_attn_args *a, const char *what, int T, double flops, double fl, int reps) {
  mimo_cuda_attn_precision(1);
  time_attn(g, a, 0, 1);
  if (!mimo_cuda_attn_prefill_wgmma_last()) {
    printf("BENCH attn_prefill_%s: no warpgroup-MMA kernel on this device or build\n", what);
    return;
  }
  /* the default (3 consumer warpgroups) first and last: the card's drift shows between them */
  static const char *vname[] = {"wgmma", "wgmma 2 warpgroups", "mma.sync", "wgmma (again)"};
  for (int v = 0; v < 4; v++) {
    mimo_cuda_attn_prefill_wgmma(v != 2);
    const int w0 = mimo_cuda_attn_prefill_wgmma_wgs(v == 1 ? 2 : 0);
    const float ms = time_attn(g, a, 0, reps);
    mimo_cuda_attn_prefill_wgmma_wgs(w0);
    printf("BENCH attn_prefill_%s [fp16] %s T=%d: %.2f ms, %.1f TFLOP/s (%.1f %% of cuBLAS bf16)\n", what, vname[v], T,
           ms, flops / ms / 1e9, 100.0 * flops / ms / 1e-3 / fl);
  }
  mimo_cuda_attn_prefill_wgmma(1);
}

static int attn_bench(void) {
  mimo_backend *g;
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(g));
  const int prec0 = mimo_cuda_attn_precision(-1);
  const double bw = mimo_cuda_copy_bandwidth(g, (size_t)1 << 31), fl = cublas_bf16_rate(8192);
  printf("BENCH attn_ceiling copy %.1f GB/s, cuBLAS bf16 %.1f TFLOP/s\n", bw / 1e9, fl / 1e12);
  const int T = 32768;
  bcase b;
  /* prefill, full layer: 64 q / 4 kv heads, causal */
  bcase_init(g, &b, T, 64, 4, 0, 0, T, 0);
  double flops = 2.0 * (192 + 128) * 64 * ((double)T * (T + 1) / 2);
  for (int pr = 0; pr < NPREC; pr++) {
    mimo_cuda_attn_precision(pr);
    const float ms = time_attn(g, &b.a, 0, 5);
    printf("BENCH attn_prefill_full [%s]%s T=%d h64/kv4 192/128 causal: %.2f ms, %.1f TFLOP/s (%.1f %% of cuBLAS bf16)\n",
           prec_name[pr], pr && mimo_cuda_attn_prefill_wgmma_last() ? " wgmma" : "", T, ms, flops / ms / 1e9,
           100.0 * flops / ms / 1e-3 / fl);
  }
  wg_variants(g, &b.a, "full", T, flops, fl, 5);
  bcase_free(g, &b);
  /* prefill, sliding layer: 64 q / 8 kv heads, window 128, sink */
  bcase_init(g, &b, T, 64, 8, 128, 1, 128, 0);
  double keys = 0;
  for (int t = 0; t < T; t++)
    keys += t + 1 < 128 ? t + 1 : 128;
  flops = 2.0 * (192 + 128) * 64 * keys;
  for (int pr = 0; pr < NPREC; pr++) {
    mimo_cuda_attn_precision(pr);
    float ms = time_attn(g, &b.a, 0, 7);
    printf("BENCH attn_prefill_swa [%s] T=%d h64/kv8 192/128 window 128 sink: %.2f ms, %.1f TFLOP/s (%.1f %% of "
           "cuBLAS bf16)\n",
           prec_name[pr], T, ms, flops / ms / 1e9, 100.0 * flops / ms / 1e-3 / fl);
    mimo_cuda_attn_prefill_warps(8);
    ms = time_attn(g, &b.a, 0, 7);
    mimo_cuda_attn_prefill_warps(0);
    printf("BENCH attn_prefill_swa [%s] T=%d, 8 warps per block (1 block/SM): %.2f ms, %.1f TFLOP/s\n", prec_name[pr],
           T, ms, flops / ms / 1e9);
  }
  wg_variants(g, &b.a, "swa", T, flops, fl, 7);
  bcase_free(g, &b);
  /* decode at 128K, full layer, tf32 (fast) and 3xTF32 (fp16), float32 and bf16 caches; then the scalar kernel */
  const int ctx = 131072;
  for (int Td = 1; Td <= 4; Td *= 4) {
    for (int bf = 1; bf >= 0; bf--) {
      bcase_init(g, &b, Td, 64, 4, 0, 0, ctx + Td, bf);
      const double bytes = (double)(ctx + Td) * 4 * (192 + 128) * (bf ? 2 : 4);
      for (int pr = 0; pr < (bf ? 3 : 2); pr++) { /* 2: bf16 parts (bf16 caches) */
        mimo_cuda_attn_precision(pr ? 1 : 0);
        const int bf3 = mimo_cuda_attn_decode_bf16x3(pr == 2);
        const float ms = time_attn(g, &b.a, ctx, 9);
        mimo_cuda_attn_decode_bf16x3(bf3);
        printf("BENCH attn_decode_full [%s]%s T=%d ctx=%d h64/kv4: %.1f us, %.1f GB/s on KV bytes (%.1f %% of copy)\n",
               pr == 2 ? "bf16x3" : pr ? "3xtf32" : "tf32", bf ? " bf16 KV" : "", Td, ctx, ms * 1e3, bytes / ms / 1e6,
               100.0 * bytes / ms / 1e-3 / bw);
      }
      if (bf)
        bcase_free(g, &b);
    }
    const double bytes = (double)(ctx + Td) * 4 * (192 + 128) * 4;
    if (Td == 1) {
      mimo_cuda_attn_force(1);
      const float ms = time_attn(g, &b.a, ctx, 1);
      mimo_cuda_attn_force(0);
      printf("BENCH attn_decode_full_scalar T=1 ctx=%d (fp32 scalar kernel): %.1f us, %.1f GB/s\n", ctx, ms * 1e3,
             bytes / ms / 1e6);
    }
    bcase_free(g, &b);
  }
  /* decode on a sliding layer: 128 cached keys of 8 kv heads (ring), sink */
  for (int Td = 1; Td <= 4; Td *= 4)
    for (int bf = 0; bf <= 1; bf++) {
      bcase_init(g, &b, Td, 64, 8, 128, 1, 128, bf);
      const double bytes = 128.0 * 8 * (192 + 128) * (bf ? 2 : 4);
      for (int pr = 0; pr < (bf ? 3 : 2); pr++) {
        mimo_cuda_attn_precision(pr ? 1 : 0);
        const int bf3 = mimo_cuda_attn_decode_bf16x3(pr == 2);
        const float ms = time_attn(g, &b.a, ctx, 15);
        mimo_cuda_attn_decode_bf16x3(bf3);
        printf("BENCH attn_decode_swa [%s]%s T=%d ctx=%d h64/kv8 window 128: %.1f us, %.1f GB/s on KV bytes (%.1f %% "
               "of copy)\n",
               pr == 2 ? "bf16x3" : pr ? "3xtf32" : "tf32", bf ? " bf16 KV" : "", Td, ctx, ms * 1e3, bytes / ms / 1e6,
               100.0 * bytes / ms / 1e-3 / bw);
      }
      bcase_free(g, &b);
    }
  mimo_cuda_attn_precision(prec0);
  must(mimo_cuda_sync(g), "final sync");
  g->free(g);
  return 0;
}

int cuda_attn_main(int argc, char **argv) {
  if (mimo_cuda_device_count() == 0) {
    printf("no CUDA device: skipped\n");
    return 0;
  }
  if (argc >= 2 && strcmp(argv[1], "check") == 0)
    return attn_check();
  if (argc >= 2 && strcmp(argv[1], "bench") == 0)
    return attn_bench();
  fprintf(stderr, "usage: mimo_cuda_check attn check|bench\n");
  return 2;
}
