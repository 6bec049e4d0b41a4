/* The vision tower's CUDA ops (cuda_vision.cu) against the CPU backend's (cpu_vision.c) on random inputs, the output
 * poisoned before each GPU run: bias add, GELU, LayerNorm, 2-D RoPE, row gather, and the tower's attention (full and
 * windowed, several images in one call, GQA, both sink placements, head dims 16 and 64). Part of
 * `mimo_cuda_check kernels`. */
#include "cuda_common.h"

static int v_pass, v_fail;

static void vreport(const char *what, double err, double tol) {
  const bool ok = err <= tol;
  printf("%s %-58s rel err %.2e (tol %.0e)\n", ok ? "ok  " : "FAIL", what, err, tol);
  ok ? v_pass++ : v_fail++;
}

static void check_elementwise(mimo_backend *c, mimo_backend *g) {
  const int Ts[] = {1, 7, 33}, ns[] = {32, 1280};
  char buf[96];
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 2; b++) {
      const int T = Ts[a], n = ns[b];
      const size_t N = (size_t)T * n;
      float *x = xmalloc(N * 4), *w = xmalloc((size_t)n * 4), *oc = xmalloc(N * 4), *og = xmalloc(N * 4);
      fill(x, N, 3.0f);
      fill(w, (size_t)n, 1.0f);
      for (size_t i = 0; i < N; i++) /* an offset, so the mean matters */
        x[i] += 0.5f;
      mimo_vec v = {n, MIMO_DT_F32, w, NULL};
      must(mimo_backend_upload_vec(g, &v), "upload");
      float *dx = to_dev(g, x, N), *dout = g->alloc(g, N);
      c->layernorm(c, oc, x, &v, T, n, 1e-6f);
      mimo_cuda_poison(g, dout, N);
      g->layernorm(g, dout, dx, &v, T, n, 1e-6f);
      from_dev(g, og, dout, N);
      snprintf(buf, sizeof buf, "vision layernorm T=%d n=%d", T, n);
      vreport(buf, relerr(og, oc, N), 1e-5);
      memcpy(oc, x, N * 4);
      c->bias_add(c, oc, &v, T, n);
      g->bias_add(g, dx, &v, T, n);
      from_dev(g, og, dx, N);
      snprintf(buf, sizeof buf, "vision bias_add T=%d n=%d", T, n);
      vreport(buf, relerr(og, oc, N), 1e-7);
      c->gelu(c, oc, (long)N);
      g->gelu(g, dx, (long)N);
      from_dev(g, og, dx, N);
      snprintf(buf, sizeof buf, "vision gelu n=%zu", N);
      vreport(buf, relerr(og, oc, N), 1e-6);
      g->release(g, dx);
      g->release(g, dout);
      free(x);
      free(w);
      free(oc);
      free(og);
    }
}

static void check_rope_gather(mimo_backend *c, mimo_backend *g) {
  const int cases[2][2] = {{4, 16}, {32, 64}}; /* heads, head dim */
  char buf[96];
  for (int k = 0; k < 2; k++) {
    const int T = 37, H = cases[k][0], D = cases[k][1], stride = H * D + 8; /* rows wider than the heads */
    const size_t N = (size_t)T * stride;
    float *x = xmalloc(N * 4), *og = xmalloc(N * 4);
    int hp[37], wp[37];
    for (int t = 0; t < T; t++) {
      hp[t] = (int)(rnd64() % 64);
      wp[t] = (int)(rnd64() % 64);
    }
    fill(x, N, 1.0f);
    float *dx = to_dev(g, x, N);
    c->rope_2d(c, x, T, H, D, stride, hp, wp, 10000.0);
    g->rope_2d(g, dx, T, H, D, stride, hp, wp, 10000.0);
    from_dev(g, og, dx, N);
    snprintf(buf, sizeof buf, "vision rope_2d T=%d heads=%d dim=%d", T, H, D);
    vreport(buf, relerr(og, x, N), 1e-5);
    /* gather: a permutation of the rows, one repeated */
    int idx[37];
    for (int t = 0; t < T; t++)
      idx[t] = (t * 11 + 3) % T;
    idx[5] = idx[6];
    float *oc = xmalloc(N * 4), *dd = g->alloc(g, N);
    c->gather_rows(c, oc, x, idx, T, stride);
    must(mimo_cuda_upload(g, dx, x, N), "upload");
    mimo_cuda_poison(g, dd, N);
    g->gather_rows(g, dd, dx, idx, T, stride);
    from_dev(g, og, dd, N);
    snprintf(buf, sizeof buf, "vision gather_rows %dx%d", T, stride);
    vreport(buf, relerr(og, oc, N), 0);
    g->release(g, dx);
    g->release(g, dd);
    free(x);
    free(og);
    free(oc);
  }
}

static void attn_case(mimo_backend *c, mimo_backend *g, int H, int KV, int D, const int *starts, int n_seq, int window,
                      int sink_mode) {
  const int T = starts[n_seq];
  const size_t nq = (size_t)T * H * D, nk = (size_t)T * KV * D;
  float *q = xmalloc(nq * 4), *k = xmalloc(nk * 4), *v = xmalloc(nk * 4), *oc = xmalloc(nq * 4),
        *og = xmalloc(nq * 4), *s = xmalloc((size_t)H * 4);
  fill(q, nq, 1.0f);
  fill(k, nk, 1.0f);
  fill(v, nk, 1.0f);
  fill(s, (size_t)H, 2.0f);
  mimo_vec sink = {H, MIMO_DT_F32, s, NULL};
  must(mimo_backend_upload_vec(g, &sink), "upload");
  mimo_vit_attn_args a = {.q = q, .k = k, .v = v, .out = oc, .T = T, .n_heads = H, .n_kv = KV, .head_dim = D,
                          .n_seq = n_seq, .seq_start = starts, .window = window, .scale = 1.0f / sqrtf((float)D),
                          .sink = sink_mode ? &sink : NULL, .sink_key0 = sink_mode == 1};
  c->vit_attention(c, &a);
  float *dq = to_dev(g, q, nq), *dk = to_dev(g, k, nk), *dv = to_dev(g, v, nk), *dout = g->alloc(g, nq);
  mimo_cuda_poison(g, dout, nq);
  a.q = dq, a.k = dk, a.v = dv, a.out = dout;
  g->vit_attention(g, &a);
  from_dev(g, og, dout, nq);
  char buf[128];
  snprintf(buf, sizeof buf, "vision attention T=%d (%d images) %dq/%dkv x%d window %d sink %s", T, n_seq, H, KV, D,
           window, sink_mode == 0 ? "none" : sink_mode == 1 ? "key0" : "denom");
  vreport(buf, relerr(og, oc, nq), 1e-5);
  g->release(g, dq);
  g->release(g, dk);
  g->release(g, dv);
  g->release(g, dout);
  free(q);
  free(k);
  free(v);
  free(oc);
  free(og);
  free(s);
}

static void check_attention_vit(mimo_backend *c, mimo_backend *g) {
  const int one[2] = {0, 196}, two[3] = {0, 140, 300}, three[4] = {0, 16, 80, 81 + 79};
  for (int sm = 0; sm < 3; sm++) {
    attn_case(c, g, 32, 8, 64, one, 1, 0, sm);
    attn_case(c, g, 32, 8, 64, two, 2, 64, sm);
    attn_case(c, g, 4, 2, 16, three, 3, 8, sm);
  }
  attn_case(c, g, 4, 2, 16, three, 3, 0, 1);
}

void cuda_vision_check(mimo_backend *c, mimo_backend *g, int *pass, int *fail) {
  v_pass = v_fail = 0;
  check_elementwise(c, g);
  check_rope_gather(c, g);
  check_attention_vit(c, g);
  *pass += v_pass;
  *fail += v_fail;
}
