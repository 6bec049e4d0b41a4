/* GPU checks (run by tools/gpu-check, not by ctest: they need a GPU).
 *   mimo_cuda_check kernels          every CUDA op vs the CPU backend on fresh random inputs
 *   mimo_cuda_check compare A B V [M]  logits files [T][V] (A = reference): KL per position, greedy agreement;
 *                                    M: the reference's router margins (mimo logits --route-margin)
 *   mimo_cuda_check bench            micro-benchmarks with their ceilings (cuda_bench.c)
 * Relative error ‖gpu − cpu‖ / ‖cpu‖; GPU outputs are poisoned with NaN before each run. */
#include "cuda_common.h"

static int n_fail, n_pass;

static void report(const char *what, double err, double tol) {
  int ok = err <= tol;
  printf("%-4s %-58s rel %.2e (tol %.0e)\n", ok ? "ok" : "FAIL", what, err, tol);
  ok ? n_pass++ : n_fail++;
}

/* Runs y = op on both backends and compares. */
static void check_linear(mimo_backend *c, mimo_backend *g, mimo_linear *W, int T, double tol, const char *name) {
  float *x = xmalloc((size_t)T * W->in * 4), *yc = xmalloc((size_t)T * W->out * 4), *yg = xmalloc((size_t)T * W->out * 4);
  fill(x, (size_t)T * W->in, 1.0f);
  c->linear(c, yc, x, T, W);
  float *dx = to_dev(g, x, (size_t)T * W->in), *dy = g->alloc(g, (size_t)T * W->out);
  mimo_cuda_poison(g, dy, (size_t)T * W->out);
  g->linear(g, dy, dx, T, W);
  from_dev(g, yg, dy, (size_t)T * W->out);
  char buf[128];
  snprintf(buf, sizeof buf, "linear %s T=%d %dx%d%s", name, T, W->out, W->in,
           T > 4 && !strstr(name, "3xTF32") ? " (cuBLAS)" : "");
  report(buf, relerr(yg, yc, (size_t)T * W->out), tol);
  g->release(g, dx);
  g->release(g, dy);
  free(x);
  free(yc);
  free(yg);
}

static void check_linears(mimo_backend *c, mimo_backend *g) {
  int shapes[][2] = {{256, 512}, {100, 264}, {1000, 4096}, {2048, 1024}};
  int Ts[] = {1, 2, 4, 5, 17, 64};
  for (size_t s = 0; s < 4; s++) {
    mimo_linear b = rand_dense(shapes[s][0], shapes[s][1], MIMO_DT_BF16, 0.05f);
    mimo_linear f = rand_dense(shapes[s][0], shapes[s][1], MIMO_DT_F32, 0.05f);
    must(mimo_backend_upload_linear(g, &b), "upload");
    must(mimo_backend_upload_linear(g, &f), "upload");
    for (size_t t = 0; t < sizeof Ts / sizeof *Ts; t++) {
      check_linear(c, g, &b, Ts[t], Ts[t] <= 4 ? 1e-5 : 1e-4, "bf16");
      if (t % 2 == 0)
        check_linear(c, g, &f, Ts[t], 1e-5, "f32");
    }
    /* the router's prefill shape class, many rows: SGEMM (what SM80 and shapes off the wgmma kernel take), then
     * round 27's default on SM90a, three tf32 products on wgmma (SGEMM where the device runs no sm_90a code or
     * in % 32). fp32-grade: one tf32 product errs ~7e-4 (a host model of the sums), three with a fresh accumulator
     * per k32 5.6e-7 (each MMA adding with truncation) to 2.1e-6 (each product so), the CPU ~3e-7. */
    const int x3_was = mimo_cuda_f32_x3(0);
    check_linear(c, g, &f, 300, 1e-5, "f32");
    mimo_cuda_f32_x3(1);
    const int Tx[] = {64, 300, 1000};
    for (int i = 0; i < 3; i++)
      check_linear(c, g, &f, Tx[i], 4e-6, "f32 3xTF32");
    mimo_cuda_f32_x3(x3_was);
    free_lin(&b);
    free_lin(&f);
  }
  struct { int out, in, group, asym; } q[] = {{256, 512, 32, 0}, {96, 256, 16, 1}, {2048, 4096, 128, 0}, {4096, 2048, 128, 1}, {300, 1024, 32, 1}};
  for (size_t s = 0; s < sizeof q / sizeof *q; s++) {
    mimo_linear w = rand_int4(q[s].out, q[s].in, q[s].group, q[s].asym);
    must(mimo_backend_upload_linear(g, &w), "upload");
    char name[64];
    snprintf(name, sizeof name, "int4 %s g%d", q[s].asym ? "asym" : "sym", q[s].group);
    for (size_t t = 0; t < sizeof Ts / sizeof *Ts; t++)
      check_linear(c, g, &w, Ts[t], 1e-5, name);
    free_lin(&w);
  }
}

/* The fused qkv's de-chunking with the value scale: MiMo's full layer (4 chunks of 16 q heads x 192, 1 kv head
 * x 192 / 128) and a tiny one, several token counts. Exact (a copy and one multiply). */
static void check_qkv_split(mimo_backend *c, mimo_backend *g) {
  struct { int chunks, qc, kc, vc, hd, rot; float vs; } cf[] = {{4, 16 * 192, 192, 128, 192, 64, 0.707f},
                                                               {2, 64, 16, 8, 16, 8, 1.0f}};
  int Ts[] = {1, 5, 70};
  for (size_t k = 0; k < sizeof cf / sizeof *cf; k++)
    for (size_t a = 0; a < 2 * sizeof Ts / sizeof *Ts; a++) {
      const int T = Ts[a % 3], n = cf[k].chunks, with_rope = a >= 3;
      const size_t row = (size_t)n * (cf[k].qc + cf[k].kc + cf[k].vc), nq = (size_t)T * n * cf[k].qc,
                   nk = (size_t)T * n * cf[k].kc, nv = (size_t)T * n * cf[k].vc;
      float *x = xmalloc(T * row * 4), *hc = xmalloc((nq + nk + nv) * 4), *hg = xmalloc((nq + nk + nv) * 4);
      int *pos = xmalloc((size_t)T * sizeof(int));
      for (int t = 0; t < T; t++)
        pos[t] = (int)(rnd64() % 1000000);
      const mimo_rope_args rope = {n * cf[k].qc / cf[k].hd, n * cf[k].kc / cf[k].hd, cf[k].hd, cf[k].rot, pos, 1e6};
      fill(x, T * row, 2.0f);
      c->qkv_split(c, hc, hc + nq, hc + nq + nk, x, T, n, cf[k].qc, cf[k].kc, cf[k].vc, cf[k].vs,
                   with_rope ? &rope : NULL);
      float *dx = to_dev(g, x, T * row), *d = g->alloc(g, nq + nk + nv);
      mimo_cuda_poison(g, d, nq + nk + nv);
      g->qkv_split(g, d, d + nq, d + nq + nk, dx, T, n, cf[k].qc, cf[k].kc, cf[k].vc, cf[k].vs,
                   with_rope ? &rope : NULL);
      from_dev(g, hg, d, nq + nk + nv);
      char buf[96];
      snprintf(buf, sizeof buf, "qkv_split%s T=%d chunks %d q/k/v %d/%d/%d", with_rope ? "+rope" : "", T, n,
               cf[k].qc, cf[k].kc, cf[k].vc);
      report(buf, relerr(hg, hc, nq + nk + nv), with_rope ? 2e-6 : 0); /* sincosf on the GPU, sinf/cosf here */
      g->release(g, dx);
      g->release(g, d);
      free(x);
      free(hc);
      free(hg);
      free(pos);
    }
}

static void check_small(mimo_backend *c, mimo_backend *g) {
  int Ts[] = {1, 7, 33}, ns[] = {64, 4096};
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 2; b++) {
      int T = Ts[a], n = ns[b];
      size_t N = (size_t)T * n;
      float *x = xmalloc(N * 4), *w = xmalloc(n * 4), *oc = xmalloc(N * 4), *og = xmalloc(N * 4);
      fill(x, N, 3.0f);
      fill(w, n, 1.0f);
      mimo_vec v = {n, MIMO_DT_F32, w, NULL};
      c->rmsnorm(c, oc, x, &v, T, n, 1e-5f);
      must(mimo_backend_upload_vec(g, &v), "upload");
      float *dx = to_dev(g, x, N), *dout = g->alloc(g, N), *dy = to_dev(g, w, n);
      mimo_cuda_poison(g, dout, N);
      g->rmsnorm(g, dout, dx, &v, T, n, 1e-5f);
      from_dev(g, og, dout, N);
      char buf[96];
      snprintf(buf, sizeof buf, "rmsnorm T=%d n=%d", T, n);
      report(buf, relerr(og, oc, N), 1e-5);
      /* swiglu, add, scale */
      float *u = xmalloc(N * 4);
      fill(u, N, 2.0f);
      float *du = to_dev(g, u, N);
      c->swiglu(c, oc, x, u, (long)N);
      mimo_cuda_poison(g, dout, N);
      g->swiglu(g, dout, dx, du, (long)N);
      from_dev(g, og, dout, N);
      snprintf(buf, sizeof buf, "swiglu n=%zu", N);
      report(buf, relerr(og, oc, N), 1e-6);
      memcpy(oc, x, N * 4);
      c->add(c, oc, u, (long)N);
      c->scale(c, oc, (long)N, 0.707f);
      g->add(g, dx, du, (long)N);
      g->scale(g, dx, (long)N, 0.707f);
      from_dev(g, og, dx, N);
      snprintf(buf, sizeof buf, "add+scale n=%zu", N);
      report(buf, relerr(og, oc, N), 1e-7);
      /* copy2d: columns [n/4, n/2) of each row to a narrower matrix */
      int cols = n / 4;
      c->copy2d(c, oc, cols, u + n / 4, n, T, cols);
      mimo_cuda_poison(g, dout, N);
      g->copy2d(g, dout, cols, du + n / 4, n, T, cols);
      from_dev(g, og, dout, (size_t)T * cols);
      snprintf(buf, sizeof buf, "copy2d %dx%d", T, cols);
      report(buf, relerr(og, oc, (size_t)T * cols), 0);
      g->release(g, dx);
      g->release(g, dout);
      g->release(g, dy);
      g->release(g, du);
      free(x);
      free(w);
      free(oc);
      free(og);
      free(u);
    }
  /* rope on q-like rows (64 heads x 192, first 64 dims rotated) at large positions */
  for (int th = 0; th < 2; th++) {
    int T = 9, H = 64, D = 192, stride = H * D;
    size_t N = (size_t)T * stride;
    float *x = xmalloc(N * 4), *og = xmalloc(N * 4);
    int pos[9];
    for (int t = 0; t < T; t++)
      pos[t] = t * 4099 + (th ? 70000 : 0);
    fill(x, N, 1.0f);
    float *dx = to_dev(g, x, N);
    double theta = th ? 1e7 : 1e4;
    c->rope(c, x, T, H, D, stride, 64, pos, theta);
    g->rope(g, dx, T, H, D, stride, 64, pos, theta);
    from_dev(g, og, dx, N);
    char buf[96];
    snprintf(buf, sizeof buf, "rope theta=%.0e pos<=%d", theta, pos[T - 1]);
    report(buf, relerr(og, x, N), 1e-5);
    g->release(g, dx);
    free(x);
    free(og);
  }
  /* embed from a bf16 table */
  {
    mimo_linear tab = rand_dense(1000, 512, MIMO_DT_BF16, 1.0f);
    must(mimo_backend_upload_linear(g, &tab), "upload");
    int ids[5] = {0, 999, 17, 17, 500};
    float *oc = xmalloc(5 * 512 * 4), *og = xmalloc(5 * 512 * 4);
    c->embed(c, oc, &tab, ids, 5);
    float *d = g->alloc(g, 5 * 512);
    mimo_cuda_poison(g, d, 5 * 512);
    g->embed(g, d, &tab, ids, 5);
    from_dev(g, og, d, 5 * 512);
    report("embed bf16 5 rows", relerr(og, oc, 5 * 512), 0);
    g->release(g, d);
    free(oc);
    free(og);
    free_lin(&tab);
  }
}

/* Attention over several steps (the cache fills, a ring wraps), both backends. */
static void check_attention(mimo_backend *c, mimo_backend *g) {
  struct { int nh, nkv, D, V, window, sink; int steps[4]; } cf[] = {
      {8, 2, 192, 128, 0, 0, {5, 1, 40, 1}}, {8, 4, 192, 128, 16, 1, {7, 1, 30, 1}},
      {64, 4, 192, 128, 0, 0, {100, 1, 1, 3}}, {64, 8, 192, 128, 128, 1, {150, 1, 200, 1}}};
  for (size_t k = 0; k < sizeof cf / sizeof *cf; k++) {
    int nh = cf[k].nh, nkv = cf[k].nkv, D = cf[k].D, V = cf[k].V, W = cf[k].window, total = 0;
    for (int s = 0; s < 4; s++)
      total += cf[k].steps[s];
    kv_pair kp;
    kv_pair_init(&kp, g, W ? W : total, W > 0, nkv, D, V, 0);
    kv_pair_fill(&kp, g);
    float sinkv[64];
    fill(sinkv, nh, 2.0f);
    mimo_vec sv = {nh, MIMO_DT_F32, sinkv, NULL};
    must(mimo_backend_upload_vec(g, &sv), "upload");
    for (int s = 0; s < 4; s++) {
      int T = cf[k].steps[s];
      size_t nq = (size_t)T * nh * D, nk = (size_t)T * nkv * D, nv = (size_t)T * nkv * V, no = (size_t)T * nh * V;
      float *q = xmalloc(nq * 4), *kk = xmalloc(nk * 4), *v = xmalloc(nv * 4), *oc = xmalloc(no * 4),
            *og = xmalloc(no * 4);
      fill(q, nq, 1.0f);
      fill(kk, nk, 1.0f);
      fill(v, nv, 1.0f);
      float *dq = to_dev(g, q, nq), *dk = to_dev(g, kk, nk), *dv = to_dev(g, v, nv), *dout = g->alloc(g, no);
      mimo_cuda_poison(g, dout, no);
      mimo_attn_args ac = {.q = q, .k = kk, .v = v, .out = oc, .T = T, .n_heads = nh, .n_kv = nkv, .head_dim = D,
                           .v_head_dim = V, .window = W, .scale = 1.0f / sqrtf((float)D),
                           .sink = cf[k].sink ? &sv : NULL, .kv = &kp.c};
      mimo_attn_args ag = ac;
      ag.q = dq;
      ag.k = dk;
      ag.v = dv;
      ag.out = dout;
      ag.kv = &kp.g;
      int len0 = kp.c.len;
      c->attention(c, &ac);
      g->attention(g, &ag);
      from_dev(g, og, dout, no);
      char buf[128];
      snprintf(buf, sizeof buf, "attention h%d/kv%d %d/%d win %d sink %d past %d T %d", nh, nkv, D, V, W, cf[k].sink,
               len0, T);
      /* Head dims the tensor-core kernels take (192/128, 128/128, 64/64) run reduced-precision
       * operands (attn_check.c checks them in depth); other dims take the fp32 scalar kernel. */
      const int fast = (D == 192 && V == 128) || (D == V && (D == 64 || D == 128));
      report(buf, relerr(og, oc, no), fast ? 1e-2 : 1e-5);
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
    report("attention cache after the appends", kv_pair_equal(&kp, g) ? 0.0 : 1.0, 0.0);
    kv_pair_free(&kp, g);
  }
}

int mimo_cuda_moe_tc_variant(int up, int dn, char *label, int n);
int mimo_cuda_int4_tiled_off(int on);
/* One MoE call on both backends with fresh inputs: outputs compared (relative error <= tol) when the ids agree.
 * e0, nl: expert parallel (this rank holds experts [e0, e0 + nl)); nl = 0: all. */
static void moe_case(mimo_backend *c, mimo_backend *g, mimo_linear *router, mimo_vec *bv, mimo_linear *ex, int E, int K,
                     int H, int I, int T, const char *name, double tol, int e0, int nl) {
  float *x = xmalloc((size_t)T * H * 4), *oc = xmalloc((size_t)T * H * 4), *og = xmalloc((size_t)T * H * 4);
  int *idc = xmalloc((size_t)T * K * 4), *idg = xmalloc((size_t)T * K * 4);
  fill(x, (size_t)T * H, 1.0f);
  mimo_moe_args a = {.x = x, .out = oc, .T = T, .hidden = H, .inter = I, .n_experts = E, .top_k = K,
                     .router = router, .bias = bv, .experts = ex + (size_t)e0 * 3, .norm_topk = true,
                     .scaling = 1.0f, .expert0 = e0, .n_local = nl, .ids_out = idc};
  c->moe(c, &a);
  float *dx = to_dev(g, x, (size_t)T * H), *dout = g->alloc(g, (size_t)T * H);
  mimo_cuda_poison(g, dout, (size_t)T * H);
  a.x = dx;
  a.out = dout;
  a.ids_out = idg;
  g->moe(g, &a);
  from_dev(g, og, dout, (size_t)T * H);
  int same = memcmp(idc, idg, (size_t)T * K * 4) == 0;
  char buf[256];
  snprintf(buf, sizeof buf, "%s (ids %s)", name, same ? "equal" : "DIFFER");
  report(buf, same ? relerr(og, oc, (size_t)T * H) : INFINITY, tol);
  g->release(g, dx);
  g->release(g, dout);
  free(x);
  free(oc);
  free(og);
  free(idc);
  free(idg);
}

/* The GPU MoE of a into host out, its output poisoned first. */
static void moe_to_host(mimo_backend *g, mimo_moe_args *a, float *out) {
  mimo_cuda_poison(g, a->out, (size_t)a->T * a->hidden);
  g->moe(g, a);
  from_dev(g, out, a->out, (size_t)a->T * a->hidden);
}
/* Two outputs that must be equal bit for bit, as report()'s error (tolerance 0): 0 equal, 1 + their relative
 * difference otherwise, infinite when the variant under test did not run. */
static double bitwise_err(bool ran, const float *x, const float *y, size_t n) {
  return !ran ? INFINITY : memcmp(x, y, n * sizeof *x) == 0 ? 0.0 : relerr(x, y, n) + 1.0;
}

/* Routed experts in pinned host memory (--cpu-offload-gb): the same kernels read the same bytes over the bus, so the
 * output is bitwise that of the experts in GPU memory, at the token counts of each path (per pair, grouped by
 * expert, the grouped GEMM). Fails as well when nothing went to host memory. */
static void moe_offload_case(mimo_backend *g, mimo_linear *router, mimo_vec *bv, const mimo_linear *ex, int E, int K,
                             int H, int I, const char *what) {
  mimo_linear *hx = xmalloc((size_t)E * 3 * sizeof *hx);
  const size_t before = mimo_cuda_offloaded_bytes(g);
  mimo_cuda_set_cpu_offload(g, 1 << 20); /* GiB: every one of them */
  for (int e = 0; e < 3 * E; e++) {
    hx[e] = ex[e];
    hx[e].dev = NULL;
    must(mimo_backend_upload_linear_cold(g, &hx[e]), "upload to host memory");
  }
  mimo_cuda_set_cpu_offload(g, 0);
  const bool moved = mimo_cuda_offloaded_bytes(g) > before;
  const int Ts[] = {1, 8, 33, 130};
  for (int i = 0; i < 4; i++) {
    const int T = Ts[i];
    if (T >= 33 && (long)H * I > 1024 * 512)
      continue;
    float *x = xmalloc((size_t)T * H * 4), *od = xmalloc((size_t)T * H * 4), *oh = xmalloc((size_t)T * H * 4);
    fill(x, (size_t)T * H, 1.0f);
    float *dx = to_dev(g, x, (size_t)T * H), *dout = g->alloc(g, (size_t)T * H);
    for (int h = 0; h < 2; h++) {
      mimo_moe_args a = {.x = dx, .out = dout, .T = T, .hidden = H, .inter = I, .n_experts = E, .top_k = K,
                         .router = router, .bias = bv, .experts = h ? hx : (mimo_linear *)ex, .norm_topk = true,
                         .scaling = 1.0f};
      moe_to_host(g, &a, h ? oh : od);
    }
    char name[192];
    snprintf(name, sizeof name, "%s T=%d, experts in host memory = in GPU memory, bitwise%s", what, T,
             moved ? "" : " (nothing went to host memory)");
    report(name, bitwise_err(moved, od, oh, (size_t)T * H), 0.0);
    g->release(g, dx);
    g->release(g, dout);
    free(x);
    free(od);
    free(oh);
  }
  free(hx);
}

static void check_moe(mimo_backend *c, mimo_backend *g) {
  struct { int E, K, H, I, fmt, group, asym; } cf[] = {
      {16, 4, 256, 128, 0, 32, 0}, {16, 4, 256, 128, 0, 16, 1}, {32, 8, 512, 256, 1, 0, 0}, {64, 8, 1024, 512, 0, 128, 1},
      /* the int4 decode kernels: full MiMo width, and several load rounds with a partial last one */
      {16, 8, 4096, 2048, 0, 128, 0}, {8, 4, 5120, 1536, 0, 32, 1},
      /* MiMo's 256 experts: the fused router + routing reads every score of a token in one warp */
      {256, 8, 512, 256, 0, 128, 0}};
  int Ts[] = {1, 3, 8, 33}; /* 33: below the grouped GEMM for every format (from 40), small shapes only */
  for (size_t k = 0; k < sizeof cf / sizeof *cf; k++) {
    int E = cf[k].E, K = cf[k].K, H = cf[k].H, I = cf[k].I;
    mimo_linear router = rand_dense(E, H, MIMO_DT_F32, 0.1f);
    must(mimo_backend_upload_linear(g, &router), "upload");
    float *bias = xmalloc(E * 4);
    fill(bias, E, 0.1f);
    mimo_vec bv = {E, MIMO_DT_F32, bias, NULL};
    must(mimo_backend_upload_vec(g, &bv), "upload");
    mimo_linear *ex = xmalloc((size_t)E * 3 * sizeof *ex);
    for (int e = 0; e < E; e++)
      for (int p = 0; p < 3; p++) {
        int out = p == 2 ? H : I, in = p == 2 ? I : H;
        ex[e * 3 + p] = cf[k].fmt ? rand_dense(out, in, MIMO_DT_BF16, 0.05f) : rand_int4(out, in, cf[k].group, cf[k].asym);
        must(mimo_backend_upload_linear(g, &ex[e * 3 + p]), "upload");
      }
    /* int4 with groups of 128: the tensor-core decode kernels, per token, then (fp32 = 1) the fp32 ones */
    const int tcg_old = mimo_cuda_moe_tcg_min_t(1 << 30);
    for (int ti = 0; ti < 8; ti++) {
      int T = Ts[ti % 4], fp32 = ti >= 4;
      if ((T == 33 && (long)H * I > 1024 * 512) || (fp32 && (cf[k].fmt || cf[k].group % 128)))
        continue;
      mimo_cuda_moe_decode_fp32(fp32);
      mimo_cuda_moe_route_split(T == 3); /* router GEMV + routing as two launches; T <= 8 fuse them otherwise */
      char name[96];
      snprintf(name, sizeof name, "moe %s E%d top%d %dx%d g%d T=%d%s%s",
               cf[k].fmt ? "bf16" : cf[k].asym ? "int4-asym" : "int4-sym", E, K, H, I, cf[k].group, T,
               fp32 ? " fp32 kernels" : "", T == 3 ? " split routing" : "");
      moe_case(c, g, &router, &bv, ex, E, K, H, I, T, name, 1e-5, 0, 0);
    }
    /* every launch shape of the tensor-core decode kernels (mimo_cuda_moe_tc_variant), at 1 and 8 tokens; the loop
     * above ends on the fp32 kernels, so back to tensor cores first (until 2026-12-03 these ran the fp32 ones) */
    mimo_cuda_moe_decode_fp32(0);
    mimo_cuda_moe_route_split(0);
    const int nu = mimo_cuda_moe_tc_variant(-1, -1, NULL, 0), nd = mimo_cuda_moe_tc_variant(-2, -1, NULL, 0);
    for (int v = 1; !cf[k].fmt && cf[k].group % 128 == 0 && H * I <= 4096 * 2048 && v < nu + nd - 1; v++) {
      char label[200], name[320];
      mimo_cuda_moe_tc_variant(v < nu ? v : 0, v < nu ? 0 : v - nu + 1, label, sizeof label);
      for (int T = 1; T <= 8; T += 7) {
        snprintf(name, sizeof name, "moe int4 E%d top%d %dx%d g%d T=%d [%s]", E, K, H, I, cf[k].group, T, label);
        moe_case(c, g, &router, &bv, ex, E, K, H, I, T, name, 1e-5, 0, 0);
      }
    }
    mimo_cuda_moe_tc_variant(0, 0, NULL, 0);
    char what[96];
    snprintf(what, sizeof what, "moe %s E%d top%d %dx%d g%d", cf[k].fmt ? "bf16" : cf[k].asym ? "int4-asym" : "int4-sym",
             E, K, H, I, cf[k].group);
    moe_offload_case(g, &router, &bv, ex, E, K, H, I, what);
    /* the step's pairs grouped by expert (mimo_cuda_moe_tcg_min_t = 1): several token counts, every launch shape,
     * and expert parallel (this rank's half of the experts, either half) */
    mimo_cuda_moe_tcg_min_t(1);
    /* ... and not the grouped GEMM, which takes 130 tokens on SM90a (fp16 operands: moe-prefill check) */
    const int gg_old = mimo_cuda_moe_grouped_min_t(1 << 30);
    const int ngu = mimo_cuda_moe_tcg_variant(-1, -1, NULL, 0), ngd = mimo_cuda_moe_tcg_variant(-2, -1, NULL, 0);
    for (int v = 0; !cf[k].fmt && cf[k].group % 128 == 0 && H * I <= 4096 * 2048 && v < 6 + ngu + ngd - 2; v++) {
      const int Tg[] = {1, 2, 8, 33, 8, 130}, T = v < 6 ? Tg[v] : 8, ep = v == 4; /* 130: over 1024 pairs */
      if (T >= 33 && (long)H * I > 1024 * 512)
        continue;
      char label[200] = "default shapes", name[320];
      if (v >= 6) {
        const int w = v - 6 + 1;
        mimo_cuda_moe_tcg_variant(w < ngu ? w : 0, w < ngu ? 0 : w - ngu + 1, label, sizeof label);
      }
      for (int half = 0; half <= ep; half++) {
        snprintf(name, sizeof name, "moe int4 E%d top%d %dx%d g%d T=%d grouped by expert [%s]%s", E, K, H, I,
                 cf[k].group, T, label, !ep ? "" : half ? " experts of rank 1 of 2" : " experts of rank 0 of 2");
        moe_case(c, g, &router, &bv, ex, E, K, H, I, T, name, 1e-5, ep ? half * E / 2 : 0, ep ? E / 2 : 0);
      }
    }
    mimo_cuda_moe_tcg_variant(0, 0, NULL, 0);
    mimo_cuda_moe_tcg_min_t(1 << 30);
    mimo_cuda_moe_grouped_min_t(gg_old ? gg_old : -1);
    /* the same experts again in the checkpoint's row-major order (mimo_cuda_int4_tiled_off): decode on tensor
     * cores and with the fp32 kernels, and the grouped prefill (48 tokens: activations in bf16, so the bf16
     * paths' bound) */
    if (!cf[k].fmt && cf[k].group % 128 == 0 && H * I <= 4096 * 2048) {
      mimo_linear *er = xmalloc((size_t)E * 3 * sizeof *er);
      mimo_cuda_int4_tiled_off(1);
      for (int e = 0; e < 3 * E; e++) {
        er[e] = ex[e];
        er[e].dev = NULL;
        must(mimo_backend_upload_linear(g, &er[e]), "upload");
      }
      mimo_cuda_int4_tiled_off(0);
      const int Tr[] = {1, 8, 1, 48, 8};
      for (int i = 0; i < 5; i++) {
        char name[128];
        mimo_cuda_moe_decode_fp32(i == 2);
        mimo_cuda_moe_tcg_min_t(i == 4 ? 1 : 1 << 30);
        snprintf(name, sizeof name, "moe int4 E%d top%d %dx%d g%d T=%d row-major%s", E, K, H, I, cf[k].group, Tr[i],
                 i == 2 ? " fp32 kernels" : i == 4 ? " grouped by expert" : "");
        moe_case(c, g, &router, &bv, er, E, K, H, I, Tr[i], name, Tr[i] == 48 ? 1e-2 : 1e-5, 0, 0);
      }
      mimo_cuda_moe_tcg_min_t(1 << 30);
      free(er); /* shares the host arrays of ex; the device copies go with the backend */
    }
    mimo_cuda_moe_decode_fp32(0);
    mimo_cuda_moe_route_split(0);
    mimo_cuda_moe_tcg_min_t(tcg_old);
    for (int e = 0; e < 3 * E; e++)
      free_lin(&ex[e]);
    free(ex);
    free_lin(&router);
    free(bias);
  }
}

/* Router near-ties: top-k routing is discontinuous, so where the reference's k-th chosen expert led the best
 * one left out by less than this (sigmoid-score units), rounding of the order of the GPU's fp16 expert
 * operands (~1e-4 relative, moving router scores by ~1e-5) may pick another expert and change that token's
 * output by much more than rounding. Such positions are reported apart and not held to the limits. */
#define NEAR_TIE_MARGIN 1e-4

static int compare(const char *fa, const char *fb, int V, const char *fm) {
  FILE *a = fopen(fa, "rb"), *b = fopen(fb, "rb"), *m = fm ? fopen(fm, "rb") : NULL;
  if (!a || !b || (fm && !m)) {
    fprintf(stderr, "cannot open %s, %s%s%s\n", fa, fb, fm ? " or " : "", fm ? fm : "");
    return 2;
  }
  float *pa = xmalloc((size_t)V * 4), *pb = xmalloc((size_t)V * 4);
  int rows = 0, agree = 0, worst = -1, ties = 0, pos = -1, short_m = 0;
  double maxkl = 0, sumkl = 0, flip_margin = 0; /* largest reference logit gap at a greedy disagreement */
  double tie_kl = 0;                            /* largest KL at a near-tie position */
  while (fread(pa, 4, (size_t)V, a) == (size_t)V && fread(pb, 4, (size_t)V, b) == (size_t)V) {
    float margin = INFINITY;
    pos++;
    if (m && fread(&margin, 4, 1, m) != 1) {
      fprintf(stderr, "%s: fewer margins than logit rows\n", fm);
      short_m = 1;
      break;
    }
    double ma = -INFINITY, mb = -INFINITY;
    int aa = 0, ab = 0;
    for (int i = 0; i < V; i++) {
      if (pa[i] > ma) { ma = pa[i]; aa = i; }
      if (pb[i] > mb) { mb = pb[i]; ab = i; }
    }
    double za = 0, zb = 0;
    for (int i = 0; i < V; i++) {
      za += exp(pa[i] - ma);
      zb += exp(pb[i] - mb);
    }
    double kl = 0; /* KL(ref || other) */
    for (int i = 0; i < V; i++) {
      double la = pa[i] - ma - log(za), lb = pb[i] - mb - log(zb);
      kl += exp(la) * (la - lb);
    }
    if (!isfinite(kl))
      kl = INFINITY;
    if (margin < NEAR_TIE_MARGIN) {
      ties++;
      tie_kl = kl > tie_kl ? kl : tie_kl;
      continue;
    }
    if (kl > maxkl) {
      maxkl = kl;
      worst = pos;
    }
    sumkl += kl;
    agree += aa == ab;
    if (aa != ab && pa[aa] - pa[ab] > flip_margin)
      flip_margin = pa[aa] - pa[ab];
    rows++;
  }
  fclose(a);
  fclose(b);
  if (m)
    fclose(m);
  double ag = rows ? 100.0 * agree / rows : 0;
  int ok = !short_m && rows > 0 && maxkl <= 1e-3 && ag >= 99.0;
  printf("%-4s compare %s vs %s: %d positions, KL max %.2e mean %.2e, greedy agreement %.1f%%", ok ? "ok" : "FAIL", fb, fa,
         rows, maxkl, rows ? sumkl / rows : 0, ag);
  if (maxkl > 1e-4)
    printf(" (KL max at position %d)", worst);
  if (agree < rows) /* a flip between near-equal logits is rounding; a wide gap is a bug */
    printf(" (%d flips, reference top-1 ahead by <= %.2e)", rows - agree, flip_margin);
  if (ties)
    printf("; %d router near-tie position%s (margin < %.0e) apart, KL max there %.2e", ties, ties > 1 ? "s" : "",
           NEAR_TIE_MARGIN, tie_kl);
  printf("\n");
  free(pa);
  free(pb);
  return ok ? 0 : 1;
}

void cuda_vision_check(mimo_backend *c, mimo_backend *g, int *pass, int *fail); /* vision_check.c */

int main(int argc, char **argv) {
  if (argc >= 5 && strcmp(argv[1], "compare") == 0)
    return compare(argv[2], argv[3], atoi(argv[4]), argc >= 6 ? argv[5] : NULL);
  if (argc >= 2 && strcmp(argv[1], "bench") == 0)
    return cuda_bench_main(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "attn") == 0)
    return cuda_attn_main(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "allreduce") == 0)
    return cuda_allreduce_main(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "moe-prefill") == 0)
    return cuda_moe_prefill_main(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "sample") == 0)
    return cuda_sample_main(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "graphs") == 0)
    return cuda_graph_main(argc - 1, argv + 1);
  if (argc < 2 || strcmp(argv[1], "kernels") != 0) {
    fprintf(stderr, "usage: mimo_cuda_check kernels | compare REF.bin OTHER.bin VOCAB | bench | attn check|bench"
                    " | moe-prefill check|bench | sample check|bench | graphs check MODEL_DIR | allreduce\n");
    return 2;
  }
  if (mimo_cuda_device_count() == 0) {
    printf("no CUDA device: skipped\n");
    return 0;
  }
  mimo_backend *c, *g;
  must(mimo_backend_cpu_init(&c, 0), "cpu backend");
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(g));
  /* MIMO_CHECK_ONLY=moe or linear: those cases alone (a targeted device call) */
  const char *only = getenv("MIMO_CHECK_ONLY");
  const bool all = !only || (strcmp(only, "moe") != 0 && strcmp(only, "linear") != 0);
  if (all) {
    check_small(c, g);
    check_qkv_split(c, g);
  }
  if (all || !strcmp(only, "linear"))
    check_linears(c, g);
  if (all)
    check_attention(c, g);
  if (all || !strcmp(only, "moe"))
    check_moe(c, g);
  if (all)
    cuda_vision_check(c, g, &n_pass, &n_fail);
  must(mimo_cuda_sync(g), "final sync");
  printf("kernels: %d passed, %d failed\n", n_pass, n_fail);
  g->free(g);
  c->free(c);
  return n_fail ? 1 : 0;
}
