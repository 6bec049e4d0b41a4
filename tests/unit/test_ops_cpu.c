/* Each CPU backend op against a straightforward double-precision C version of
 * spec §2, on fresh random inputs at several sizes. Relative error is
 * max|out − ref| / max|ref|; fp32 arithmetic must stay far under 1e-5. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "core/num.h"
#include "model/mimo_v2_shard.h"

static mimo_backend *be;
static mimo_rng rng;

static double rnd(void) { return mimo_rng_normal(&rng); }

static void fill_f32(float *x, size_t n, double s) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(rnd() * s);
}

static double rel_err(const float *out, const double *ref, size_t n) {
  double m = 0, r = 0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(out[i]))
      return INFINITY;
    double d = fabs(out[i] - ref[i]);
    m = d > m ? d : m;
    r = fabs(ref[i]) > r ? fabs(ref[i]) : r;
  }
  return r > 0 ? m / r : m;
}

/* Poisoned output: every element must be written. */
static float *poisoned(size_t n) {
  float *p = malloc(n * sizeof *p);
  for (size_t i = 0; i < n; i++)
    p[i] = NAN;
  return p;
}

/* ---- linear: dense f32/bf16/f16 and int4 sym/asym ---- */

typedef struct {
  mimo_linear l;
  void *w, *scale;
  uint32_t *packed, *zero;
  double *dense; /* reference weights [out][in] */
} lin_case;

static void make_linear(lin_case *c, int out, int in, int fmt /* 0 f32, 1 bf16, 2 f16, 3 int4 sym, 4 int4 asym */,
                        int group) {
  memset(c, 0, sizeof *c);
  c->dense = malloc((size_t)out * in * sizeof(double));
  c->l.out = out;
  c->l.in = in;
  if (fmt < 3) {
    size_t es = fmt == 0 ? 4 : 2;
    c->w = malloc((size_t)out * in * es);
    for (size_t i = 0; i < (size_t)out * in; i++) {
      float v = (float)(rnd() / sqrt(in));
      if (fmt == 0) {
        ((float *)c->w)[i] = v;
        c->dense[i] = v;
      } else if (fmt == 1) {
        ((uint16_t *)c->w)[i] = mimo_f32_to_bf16(v);
        c->dense[i] = mimo_bf16_to_f32(mimo_f32_to_bf16(v));
      } else {
        ((uint16_t *)c->w)[i] = mimo_f32_to_f16(v);
        c->dense[i] = mimo_f16_to_f32(mimo_f32_to_f16(v));
      }
    }
    c->l.fmt = MIMO_WF_DENSE;
    c->l.dt = fmt == 0 ? MIMO_DT_F32 : fmt == 1 ? MIMO_DT_BF16 : MIMO_DT_F16;
    c->l.w = c->w;
    return;
  }
  int groups = in / group;
  c->packed = calloc((size_t)out * in / 8, 4);
  c->scale = malloc((size_t)out * groups * 2);
  if (fmt == 4)
    c->zero = calloc((size_t)(out + 7) / 8 * groups, 4);
  for (int r = 0; r < out; r++)
    for (int g = 0; g < groups; g++) {
      uint16_t sb = mimo_f32_to_bf16((float)(0.01 + 0.05 * mimo_rng_uniform(&rng)));
      ((uint16_t *)c->scale)[(size_t)r * groups + g] = sb;
      int zp = 0;
      if (fmt == 4) {
        zp = (int)(mimo_rng_next(&rng) % 16) - 8;
        c->zero[(size_t)(r / 8) * groups + g] |= (uint32_t)(zp + 8) << (4 * (r % 8));
      }
      for (int k = g * group; k < (g + 1) * group; k++) {
        int q = (int)(mimo_rng_next(&rng) % 16) - 8;
        c->packed[(size_t)r * (in / 8) + k / 8] |= (uint32_t)(q + 8) << (4 * (k % 8));
        c->dense[(size_t)r * in + k] = (double)(q - zp) * mimo_bf16_to_f32(sb);
      }
    }
  c->l.fmt = MIMO_WF_INT4;
  c->l.packed = c->packed;
  c->l.scale = c->scale;
  c->l.scale_dt = MIMO_DT_BF16;
  c->l.zero = c->zero;
  c->l.group = group;
}

static void free_linear(lin_case *c) {
  free(c->w);
  free(c->scale);
  free(c->packed);
  free(c->zero);
  free(c->dense);
}

static void test_linear(void **state) {
  (void)state;
  static const int shapes[][2] = {{16, 64}, {37, 256}, {64, 1024}, {5, 2048}};
  static const int Ts[] = {1, 2, 4, 5, 33, 70};
  for (int fmt = 0; fmt < 5; fmt++)
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++)
      for (size_t ti = 0; ti < sizeof Ts / sizeof *Ts; ti++) {
        int out = shapes[si][0], in = shapes[si][1], T = Ts[ti];
        int group = (si % 2) ? 32 : (in >= 128 ? 128 : 16);
        lin_case c;
        make_linear(&c, out, in, fmt, group);
        float *x = malloc((size_t)T * in * sizeof *x), *y = poisoned((size_t)T * out);
        double *ref = malloc((size_t)T * out * sizeof *ref);
        fill_f32(x, (size_t)T * in, 1.0);
        for (int t = 0; t < T; t++)
          for (int o = 0; o < out; o++) {
            double s = 0;
            for (int k = 0; k < in; k++)
              s += (double)x[(size_t)t * in + k] * c.dense[(size_t)o * in + k];
            ref[(size_t)t * out + o] = s;
          }
        be->linear(be, y, x, T, &c.l);
        double e = rel_err(y, ref, (size_t)T * out);
        if (e > 2e-6)
          fail_msg("linear fmt %d [%d,%d] group %d T %d: rel err %g", fmt, out, in, group, T, e);
        free(x);
        free(y);
        free(ref);
        free_linear(&c);
      }
}

/* ---- rmsnorm, swiglu, rope ---- */

static void test_rmsnorm_swiglu(void **state) {
  (void)state;
  int T = 7, n = 300;
  float *x = malloc((size_t)T * n * 4), *y = poisoned((size_t)T * n), w32[300];
  double *ref = malloc((size_t)T * n * sizeof *ref);
  fill_f32(x, (size_t)T * n, 3.0);
  fill_f32(w32, (size_t)n, 1.0);
  mimo_vec w = {.n = n, .dt = MIMO_DT_F32, .p = w32};
  be->rmsnorm(be, y, x, &w, T, n, 1e-5f);
  for (int t = 0; t < T; t++) {
    double ss = 0;
    for (int i = 0; i < n; i++)
      ss += (double)x[t * n + i] * x[t * n + i];
    for (int i = 0; i < n; i++)
      ref[t * n + i] = w32[i] * x[t * n + i] / sqrt(ss / n + 1e-5);
  }
  assert_true(rel_err(y, ref, (size_t)T * n) < 1e-6);
  float *g = malloc((size_t)T * n * 4);
  fill_f32(g, (size_t)T * n, 4.0);
  be->swiglu(be, y, g, x, (long)T * n);
  for (int i = 0; i < T * n; i++)
    ref[i] = g[i] / (1 + exp(-(double)g[i])) * x[i];
  assert_true(rel_err(y, ref, (size_t)T * n) < 1e-6);
  free(x);
  free(y);
  free(g);
  free(ref);
}

static void test_rope(void **state) {
  (void)state;
  int T = 5, H = 3, D = 24, rot = 10, pos[5] = {0, 1, 17, 1000, 65535};
  double theta = 10000.0;
  float *x = malloc((size_t)T * H * D * 4), *orig = malloc((size_t)T * H * D * 4);
  double *ref = malloc((size_t)T * H * D * sizeof *ref);
  fill_f32(x, (size_t)T * H * D, 1.0);
  memcpy(orig, x, (size_t)T * H * D * 4);
  be->rope(be, x, T, H, D, H * D, rot, pos, theta);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < H; h++) {
      const float *v = orig + (t * H + h) * D;
      double *r = ref + (t * H + h) * D;
      for (int d = 0; d < D; d++)
        r[d] = v[d];
      for (int d = 0; d < rot / 2; d++) { /* NeoX rotate-half on the first rot dims */
        /* angles as the reference forms them: fp32 inv_freq times fp32 position */
        double ang = (double)((float)pos[t] * (float)(1.0 / pow(theta, 2.0 * d / rot)));
        r[d] = v[d] * cos(ang) - v[d + rot / 2] * sin(ang);
        r[d + rot / 2] = v[d + rot / 2] * cos(ang) + v[d] * sin(ang);
      }
    }
  double e = rel_err(x, ref, (size_t)T * H * D);
  if (e > 1e-5)
    fail_msg("rope rel err %g", e);
  free(x);
  free(orig);
  free(ref);
}

/* ---- attention over a cache fed in chunks ---- */

static void attention_ref(const float *q, const float *k, const float *v, int T, int nh, int nkv, int D, int V,
                          int window, const float *sink, double *out) {
  for (int i = 0; i < T; i++)
    for (int h = 0; h < nh; h++) {
      int g = h / (nh / nkv), lo = window ? (i - window + 1 > 0 ? i - window + 1 : 0) : 0;
      double m = sink ? sink[h] : -INFINITY, *s = malloc((size_t)(i + 1) * sizeof *s);
      for (int j = lo; j <= i; j++) {
        double d = 0;
        for (int c = 0; c < D; c++)
          d += (double)q[(i * nh + h) * D + c] * k[(j * nkv + g) * D + c];
        s[j] = d / sqrt(D);
        m = s[j] > m ? s[j] : m;
      }
      double den = sink ? exp(sink[h] - m) : 0;
      for (int j = lo; j <= i; j++)
        den += exp(s[j] - m);
      for (int c = 0; c < V; c++) {
        double acc = 0;
        for (int j = lo; j <= i; j++)
          acc += exp(s[j] - m) * v[(j * nkv + g) * V + c];
        out[(i * nh + h) * V + c] = acc / den;
      }
      free(s);
    }
}

/* Full (paged blocks) and sliding (ring) caches, float32 and bf16, the prompt cut into steps several ways, against
 * the double reference (on keys and values rounded to bf16 for a bf16 cache: attention reads them so). */
static void test_attention(void **state) {
  (void)state;
  int T = 150, nh = 8, nkv = 2, D = 32, V = 16; /* full layers: three blocks of MIMO_KV_BLOCK positions */
  int chunks[] = {150, 1, 7, 13, 64};
  for (int variant = 0; variant < 6; variant++) { /* full; window 8; window 8 + sink; each float32, then bf16 */
    const int window = variant % 3 ? 8 : 0, bf = variant >= 3, es = bf ? 2 : 4;
    float *q = malloc((size_t)T * nh * D * 4), *k = malloc((size_t)T * nkv * D * 4), *v = malloc((size_t)T * nkv * V * 4),
          sink[8];
    fill_f32(q, (size_t)T * nh * D, 1.0);
    fill_f32(k, (size_t)T * nkv * D, 1.0);
    fill_f32(v, (size_t)T * nkv * V, 1.0);
    fill_f32(sink, 8, 2.0);
    float *kr = malloc((size_t)T * nkv * D * 4), *vr = malloc((size_t)T * nkv * V * 4);
    for (size_t i = 0; i < (size_t)T * nkv * D; i++)
      kr[i] = bf ? mimo_bf16_to_f32(mimo_f32_to_bf16(k[i])) : k[i];
    for (size_t i = 0; i < (size_t)T * nkv * V; i++)
      vr[i] = bf ? mimo_bf16_to_f32(mimo_f32_to_bf16(v[i])) : v[i];
    double *ref = malloc((size_t)T * nh * V * sizeof *ref);
    attention_ref(q, kr, vr, T, nh, nkv, D, V, window, variant % 3 == 2 ? sink : NULL, ref);
    mimo_vec sv = {.n = nh, .dt = MIMO_DT_F32, .p = sink};
    for (size_t ci = 0; ci < sizeof chunks / sizeof *chunks; ci++) {
      mimo_kv_view kv = {.cap = window ? window : T, .ring = window > 0, .bf16 = bf};
      /* full: blocks as kv_cache.c lays them out (keys then values in each), the table visiting them backwards */
      const int nb = (T + MIMO_KV_BLOCK - 1) / MIMO_KV_BLOCK;
      const size_t bf_bytes = (size_t)MIMO_KV_BLOCK * nkv * (D + V) * es;
      char *store = NULL;
      void *table[8];
      if (window) {
        kv.k = malloc((size_t)kv.cap * nkv * D * es);
        kv.v = malloc((size_t)kv.cap * nkv * V * es);
      } else {
        store = malloc(nb * bf_bytes);
        for (int b = 0; b < nb; b++)
          table[b] = store + (size_t)(nb - 1 - b) * bf_bytes;
        kv.blocks = table;
        kv.k_off = 0;
        kv.v_off = MIMO_KV_BLOCK * nkv * D;
        kv.cap = nb * MIMO_KV_BLOCK;
      }
      float *out = poisoned((size_t)T * nh * V);
      for (int s = 0; s < T; s += chunks[ci]) {
        int n = T - s < chunks[ci] ? T - s : chunks[ci];
        mimo_attn_args a = {.q = q + (size_t)s * nh * D, .k = k + (size_t)s * nkv * D, .v = v + (size_t)s * nkv * V,
                            .out = out + (size_t)s * nh * V, .T = n, .n_heads = nh, .n_kv = nkv, .head_dim = D,
                            .v_head_dim = V, .window = window, .scale = (float)(1 / sqrt(D)),
                            .sink = variant % 3 == 2 ? &sv : NULL, .kv = &kv};
        be->attention(be, &a);
      }
      double e = rel_err(out, ref, (size_t)T * nh * V);
      if (e > 1e-5)
        fail_msg("attention variant %d chunk %d: rel err %g", variant, chunks[ci], e);
      assert_int_equal(kv.len, T);
      free(out);
      free(kv.k);
      free(kv.v);
      free(store);
    }
    free(q);
    free(k);
    free(v);
    free(kr);
    free(vr);
    free(ref);
  }
}

/* ---- MoE: sigmoid routing with correction bias, renormalised top-k ---- */

static void test_moe(void **state) {
  (void)state;
  int T = 9, H = 64, I = 32, E = 16, K = 4;
  lin_case router, ex[48];
  make_linear(&router, E, H, 0, 0);
  mimo_linear exl[48];
  for (int i = 0; i < 3 * E; i++) {
    int p = i % 3;
    make_linear(&ex[i], p == 2 ? H : I, p == 2 ? I : H, i < 24 ? 3 : 4, 16);
    exl[i] = ex[i].l;
  }
  float bias32[16], *x = malloc((size_t)T * H * 4), *out = poisoned((size_t)T * H);
  fill_f32(bias32, E, 0.3);
  fill_f32(x, (size_t)T * H, 1.0);
  mimo_vec bias = {.n = E, .dt = MIMO_DT_F32, .p = bias32};
  int ids[9 * 4];
  float margin[9];
  for (int t = 0; t < T; t++)
    margin[t] = INFINITY; /* the op lowers what it is given */
  mimo_moe_args a = {.x = x, .out = out, .T = T, .hidden = H, .inter = I, .n_experts = E, .top_k = K,
                     .router = &router.l, .bias = &bias, .experts = exl, .norm_topk = true, .scaling = 1.5f,
                     .ids_out = ids, .margin_out = margin};
  be->moe(be, &a);
  double *ref = calloc((size_t)T * H, sizeof *ref);
  for (int t = 0; t < T; t++) {
    double s[16], c[16];
    for (int e = 0; e < E; e++) {
      double z = 0;
      for (int k = 0; k < H; k++)
        z += (double)x[t * H + k] * router.dense[e * H + k];
      s[e] = 1 / (1 + exp(-z));
      c[e] = s[e] + bias32[e];
    }
    int sel[4];
    double sum = 0;
    for (int k = 0; k < K; k++) { /* k-th best by biased score */
      int best = -1;
      for (int e = 0; e < E; e++) {
        int used = 0;
        for (int j = 0; j < k; j++)
          used |= sel[j] == e;
        if (!used && (best < 0 || c[e] > c[best]))
          best = e;
      }
      sel[k] = best;
      sum += s[best];
      assert_int_equal(ids[t * K + k], best);
    }
    double best_out = -INFINITY; /* the router margin: k-th chosen biased score minus the best left out */
    for (int e = 0; e < E; e++) {
      int used = 0;
      for (int j = 0; j < K; j++)
        used |= sel[j] == e;
      if (!used && c[e] > best_out)
        best_out = c[e];
    }
    double want = c[sel[K - 1]] - best_out;
    if (!(want >= 0) || fabs(margin[t] - want) > 1e-5)
      fail_msg("moe router margin of token %d: %g, want %g", t, margin[t], want);
    for (int k = 0; k < K; k++) {
      int e = sel[k];
      double w = s[e] / sum * 1.5, hdn[32];
      for (int i = 0; i < I; i++) {
        double g = 0, u = 0;
        for (int j = 0; j < H; j++) {
          g += (double)x[t * H + j] * ex[e * 3].dense[i * H + j];
          u += (double)x[t * H + j] * ex[e * 3 + 1].dense[i * H + j];
        }
        hdn[i] = g / (1 + exp(-g)) * u;
      }
      for (int o = 0; o < H; o++) {
        double d = 0;
        for (int i = 0; i < I; i++)
          d += hdn[i] * ex[e * 3 + 2].dense[o * I + i];
        ref[t * H + o] += w * d;
      }
    }
  }
  double e = rel_err(out, ref, (size_t)T * H);
  if (e > 1e-5)
    fail_msg("moe rel err %g", e);
  free(ref);
  free(x);
  free(out);
  free_linear(&router);
  for (int i = 0; i < 3 * E; i++)
    free_linear(&ex[i]);
}

static int setup(void **state) {
  (void)state;
  mimo_rng_seed(&rng, 12345);
  return mimo_backend_cpu_init(&be, 2) == MIMO_OK ? 0 : -1;
}

/* add_rmsnorm = add, then rmsnorm (bit for bit); qkv_split puts every natural-order row where the placement
 * formula of mimo_v2_shard.c (an independent reading of spec §3.3) says the checkpoint keeps it, and with RoPE
 * folded in equals rope() after it (bit for bit). */
static void test_add_rmsnorm_qkv_split(void **state) {
  (void)state;
  int T = 5, n = 200;
  float *h = malloc((size_t)T * n * 4), *h2 = malloc((size_t)T * n * 4), *x = malloc((size_t)T * n * 4),
        *y = poisoned((size_t)T * n), *y2 = poisoned((size_t)T * n), w32[200];
  fill_f32(h, (size_t)T * n, 2.0);
  memcpy(h2, h, (size_t)T * n * 4);
  fill_f32(x, (size_t)T * n, 1.0);
  fill_f32(w32, (size_t)n, 1.0);
  mimo_vec w = {.n = n, .dt = MIMO_DT_F32, .p = w32};
  be->add_rmsnorm(be, y, h, x, &w, T, n, 1e-5f);
  be->add(be, h2, x, (long)T * n);
  be->rmsnorm(be, y2, h2, &w, T, n, 1e-5f);
  assert_memory_equal(h, h2, (size_t)T * n * 4);
  assert_memory_equal(y, y2, (size_t)T * n * 4);
  free(h);
  free(h2);
  free(x);
  free(y);
  free(y2);

  for (int chunks = 1; chunks <= 4; chunks *= 2) {
    mimo_attn_geom g = {.n_heads = 8, .n_kv_heads = 4, .head_dim = 12, .v_head_dim = 6};
    int nq = g.n_heads * g.head_dim, nk = g.n_kv_heads * g.head_dim, nv = g.n_kv_heads * g.v_head_dim,
        row = nq + nk + nv;
    float *qkv = malloc((size_t)T * row * 4), *out = poisoned((size_t)T * row);
    fill_f32(qkv, (size_t)T * row, 1.0);
    const float vs = 0.5f;
    be->qkv_split(be, out, out + (size_t)T * nq, out + (size_t)T * (nq + nk), qkv, T, chunks, nq / chunks,
                  nk / chunks, nv / chunks, vs, NULL);
    for (int t = 0; t < T; t++)
      for (int r = 0; r < row; r++) {
        const float src = qkv[(size_t)t * row + mimo_shard_qkv_ckpt_row(&g, chunks, r)];
        const float got = r < nq        ? out[(size_t)t * nq + r]
                          : r < nq + nk ? out[(size_t)T * nq + (size_t)t * nk + r - nq]
                                        : out[(size_t)T * (nq + nk) + (size_t)t * nv + r - nq - nk];
        assert_true(got == (r < nq + nk ? src : src * vs));
      }
    /* with RoPE folded in: the same as rope() on q and on k afterwards, bit for bit */
    const int pos[5] = {0, 7, 1000, 31, 65535};
    const mimo_rope_args rope = {g.n_heads, g.n_kv_heads, g.head_dim, 8, pos, 10000.0};
    float *out2 = poisoned((size_t)T * row);
    be->qkv_split(be, out2, out2 + (size_t)T * nq, out2 + (size_t)T * (nq + nk), qkv, T, chunks, nq / chunks,
                  nk / chunks, nv / chunks, vs, &rope);
    be->rope(be, out, T, g.n_heads, g.head_dim, nq, 8, pos, 10000.0);
    be->rope(be, out + (size_t)T * nq, T, g.n_kv_heads, g.head_dim, nk, 8, pos, 10000.0);
    assert_memory_equal(out, out2, (size_t)T * row * 4);
    free(out2);
    free(qkv);
    free(out);
  }
}

static int teardown(void **state) {
  (void)state;
  be->free(be);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear), cmocka_unit_test(test_rmsnorm_swiglu), cmocka_unit_test(test_rope),
      cmocka_unit_test(test_attention), cmocka_unit_test(test_moe), cmocka_unit_test(test_add_rmsnorm_qkv_split),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
