/* mimo_cuda_check moe-prefill check|bench: the grouped tensor-core MoE prefill (cuda_moe_gemm.cu).
 *   check  the MoE op, GPU vs the CPU backend on fresh random experts/router/bias/x: expert ids equal and
 *          ‖gpu − cpu‖ / ‖cpu‖ <= 2e-3 for int4 experts (fp16 activations, weights and h on the tensor
 *          cores), 1e-2 for bf16 experts (bf16 operands), GPU
 *          output poisoned first, for both tile widths; two runs bit-identical (determinism). Shapes that do
 *          not fit the grouped kernels (group 16) check the per-token fallback at 1e-5.
 *   bench  ceilings (copy bandwidth, cuBLAS bf16 8192³) in the same run, then MoE prefill TFLOP/s (useful
 *          FLOPs 2·T·k·3·H·I, router and routing included in the time) against the cuBLAS rate, the phase
 *          split, and the per-token vs grouped crossover that sets the dispatch threshold.
 *   ab [A B]  variant A against B (default: the default against the variant before), one MoE each in turn (clock
 *          drift falls on both).
 *   profile  one int4 MoE at T = 4096 after a warm-up (for ncu).
 *   router  the prefill's fp32 router GEMM (256 × 4096 weights, T tokens) as cublasSgemm against every algorithm
 *          cuBLASLt's heuristic offers for it (fp32 compute), then the backend's fp32 linear as SGEMM against 3xTF32
 *          (round 27): time and error against a double-precision product. */
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda_common.h"

/* cuda_moe_gemm.cu test hooks */
int mimo_cuda_moe_grouped_wn(int wn);
int mimo_cuda_moe_grouped_wgmma(int on);
int mimo_cuda_moe_grouped_wgmma_last(void);
void mimo_cuda_moe_grouped_events(void *ev5);
int mimo_cuda_moe_wg_tile128(int on);
int mimo_cuda_moe_wg_ws(int on);

static int n_pass, n_fail;

typedef struct {
  int E, K, H, I;
  int bf16, group, asym;
  mimo_linear router, *ex;
  float *bias;
  mimo_vec bv;
} moe_set;

/* Random experts: `distinct` host weight sets cycled over the experts (each expert its own device copy). */
static void set_init(moe_set *s, mimo_backend *g, int E, int K, int H, int I, int bf16, int group, int asym,
                     int distinct) {
  memset(s, 0, sizeof *s);
  s->E = E;
  s->K = K;
  s->H = H;
  s->I = I;
  s->bf16 = bf16;
  s->group = group;
  s->asym = asym;
  s->router = rand_dense(E, H, MIMO_DT_F32, 0.1f);
  must(mimo_backend_upload_linear(g, &s->router), "upload router");
  s->bias = xmalloc((size_t)E * 4);
  fill(s->bias, E, 0.1f);
  s->bv = (mimo_vec){E, MIMO_DT_F32, s->bias, NULL};
  must(mimo_backend_upload_vec(g, &s->bv), "upload bias");
  s->ex = xmalloc((size_t)E * 3 * sizeof *s->ex);
  for (int e = 0; e < E; e++)
    for (int p = 0; p < 3; p++) {
      mimo_linear *l = &s->ex[e * 3 + p];
      if (e < distinct) {
        const int out = p == 2 ? H : I, in = p == 2 ? I : H;
        *l = bf16 ? rand_dense(out, in, MIMO_DT_BF16, 0.05f) : rand_int4(out, in, group, asym);
      } else {
        *l = s->ex[(e % distinct) * 3 + p]; /* same host bits, a separate device copy */
        l->dev = NULL;
      }
      must(mimo_backend_upload_linear(g, l), "upload experts");
    }
}

static void set_free(moe_set *s, int distinct) {
  for (int e = 0; e < distinct && e < s->E; e++)
    for (int p = 0; p < 3; p++)
      free_lin(&s->ex[e * 3 + p]);
  free(s->ex);
  free_lin(&s->router);
  free(s->bias);
}

static mimo_moe_args set_args(moe_set *s, const float *x, float *out, int T, int *ids) {
  mimo_moe_args a = {.x = x, .out = out, .T = T, .hidden = s->H, .inter = s->I, .n_experts = s->E,
                     .top_k = s->K, .router = &s->router, .bias = &s->bv, .experts = s->ex, .norm_topk = true,
                     .scaling = 2.5f, .ids_out = ids};
  return a;
}

/* Kernel variants a check case runs (NULL names: the default) and the bench times. */
typedef struct {
  const char *name;
  int wn, wgmma;         /* mma.sync tile width; wgmma (1 where the device runs sm_90a code, 0 off) */
  int tile128;           /* wgmma: an expert of 129..160 rows as a full tile and a part-filled one */
  int x3;                /* the router as three tf32 products on wgmma (the default) rather than SGEMM */
  int same;              /* expected bit for bit the default's output (the check says whether it is) */
  int ws;                /* wgmma: the warp-specialised kernels (round 31, cuda_moe_wgws.cu) */
} variant;
/* 0 is the library's default, 1 the variant before the last change kept (round 27: the router on SGEMM) */
static const variant variants[] = {
    {"default", 4, 1, 0, 1, 1, 0},           {"SGEMM router (before)", 4, 1, 0, 0, 0, 0},
    {"wgmma tiles of 128", 4, 1, 1, 1, 1, 0}, {"mma.sync wn4", 4, 0, 0, 1, 0, 0},
    {"mma.sync wn8", 8, 0, 0, 1, 0, 0},      {"wgmma warp-specialised", 4, 1, 0, 1, 1, 1}};
enum { NV = sizeof variants / sizeof *variants, V_BEFORE = 1 };
/* The warp-specialised kernels join check and bench only with MIMO_CHECK_WS=1 until a device has run them (a wrong
 * barrier count would hang the whole gpu-check; tools/gpu-check-pending's part ws runs them under timeouts). */
static int variant_on(const variant *v) { return !v->ws || getenv("MIMO_CHECK_WS"); }
static void set_variant(const variant *v) {
  mimo_cuda_moe_grouped_wn(v->wn);
  mimo_cuda_moe_grouped_wgmma(v->wgmma);
  mimo_cuda_moe_wg_tile128(v->tile128);
  mimo_cuda_moe_wg_ws(v->ws);
  mimo_cuda_f32_x3(v->x3);
}

/* One check case: CPU once; GPU with the default kernels (wgmma on SM90a, else mma.sync) twice (bit-identical?),
 * then every other variant; the largest error counts. */
static void check_case(mimo_backend *c, mimo_backend *g, int T, int E, int K, int H, int I, int bf16, int group,
                       int asym) {
  moe_set s;
  set_init(&s, g, E, K, H, I, bf16, group, asym, E);
  const size_t n = (size_t)T * H;
  float *x = xmalloc(n * 4), *oc = xmalloc(n * 4), *o0 = xmalloc(n * 4), *o = xmalloc(n * 4);
  int *idc = xmalloc((size_t)T * K * 4), *idg = xmalloc((size_t)T * K * 4);
  fill(x, n, 1.0f);
  mimo_moe_args a = set_args(&s, x, oc, T, idc);
  c->moe(c, &a);
  float *dx = to_dev(g, x, n), *dout = g->alloc(g, n);
  int same_ids = 1, used_wg = 0, det = 1;
  double err = 0, e[NV + 1];
  char errs[2048] = "";
  int len = 0;
  for (int r = 0; r <= NV; r++) { /* run 0 and 1: the default */
    if (r >= 2 && !variant_on(&variants[r - 1]))
      continue;
    set_variant(&variants[r ? r - 1 : 0]);
    mimo_cuda_poison(g, dout, n);
    mimo_moe_args b = set_args(&s, dx, dout, T, idg);
    g->moe(g, &b);
    from_dev(g, r ? o : o0, dout, n);
    if (r == 0)
      used_wg = mimo_cuda_moe_grouped_wgmma_last();
    same_ids &= memcmp(idc, idg, (size_t)T * K * 4) == 0;
    e[r] = relerr(r ? o : o0, oc, n);
    err = e[r] > err ? e[r] : err;
    if (r == 1)
      det = memcmp(o, o0, n * 4) == 0;
    if (r >= 2 && used_wg && variants[r - 1].same && len < (int)sizeof errs) /* as designed, not a bit changes? */
      len += snprintf(errs + len, sizeof errs - (size_t)len, " [%s: %s]", variants[r - 1].name,
                      memcmp(o, o0, n * 4) ? "differs" : "bitwise equal");
    if (r >= 2 && len < (int)sizeof errs)
      len += snprintf(errs + len, sizeof errs - (size_t)len, " %.2e (%s)", e[r], variants[r - 1].name);
  }
  set_variant(&variants[0]);
  /* the grouped kernels take int4 with groups that are multiples of 32, or bf16; H, I multiples of 32 */
  const int grouped = (bf16 || group % 32 == 0) && H % 32 == 0 && I % 32 == 0;
  /* int4: fp16 operands (measured <= 3.9e-4 on H200); bf16 experts: bf16 operands (<= 2.7e-3) */
  const double tol = !grouped ? 1e-5 : bf16 ? 1e-2 : 2e-3;
  const int ok = same_ids && det && err <= tol;
  char name[160];
  snprintf(name, sizeof name, "%s T=%d E%d top%d %dx%d %s%s", grouped ? "grouped" : "per-token", T, E, K, H, I,
           bf16 ? "bf16" : asym ? "int4-asym" : "int4-sym", bf16 ? "" : group == 32 ? " g32" : group == 64 ? " g64" : group == 128 ? " g128" : " g16");
  printf("%-4s %-50s rel %.2e (default: %s)%s tol %.0e, ids %s, runs %s\n", ok ? "ok" : "FAIL", name, e[0],
         used_wg ? "wgmma" : "mma.sync", errs, tol, same_ids ? "equal" : "DIFFER", det ? "identical" : "DIFFER");
  ok ? n_pass++ : n_fail++;
  g->release(g, dx);
  g->release(g, dout);
  free(x);
  free(oc);
  free(o0);
  free(o);
  free(idc);
  free(idg);
  set_free(&s, E);
}

static int check(void) {
  mimo_backend *c, *g;
  must(mimo_backend_cpu_init(&c, 0), "cpu backend");
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(g));
  const int old = mimo_cuda_moe_grouped_min_t(1); /* every T takes the grouped kernels when the shape fits */
  struct { int T, E, K, H, I, bf16, group, asym; } cs[] = {
      {16, 16, 4, 512, 256, 0, 32, 0},     {100, 32, 8, 1024, 512, 0, 32, 1}, {512, 64, 8, 512, 256, 0, 128, 0},
      {2048, 64, 6, 512, 256, 1, 0, 0},    {16, 16, 8, 4096, 2048, 0, 128, 0}, {512, 16, 4, 1024, 512, 1, 0, 0},
      {2048, 32, 8, 512, 256, 0, 32, 1},   {2048, 16, 4, 1024, 512, 0, 128, 1}, {100, 64, 4, 512, 256, 0, 64, 0},
      /* widths that are multiples of 32 but not 64 (a half k stage, a part-filled column tile), as the tiny model */
      {100, 16, 4, 96, 32, 0, 32, 0},      {100, 16, 4, 320, 96, 1, 0, 0},    {300, 8, 2, 64, 32, 0, 32, 1},
      /* experts of 129..256 tokens (a full tile and a part-filled one), group 64 asymmetric */
      {300, 16, 8, 512, 256, 0, 64, 1},
      /* experts of ~100..150 tokens (n128 and n160 tiles, most part-filled) */
      {1000, 64, 8, 512, 256, 0, 128, 0},
      /* the fallback: group 16 */
      {100, 16, 4, 256, 128, 0, 16, 1}};
  for (size_t i = 0; i < sizeof cs / sizeof *cs; i++)
    check_case(c, g, cs[i].T, cs[i].E, cs[i].K, cs[i].H, cs[i].I, cs[i].bf16, cs[i].group, cs[i].asym);
  mimo_cuda_moe_grouped_min_t(old ? old : -1);
  must(mimo_cuda_sync(g), "final sync");
  printf("moe-prefill: %d passed, %d failed\n", n_pass, n_fail);
  g->free(g);
  c->free(c);
  return n_fail ? 1 : 0;
}

/* ---- bench ---- */

/* Median ms of `reps` event-timed MoE ops (x rotates over nx input sets), after 2 warm-up runs. */
static float time_moe(mimo_backend *g, moe_set *s, float *const *dx, int nx, float *dout, int T, int reps) {
  float ms[32];
  for (int r = 0; r < reps + 2; r++) {
    mimo_moe_args a = set_args(s, dx[r % nx], dout, T, NULL);
    mimo_cuda_timer_start(g);
    g->moe(g, &a);
    const float t = mimo_cuda_timer_stop(g);
    if (r >= 2)
      ms[r - 2] = t;
  }
  must(mimo_cuda_sync(g), "moe bench");
  return median(ms, reps);
}

/* Router, routing, sort + x to bf16, gate+up, down, combine (events between the launches, separate runs). */
static void phases(mimo_backend *g, moe_set *s, float *const *dx, int nx, float *dout, int T, const char *name) {
  cudaEvent_t em[5], eg[5];
  float ph[6][9];
  for (int i = 0; i < 5; i++) {
    CK(cudaEventCreate(&em[i]));
    CK(cudaEventCreate(&eg[i]));
  }
  mimo_cuda_moe_events(em);
  mimo_cuda_moe_grouped_events(eg);
  for (int r = 0; r < 9; r++) {
    mimo_moe_args a = set_args(s, dx[r % nx], dout, T, NULL);
    g->moe(g, &a);
    CK(cudaEventSynchronize(em[4]));
    CK(cudaEventElapsedTime(&ph[0][r], em[0], em[1]));
    CK(cudaEventElapsedTime(&ph[1][r], em[1], em[2]));
    for (int i = 0; i < 4; i++)
      CK(cudaEventElapsedTime(&ph[2 + i][r], eg[i], eg[i + 1]));
  }
  mimo_cuda_moe_events(NULL);
  mimo_cuda_moe_grouped_events(NULL);
  must(mimo_cuda_sync(g), "phases");
  for (int i = 0; i < 5; i++) {
    cudaEventDestroy(em[i]);
    cudaEventDestroy(eg[i]);
  }
  printf("BENCH moe_prefill_phases %s T=%d: router %.1f us, routing %.1f us, sort+x->bf16 %.1f us, gate+up %.1f us, "
         "down %.1f us, combine %.1f us\n",
         name, T, median(ph[0], 9) * 1e3, median(ph[1], 9) * 1e3, median(ph[2], 9) * 1e3, median(ph[3], 9) * 1e3,
         median(ph[4], 9) * 1e3, median(ph[5], 9) * 1e3);
}

/* GPU grouped vs GPU per-token on the bench's experts (same routing): relative difference. */
static double cross_check(mimo_backend *g, moe_set *s, const float *dx, float *dout, int T) {
  const size_t n = (size_t)T * s->H;
  float *a1 = xmalloc(n * 4), *a2 = xmalloc(n * 4);
  const int old = mimo_cuda_moe_grouped_min_t(1 << 30);
  mimo_moe_args a = set_args(s, dx, dout, T, NULL);
  mimo_cuda_poison(g, dout, n);
  g->moe(g, &a);
  from_dev(g, a1, dout, n);
  mimo_cuda_moe_grouped_min_t(1);
  mimo_cuda_poison(g, dout, n);
  g->moe(g, &a);
  from_dev(g, a2, dout, n);
  mimo_cuda_moe_grouped_min_t(old ? old : -1);
  const double e = relerr(a2, a1, n);
  free(a1);
  free(a2);
  return e;
}

static void bench_set(mimo_backend *g, moe_set *s, float *const *dx, int nx, float *dout, double fl,
                      const char *name, const int *Ts, int nT) {
  for (int i = 0; i < nT; i++) {
    const int T = Ts[i];
    const double flops = 2.0 * T * s->K * 3.0 * s->H * s->I;
    for (int v = 0; v < NV; v++) {
      if ((s->bf16 && (variants[v].tile128 || variants[v].ws)) || !variant_on(&variants[v]))
        continue; /* bf16 experts run mma.sync in every wgmma mode */
      set_variant(&variants[v]);
      const float ms = time_moe(g, s, dx, nx, dout, T, T >= 2048 ? 9 : 15);
      printf("BENCH moe_prefill %s T=%d E%d top%d %dx%d %s: %.3f ms  %.1f TFLOP/s = %.1f%% of cuBLAS bf16\n", name, T,
             s->E, s->K, s->H, s->I, variants[v].name, ms, flops / (ms * 1e-3) / 1e12, 100.0 * flops / (ms * 1e-3) / fl);
    }
    for (int v = 0; v <= (s->bf16 ? 0 : V_BEFORE); v++) { /* int4: the default and the variant before */
      char vname[96];
      snprintf(vname, sizeof vname, "%s, %s", name, variants[v].name);
      set_variant(&variants[v]);
      phases(g, s, dx, nx, dout, T, vname);
    }
    set_variant(&variants[0]);
  }
}

/* The benches' set-up: the ceilings (the copy bandwidth if asked), NX input sets of TMAX tokens, and MiMo-shaped int4
 * experts (E256 top-8 4096 x 2048, g128; two weight sets cycled over the experts). */
enum { NX = 2, TMAX = 4096 };
typedef struct {
  mimo_backend *g;
  double fl;
  float *dx[NX], *dout;
  moe_set q;
} bench_env;
static void bench_env_init(bench_env *b, int with_copy, int E, int K, int H, int I) {
  must(mimo_backend_cuda_init(&b->g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(b->g));
  if (with_copy)
    printf("BENCH copy_bandwidth %.1f GB/s (2 GiB device-to-device, read+write)\n",
           mimo_cuda_copy_bandwidth(b->g, (size_t)1 << 31) / 1e9);
  b->fl = cublas_bf16_rate(8192);
  printf("BENCH cublas_bf16_8192 %.1f TFLOP/s\n", b->fl / 1e12);
  float *hx = xmalloc((size_t)TMAX * H * 4);
  for (int i = 0; i < NX; i++) {
    fill(hx, (size_t)TMAX * H, 1.0f);
    b->dx[i] = to_dev(b->g, hx, (size_t)TMAX * H);
  }
  free(hx);
  b->dout = b->g->alloc(b->g, (size_t)TMAX * H);
  set_init(&b->q, b->g, E, K, H, I, 0, 128, 0, 2);
}

static int bench(void) {
  const int E = 256, K = 8, H = 4096, I = 2048;
  bench_env be;
  bench_env_init(&be, 1, E, K, H, I);
  mimo_backend *g = be.g;
  const double fl = be.fl;
  float **dx = be.dx, *dout = be.dout;
  moe_set *q = &be.q;
  /* crossover: the decode kernels (per pair below mimo_cuda_moe_tcg_min_t tokens, grouped by expert from there)
   * vs the grouped GEMM, same experts (sets the dispatch threshold gg_min_t) */
  const int old = mimo_cuda_moe_grouped_min_t(0);
  const int Tc[] = {8, 16, 32, 64, 80, 96, 112, 128, 192, 256, 384, 512};
  for (int i = 0; i < (int)(sizeof Tc / sizeof *Tc); i++) {
    mimo_cuda_moe_grouped_min_t(1 << 30);
    const float tp = time_moe(g, q, dx, NX, dout, Tc[i], 11);
    mimo_cuda_moe_grouped_min_t(1);
    const float tg = time_moe(g, q, dx, NX, dout, Tc[i], 11);
    printf("BENCH moe_prefill_crossover int4 g128 T=%d: decode kernels %.1f us, grouped GEMM %.1f us\n", Tc[i],
           tp * 1e3, tg * 1e3);
  }
  mimo_cuda_moe_grouped_min_t(1);
  printf("BENCH moe_prefill_check grouped vs per-token (GPU) int4 T=64 rel %.2e, T=4096 rel %.2e\n",
         cross_check(g, q, dx[0], dout, 64), cross_check(g, q, dx[1], dout, 4096));
  const int Ts[] = {4096, 2048, 512};
  bench_set(g, q, dx, NX, dout, fl, "int4-g128", Ts, 3);
  set_free(q, 2);
  moe_set b;
  set_init(&b, g, E, K, H, I, 1, 0, 0, 1);
  bench_set(g, &b, dx, NX, dout, fl, "bf16", Ts, 2);
  printf("BENCH moe_prefill_check grouped vs per-token (GPU) bf16 T=512 rel %.2e\n", cross_check(g, &b, dx[0], dout, 512));
  set_free(&b, 1);
  mimo_cuda_moe_grouped_min_t(old ? old : -1);
  must(mimo_cuda_sync(g), "bench");
  g->free(g);
  return 0;
}

/* Variant va against vb (default: the library's default against the variant before the last change kept), one MoE each in turn
 * (A B A B ...), so that a drift of the clocks over the run (a warm GPU slows down) falls on both alike: medians of
 * 21 pairs after 2. */
static int ab(int va, int vb) {
  const int E = 256, K = 8, H = 4096, I = 2048, Ts[] = {4096, 2048, 512};
  bench_env be;
  bench_env_init(&be, 0, E, K, H, I);
  const int old = mimo_cuda_moe_grouped_min_t(1);
  for (int i = 0; i < 3; i++) {
    float ms[2][23];
    for (int r = 0; r < 46; r++) {
      set_variant(&variants[r & 1 ? vb : va]);
      ms[r & 1][r >> 1] = time_moe(be.g, &be.q, be.dx, NX, be.dout, Ts[i], 1);
    }
    set_variant(&variants[0]);
    const double pct_ms = 2.0 * Ts[i] * K * 3.0 * H * I / be.fl * 1e5; /* % of cuBLAS = pct_ms / (time in ms) */
    const float a = median(ms[0] + 2, 21), b = median(ms[1] + 2, 21);
    printf("BENCH moe_prefill_ab int4-g128 T=%d interleaved: %s %.3f ms = %.1f%% of cuBLAS bf16, %s %.3f ms = "
           "%.1f%%\n", Ts[i], variants[va].name, a, pct_ms / a, variants[vb].name, b, pct_ms / b);
  }
  mimo_cuda_moe_grouped_min_t(old ? old : -1);
  set_free(&be.q, 2);
  must(mimo_cuda_sync(be.g), "ab");
  be.g->free(be.g);
  return 0;
}

/* One int4 MoE at T = 4096 (E256 top-8 4096x2048 g128) after a warm-up: a target for a profiler. */
static int profile(void) {
  mimo_backend *g;
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  const int T = 4096, H = 4096;
  float *hx = xmalloc((size_t)T * H * 4);
  fill(hx, (size_t)T * H, 1.0f);
  float *dx = to_dev(g, hx, (size_t)T * H), *dout = g->alloc(g, (size_t)T * H);
  free(hx);
  moe_set q;
  set_init(&q, g, 256, 8, H, 2048, 0, 128, 0, 2);
  for (int r = 0; r < 2; r++) {
    mimo_moe_args a = set_args(&q, dx, dout, T, NULL);
    g->moe(g, &a);
  }
  must(mimo_cuda_sync(g), "profile");
  set_free(&q, 2);
  g->free(g);
  return 0;
}

typedef struct {
  cublasHandle_t h;
  cublasLtHandle_t lt;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  const cublasLtMatmulAlgo_t *algo;
  const float *w, *x;
  float *y;
  void *ws;
  size_t ws_size;
  int out, T, in;
} router_gemm;

static void run_sgemm(void *p) {
  router_gemm *r = p;
  const float one = 1.f, zero = 0.f;
  CK(cublasSgemm(r->h, CUBLAS_OP_T, CUBLAS_OP_N, r->out, r->T, r->in, &one, r->w, r->in, r->x, r->in, &zero, r->y,
                 r->out));
}
static void run_lt(void *p) {
  router_gemm *r = p;
  const float one = 1.f, zero = 0.f;
  CK(cublasLtMatmul(r->lt, r->op, &one, r->w, r->la, r->x, r->lb, &zero, r->y, r->lc, r->y, r->lc, r->algo, r->ws,
                    r->ws_size, 0));
}

/* max |y − ref| / max |ref| over the rows checked (ref in double on the host) */
static double router_err(const float *dy, const float *w, const float *x, int out, int T, int in) {
  float *y = xmalloc((size_t)out * T * 4);
  CK(cudaMemcpy(y, dy, (size_t)out * T * 4, cudaMemcpyDeviceToHost));
  double emax = 0, rmax = 0;
  for (int t = 0; t < T; t += 97)
    for (int o = 0; o < out; o++) {
      double ref = 0;
      for (int k = 0; k < in; k++)
        ref += (double)w[(size_t)o * in + k] * x[(size_t)t * in + k];
      emax = fmax(emax, fabs(y[(size_t)t * out + o] - ref));
      rmax = fmax(rmax, fabs(ref));
    }
  free(y);
  return emax / rmax;
}

static int router_probe(void) {
  const int out = 256, in = 4096, Ts[] = {512, 4096};
  float *w = xmalloc((size_t)out * in * 4), *x = xmalloc((size_t)4096 * in * 4);
  fill(w, (size_t)out * in, 0.05f);
  fill(x, (size_t)4096 * in, 1.0f);
  router_gemm r = {.out = out, .in = in, .ws_size = (size_t)32 << 20};
  float *dw, *dx, *dy;
  CK(cudaMalloc((void **)&dw, (size_t)out * in * 4));
  CK(cudaMalloc((void **)&dx, (size_t)4096 * in * 4));
  CK(cudaMalloc((void **)&dy, (size_t)out * 4096 * 4));
  CK(cudaMalloc(&r.ws, r.ws_size));
  CK(cudaMemcpy(dw, w, (size_t)out * in * 4, cudaMemcpyHostToDevice));
  CK(cudaMemcpy(dx, x, (size_t)4096 * in * 4, cudaMemcpyHostToDevice));
  r.w = dw;
  r.x = dx;
  r.y = dy;
  CK(cublasCreate(&r.h));
  CK(cublasLtCreate(&r.lt));
  for (int ti = 0; ti < 2; ti++) {
    const int T = Ts[ti];
    r.T = T;
    const double fl = 2.0 * out * T * (double)in;
    const float ts = time_default_stream_ms(run_sgemm, &r, 10);
    printf("BENCH router_gemm T=%d cublasSgemm %.1f us %.1f TFLOP/s err %.2e\n", T, ts * 1e3, fl / (ts * 1e-3) / 1e12,
           router_err(dy, w, x, out, T, in));
    CK(cublasLtMatmulDescCreate(&r.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t tr = CUBLAS_OP_T;
    CK(cublasLtMatmulDescSetAttribute(r.op, CUBLASLT_MATMUL_DESC_TRANSA, &tr, sizeof tr));
    CK(cublasLtMatrixLayoutCreate(&r.la, CUDA_R_32F, in, out, in));
    CK(cublasLtMatrixLayoutCreate(&r.lb, CUDA_R_32F, in, T, in));
    CK(cublasLtMatrixLayoutCreate(&r.lc, CUDA_R_32F, out, T, out));
    cublasLtMatmulPreference_t pref;
    CK(cublasLtMatmulPreferenceCreate(&pref));
    CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &r.ws_size,
                                            sizeof r.ws_size));
    cublasLtMatmulHeuristicResult_t res[32];
    int nres = 0;
    CK(cublasLtMatmulAlgoGetHeuristic(r.lt, r.op, r.la, r.lb, r.lc, r.lc, pref, 32, res, &nres));
    for (int i = 0; i < nres; i++) {
      if (res[i].state)
        continue;
      r.algo = &res[i].algo;
      const float tl = time_default_stream_ms(run_lt, &r, 10);
      printf("BENCH router_gemm T=%d cublasLt algo %d (workspace %zu) %.1f us %.1f TFLOP/s err %.2e\n", T, i,
             res[i].workspaceSize, tl * 1e3, fl / (tl * 1e-3) / 1e12, router_err(dy, w, x, out, T, in));
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(r.la);
    cublasLtMatrixLayoutDestroy(r.lb);
    cublasLtMatrixLayoutDestroy(r.lc);
    cublasLtMatmulDescDestroy(r.op);
  }
  cublasLtDestroy(r.lt);
  cublasDestroy(r.h);
  /* the backend's fp32 linear (what the MoE's router calls): SGEMM against 3xTF32 on wgmma (round 27, the default;
   * SGEMM where the device does not run sm_90a code), one call each in turn */
  mimo_backend *g;
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  mimo_linear L = dense_linear(out, in, MIMO_DT_F32, w);
  must(mimo_backend_upload_linear(g, &L), "upload router");
  float *gx = to_dev(g, x, (size_t)4096 * in), *gy = g->alloc(g, (size_t)4096 * out);
  const int Tb[] = {512, 1024, 2048, 4096}, x3_was = mimo_cuda_f32_x3(-1);
  for (int ti = 0; ti < 4; ti++) {
    const int T = Tb[ti];
    float ms[2][17];
    for (int i = 0; i < 38; i++) {
      mimo_cuda_f32_x3(i & 1);
      mimo_cuda_timer_start(g);
      g->linear(g, gy, gx, T, &L);
      const float t = mimo_cuda_timer_stop(g);
      if (i >= 4)
        ms[i & 1][(i - 4) >> 1] = t;
    }
    double err[2];
    for (int v = 0; v < 2; v++) {
      mimo_cuda_f32_x3(v);
      mimo_cuda_poison(g, gy, (size_t)T * out);
      g->linear(g, gy, gx, T, &L);
      must(mimo_cuda_sync(g), "router");
      err[v] = router_err(gy, w, x, out, T, in);
    }
    mimo_cuda_f32_x3(x3_was);
    const double fl = 2.0 * out * T * (double)in, a = median(ms[0], 17), b = median(ms[1], 17);
    printf("BENCH router_backend T=%d interleaved: SGEMM %.1f us %.1f TFLOP/s err %.2e, 3xTF32 wgmma %.1f us %.1f "
           "TFLOP/s err %.2e\n", T, a * 1e3, fl / (a * 1e-3) / 1e12, err[0], b * 1e3, fl / (b * 1e-3) / 1e12, err[1]);
  }
  g->release(g, gx);
  g->release(g, gy);
  g->free(g);
  cudaFree(dw);
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(r.ws);
  free(w);
  free(x);
  return 0;
}

int cuda_moe_prefill_main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "ab") == 0) {
    const int va = argc >= 4 ? atoi(argv[2]) : 0, vb = argc >= 4 ? atoi(argv[3]) : V_BEFORE;
    if (va < 0 || va >= NV || vb < 0 || vb >= NV) {
      fprintf(stderr, "moe-prefill ab: variants are 0..%d\n", NV - 1);
      return 2;
    }
    return mimo_cuda_device_count() ? ab(va, vb) : 0;
  }
  if (argc >= 2 && strcmp(argv[1], "profile") == 0)
    return profile();
  if (argc >= 2 && strcmp(argv[1], "router") == 0)
    return mimo_cuda_device_count() ? router_probe() : 0;
  if (argc < 2 || (strcmp(argv[1], "check") && strcmp(argv[1], "bench"))) {
    fprintf(stderr, "usage: mimo_cuda_check moe-prefill check|bench|ab|profile|router\n");
    return 2;
  }
  if (mimo_cuda_device_count() == 0) {
    printf("no CUDA device: skipped\n");
    return 0;
  }
  return strcmp(argv[1], "check") == 0 ? check() : bench();
}
