#include "model/synth.h"

#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/fileio.h"
#include "core/log.h"
#include "core/num.h"
#include "core/threads.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "text/synth_tokenizer.h"

extern const char mimo_default_chat_template[]; /* assets/mimo_chat_template.jinja, embedded by CMake */

typedef struct {
  int vocab, hidden, layers, heads, kv, swa_kv, head_dim, v_head_dim, window;
  int inter, moe_inter, experts, topk, group, shards;
  int bf16_layer; /* expert layer kept in bf16, -1 none */
  int tok_vocab;  /* tokenizer entries; embedding rows above are padding, as in the release */
  const char *pattern; /* per layer '0' full / '1' sliding; repeated */
} preset;

/* The vision tower (spec §4.1): window types repeat `types` ('F' full, 'R' row window, 'C' column window). */
typedef struct {
  int depth, hidden, inter, heads, kv, head_dim, patch, window;
  long min_pixels, max_pixels;
  const char *types;
} vision_preset;

static void vision_preset_get(const char *name, vision_preset *v) {
  if (strcmp(name, "tiny") == 0)
    *v = (vision_preset){4, 32, 48, 4, 2, 16, 4, 8, 64, 4096, "FRCF"};
  else if (strcmp(name, "small") == 0)
    *v = (vision_preset){8, 256, 512, 8, 2, 32, 16, 16, 8192, 262144, "FRRCCRCF"};
  else
    *v = (vision_preset){28, 1280, 4608, 32, 8, 64, 16, 64, 8192, 8388608, "FRRRRCCCCFRRRRCCCCFRRRRCCCCF"};
}

static int vit_type(const vision_preset *v, int i) {
  const char c = v->types[i % strlen(v->types)];
  return c == 'F' ? -1 : c == 'R' ? 0 : 1;
}

static const int real_full_layers[] = {0, 5, 11, 17, 23, 29, 35, 41, 47};

static int preset_get(const char *name, preset *p) {
  if (strcmp(name, "tiny") == 0) {
    *p = (preset){640, 64, 4, 8, 4, 8, 32, 16, 8, 128, 32, 16, 4, 32, 3, 2, 600, "0110"};
  } else if (strcmp(name, "small") == 0) {
    *p = (preset){32000, 2048, 8, 16, 4, 8, 192, 128, 128, 5632, 768, 64, 8, 128, 4, 6, 31900, "01111011"};
  } else if (strcmp(name, "full") == 0) {
    *p = (preset){152576, 4096, 48, 64, 4, 8, 192, 128, 128, 16384, 2048, 256, 8, 128, 4, 41, 151675, NULL};
  } else {
    return 0;
  }
  return 1;
}

static int layer_is_swa(const preset *p, int L) {
  if (!p->pattern) {
    for (size_t i = 0; i < sizeof real_full_layers / sizeof *real_full_layers; i++)
      if (real_full_layers[i] == L)
        return 0;
    return 1;
  }
  return p->pattern[L % strlen(p->pattern)] == '1';
}

/* ---- tensor generators: values depend only on (seed, tensor name) ---- */

typedef enum { G_NORMAL_BF16, G_NORM_BF16, G_NORMAL_F32, G_NIBBLES, G_SCALE_BF16, G_ZERO, G_SHAPE, G_QKV_PART } gen_kind;

typedef struct gen {
  gen_kind kind;
  double std;
  uint64_t seed;
  int64_t a, b; /* G_SHAPE values */
  /* G_QKV_PART: rows of the fused chunked tensor (spec §3.3) that form q, k or v,
   * so a split-layout checkpoint holds exactly the fused one's weights. */
  int part, chunks, qc, kc, vc, in;
  mimo_pool *pool; /* large normal tensors are drawn in parallel chunks (fill_normal) */
} gen;

static mimo_status fill(void *ctx, void *dst, size_t bytes);

static mimo_status fill_qkv_part(gen *g, void *dst) {
  int rows = g->chunks * (g->qc + g->kc + g->vc);
  size_t row_bytes = (size_t)g->in * 2;
  uint16_t *full = malloc((size_t)rows * row_bytes);
  if (!full)
    return mimo_errf(MIMO_E_NOMEM, "synth qkv");
  gen parent = {.kind = G_NORMAL_BF16, .std = g->std, .seed = g->seed, .pool = g->pool};
  fill(&parent, full, (size_t)rows * row_bytes);
  int off = g->part == 0 ? 0 : g->part == 1 ? g->qc : g->qc + g->kc, n = g->part == 0 ? g->qc : g->part == 1 ? g->kc : g->vc;
  for (int c = 0; c < g->chunks; c++)
    memcpy((char *)dst + (size_t)c * n * row_bytes, full + (size_t)(c * (g->qc + g->kc + g->vc) + off) * g->in,
           (size_t)n * row_bytes);
  free(full);
  return MIMO_OK;
}

/* Normal draws (the three normal kinds) for elements [i0, i1) of dst from r. */
static void normals(const gen *g, mimo_rng *r, void *dst, size_t i0, size_t i1) {
  for (size_t i = i0; i < i1; i++) {
    const double x = mimo_rng_normal(r) * g->std;
    if (g->kind == G_NORMAL_F32)
      ((float *)dst)[i] = (float)x;
    else
      ((uint16_t *)dst)[i] = mimo_f32_to_bf16((float)(g->kind == G_NORM_BF16 ? 1.0 + x : x));
  }
}

/* Tensors of at least SYNTH_PAR_BYTES (the full preset's embedding, lm_head and projections: ~90 % of its synth
 * time went to their normal draws on one core) are drawn in chunks of SYNTH_CHUNK elements, each from its own
 * stream, over the pool. Smaller tensors, every tensor of the tiny preset the tests use among them, keep one
 * stream: their values do not change. */
enum { SYNTH_PAR_BYTES = 16 << 20, SYNTH_CHUNK = 1 << 19 };
typedef struct {
  const gen *g;
  void *dst;
  size_t n;
} normal_job;
static void normal_chunks(void *ctx, long c0, long c1) {
  const normal_job *j = ctx;
  for (long c = c0; c < c1; c++) {
    mimo_rng r;
    mimo_rng_seed(&r, j->g->seed + 0x9e3779b97f4a7c15ull * (uint64_t)(c + 1));
    const size_t i0 = (size_t)c * SYNTH_CHUNK, i1 = i0 + SYNTH_CHUNK < j->n ? i0 + SYNTH_CHUNK : j->n;
    normals(j->g, &r, j->dst, i0, i1);
  }
}
static void fill_normal(const gen *g, void *dst, size_t bytes) {
  const size_t n = bytes / (g->kind == G_NORMAL_F32 ? 4 : 2);
  if (bytes >= SYNTH_PAR_BYTES && g->pool) {
    normal_job j = {g, dst, n};
    mimo_parallel_for(g->pool, (long)((n + SYNTH_CHUNK - 1) / SYNTH_CHUNK), 1, normal_chunks, &j);
    return;
  }
  mimo_rng r;
  mimo_rng_seed(&r, g->seed);
  normals(g, &r, dst, 0, n);
}

static mimo_status fill(void *ctx, void *dst, size_t bytes) {
  gen *g = ctx;
  mimo_rng r;
  mimo_rng_seed(&r, g->seed);
  switch (g->kind) {
  case G_NORMAL_BF16:
  case G_NORM_BF16:
  case G_NORMAL_F32:
    fill_normal(g, dst, bytes);
    break;
  case G_NIBBLES: { /* uniform u in [0,15] = q + 8 */
    uint64_t *d = dst;
    for (size_t i = 0; i < bytes / 8; i++)
      d[i] = mimo_rng_next(&r);
    break;
  }
  case G_SCALE_BF16: { /* std of (u - 8) is ~4.6: scale so weights have std ~ g->std */
    uint16_t *d = dst;
    for (size_t i = 0; i < bytes / 2; i++)
      d[i] = mimo_f32_to_bf16((float)(g->std / 4.6 * (0.75 + 0.5 * mimo_rng_uniform(&r))));
    break;
  }
  case G_ZERO: { /* zero points in [-3, 2], stored +8, eight rows per word */
    uint32_t *d = dst;
    for (size_t i = 0; i < bytes / 4; i++) {
      uint32_t w = 0;
      for (int k = 0; k < 8; k++)
        w |= (uint32_t)(5 + (int)(mimo_rng_next(&r) % 6)) << (4 * k);
      d[i] = w;
    }
    break;
  }
  case G_QKV_PART:
    return fill_qkv_part(g, dst);
  case G_SHAPE: {
    int64_t v[2] = {g->a, g->b};
    memcpy(dst, v, sizeof v);
    break;
  }
  }
  return MIMO_OK;
}

typedef struct tensor_spec {
  char name[160];
  mimo_dtype dt;
  int ndim;
  int64_t shape[5];
  gen g;
  size_t bytes;
  int shard;
} tensor_spec;

typedef struct {
  tensor_spec *t;
  size_t n, cap;
  uint64_t seed;
  mimo_status st;
  mimo_pool *pool;
} plan;

static uint64_t name_seed(uint64_t seed, const char *s) {
  return mimo_fnv1a(MIMO_FNV_BASIS ^ (seed * 0x9e3779b97f4a7c15ull), s, strlen(s));
}

static void add_nd(plan *p, const char *name, mimo_dtype dt, int ndim, const int64_t *shape, gen g) {
  if (p->st != MIMO_OK)
    return;
  if (p->n == p->cap) {
    size_t cap = p->cap ? p->cap * 2 : 256;
    tensor_spec *t = realloc(p->t, cap * sizeof *t);
    if (!t) {
      p->st = mimo_errf(MIMO_E_NOMEM, "synth plan");
      return;
    }
    p->t = t;
    p->cap = cap;
  }
  tensor_spec *t = &p->t[p->n++];
  memset(t, 0, sizeof *t);
  snprintf(t->name, sizeof t->name, "%s", name);
  t->dt = dt;
  t->ndim = ndim;
  t->bytes = mimo_dtype_size(dt);
  for (int i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->bytes *= (size_t)shape[i];
  }
  t->g = g;
  t->g.seed = name_seed(p->seed, name);
  t->g.pool = p->pool;
}

static void add(plan *p, const char *name, mimo_dtype dt, int ndim, int64_t d0, int64_t d1, gen g) {
  const int64_t shape[2] = {d0, d1};
  add_nd(p, name, dt, ndim, shape, g);
}

static void add_bf16(plan *p, const char *name, int64_t out, int64_t in, double std) {
  add(p, name, MIMO_DT_BF16, 2, out, in, (gen){.kind = G_NORMAL_BF16, .std = std});
}

static void add_proj(plan *p, const char *prefix, int out, int in, int int4, int asym, int group) {
  char n[200];
  double std = 1.0 / sqrt((double)in);
  if (!int4) {
    snprintf(n, sizeof n, "%s.weight", prefix);
    add_bf16(p, n, out, in, std);
    return;
  }
  snprintf(n, sizeof n, "%s.weight_packed", prefix);
  add(p, n, MIMO_DT_I32, 2, out, in / 8, (gen){.kind = G_NIBBLES});
  snprintf(n, sizeof n, "%s.weight_scale", prefix);
  add(p, n, MIMO_DT_BF16, 2, out, in / group, (gen){.kind = G_SCALE_BF16, .std = std});
  snprintf(n, sizeof n, "%s.weight_shape", prefix);
  add(p, n, MIMO_DT_I64, 1, 2, 0, (gen){.kind = G_SHAPE, .a = out, .b = in});
  if (asym) {
    snprintf(n, sizeof n, "%s.weight_zero_point", prefix);
    add(p, n, MIMO_DT_I32, 2, (out + 7) / 8, in / group, (gen){.kind = G_ZERO});
  }
}

static void plan_model(plan *p, const preset *ps, int int4, int asym, int split) {
  char n[200];
  int H = ps->hidden;
  add(p, "model.embed_tokens.weight", MIMO_DT_BF16, 2, ps->vocab, H, (gen){.kind = G_NORMAL_BF16, .std = 1.0});
  for (int L = 0; L < ps->layers; L++) {
    int swa = layer_is_swa(ps, L), kv = swa ? ps->swa_kv : ps->kv;
    snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", L);
    add(p, n, MIMO_DT_BF16, 1, H, 0, (gen){.kind = G_NORM_BF16, .std = 0.1});
    snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", L);
    add(p, n, MIMO_DT_BF16, 1, H, 0, (gen){.kind = G_NORM_BF16, .std = 0.1});
    int rows = ps->heads * ps->head_dim + kv * (ps->head_dim + ps->v_head_dim);
    snprintf(n, sizeof n, "model.layers.%d.self_attn.qkv_proj.weight", L);
    if (!split) {
      add_bf16(p, n, rows, H, 1.0 / sqrt((double)H));
    } else {
      static const char *parts[3] = {"q_proj", "k_proj", "v_proj"};
      int ch = ps->kv, qc = ps->heads / ch * ps->head_dim, kc = kv / ch * ps->head_dim, vc = kv / ch * ps->v_head_dim;
      uint64_t fused_seed = name_seed(p->seed, n);
      for (int k = 0; k < 3; k++) {
        char pn[200];
        snprintf(pn, sizeof pn, "model.layers.%d.self_attn.%s.weight", L, parts[k]);
        add(p, pn, MIMO_DT_BF16, 2, (int64_t)ch * (k == 0 ? qc : k == 1 ? kc : vc), H,
            (gen){.kind = G_QKV_PART, .std = 1.0 / sqrt((double)H), .part = k, .chunks = ch, .qc = qc, .kc = kc,
                  .vc = vc, .in = H});
        p->t[p->n - 1].g.seed = fused_seed;
      }
    }
    snprintf(n, sizeof n, "model.layers.%d.self_attn.o_proj.weight", L);
    add_bf16(p, n, H, ps->heads * ps->v_head_dim, 1.0 / sqrt((double)ps->heads * ps->v_head_dim));
    if (swa) {
      snprintf(n, sizeof n, "model.layers.%d.self_attn.attention_sink_bias", L);
      add(p, n, MIMO_DT_BF16, 1, ps->heads, 0, (gen){.kind = G_NORMAL_BF16, .std = 1.0});
    }
    if (L == 0) {
      static const char *pr[3] = {"gate_proj", "up_proj", "down_proj"};
      for (int k = 0; k < 3; k++) {
        snprintf(n, sizeof n, "model.layers.0.mlp.%s", pr[k]);
        add_proj(p, n, k == 2 ? H : ps->inter, k == 2 ? ps->inter : H, 0, 0, 0);
      }
      continue;
    }
    snprintf(n, sizeof n, "model.layers.%d.mlp.gate.weight", L);
    add(p, n, MIMO_DT_F32, 2, ps->experts, H, (gen){.kind = G_NORMAL_F32, .std = 1.0 / sqrt((double)H)});
    snprintf(n, sizeof n, "model.layers.%d.mlp.gate.e_score_correction_bias", L);
    add(p, n, MIMO_DT_F32, 1, ps->experts, 0, (gen){.kind = G_NORMAL_F32, .std = 0.05});
    int q = int4 && L != ps->bf16_layer;
    for (int e = 0; e < ps->experts; e++) {
      snprintf(n, sizeof n, "model.layers.%d.mlp.experts.%d.gate_proj", L, e);
      add_proj(p, n, ps->moe_inter, H, q, asym, ps->group);
      snprintf(n, sizeof n, "model.layers.%d.mlp.experts.%d.up_proj", L, e);
      add_proj(p, n, ps->moe_inter, H, q, asym, ps->group);
      snprintf(n, sizeof n, "model.layers.%d.mlp.experts.%d.down_proj", L, e);
      add_proj(p, n, H, ps->moe_inter, q, asym, ps->group);
    }
  }
  add(p, "model.norm.weight", MIMO_DT_BF16, 1, H, 0, (gen){.kind = G_NORM_BF16, .std = 0.1});
  add_bf16(p, "lm_head.weight", ps->vocab, H, 2.0 / sqrt((double)H));
}

static void plan_vision(plan *p, const vision_preset *v, int out_hidden) {
  char n[200];
  const int H = v->hidden, q = v->heads * v->head_dim, kv = v->kv * v->head_dim, cat = 4 * H;
  const int64_t pe[5] = {H, 3, 2, v->patch, v->patch};
  add_nd(p, "visual.patch_embed.proj.weight", MIMO_DT_BF16, 5, pe,
         (gen){.kind = G_NORMAL_BF16, .std = 1.0 / sqrt(6.0 * v->patch * v->patch)});
  const gen bias = {.kind = G_NORMAL_BF16, .std = 0.02};
  for (int i = 0; i < v->depth; i++) {
    static const char *norms[2] = {"norm1", "norm2"};
    for (int k = 0; k < 2; k++) {
      snprintf(n, sizeof n, "visual.blocks.%d.%s.weight", i, norms[k]);
      add(p, n, MIMO_DT_BF16, 1, H, 0, (gen){.kind = G_NORM_BF16, .std = 0.1});
    }
    snprintf(n, sizeof n, "visual.blocks.%d.attn.qkv.weight", i);
    add_bf16(p, n, q + 2 * kv, H, 1.0 / sqrt((double)H));
    snprintf(n, sizeof n, "visual.blocks.%d.attn.qkv.bias", i);
    add(p, n, MIMO_DT_BF16, 1, q + 2 * kv, 0, bias);
    snprintf(n, sizeof n, "visual.blocks.%d.attn.proj.weight", i);
    add_bf16(p, n, H, q, 1.0 / sqrt((double)q));
    snprintf(n, sizeof n, "visual.blocks.%d.attn.proj.bias", i);
    add(p, n, MIMO_DT_BF16, 1, H, 0, bias);
    if (vit_type(v, i) != -1) {
      snprintf(n, sizeof n, "visual.blocks.%d.attn.sinks", i);
      add(p, n, MIMO_DT_BF16, 1, v->heads, 0, (gen){.kind = G_NORMAL_BF16, .std = 1.0});
    }
    static const char *mlp[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int k = 0; k < 3; k++) {
      const int out = k == 2 ? H : v->inter, in = k == 2 ? v->inter : H;
      snprintf(n, sizeof n, "visual.blocks.%d.mlp.%s.weight", i, mlp[k]);
      add_bf16(p, n, out, in, 1.0 / sqrt((double)in));
      snprintf(n, sizeof n, "visual.blocks.%d.mlp.%s.bias", i, mlp[k]);
      add(p, n, MIMO_DT_BF16, 1, out, 0, bias);
    }
  }
  add(p, "visual.merger.ln_q.weight", MIMO_DT_BF16, 1, H, 0, (gen){.kind = G_NORM_BF16, .std = 0.1});
  add_bf16(p, "visual.merger.mlp.0.weight", cat, cat, 1.0 / sqrt((double)cat));
  add_bf16(p, "visual.merger.mlp.2.weight", out_hidden, cat, 1.0 / sqrt((double)cat));
}

static json_t *vision_config(const vision_preset *v, int out_hidden) {
  json_t *c = json_object(), *types = json_array(), *full = json_array();
  for (int i = 0; i < v->depth; i++) {
    json_array_append_new(types, json_integer(vit_type(v, i)));
    if (vit_type(v, i) == -1)
      json_array_append_new(full, json_integer(i));
  }
  json_object_set_new(c, "depth", json_integer(v->depth));
  json_object_set_new(c, "hidden_size", json_integer(v->hidden));
  json_object_set_new(c, "intermediate_size", json_integer(v->inter));
  json_object_set_new(c, "hidden_act", json_string("silu"));
  json_object_set_new(c, "num_heads", json_integer(v->heads));
  json_object_set_new(c, "num_key_value_heads", json_integer(v->kv));
  json_object_set_new(c, "qk_channels", json_integer(v->head_dim));
  json_object_set_new(c, "in_chans", json_integer(3));
  json_object_set_new(c, "patch_size", json_integer(v->patch));
  json_object_set_new(c, "spatial_patch_size", json_integer(v->patch));
  json_object_set_new(c, "temporal_patch_size", json_integer(2));
  json_object_set_new(c, "spatial_merge_size", json_integer(2));
  json_object_set_new(c, "out_hidden_size", json_integer(out_hidden));
  json_object_set_new(c, "tokens_per_second", json_integer(2));
  json_object_set_new(c, "use_sink", json_true());
  json_object_set_new(c, "visual_token_window_size", json_integer(v->window));
  json_object_set_new(c, "window_size", json_integer(2 * v->window));
  json_object_set_new(c, "fullatt_block_indexes", full);
  json_object_set_new(c, "vit_window_attn_types", types);
  json_object_set_new(c, "num_query_groups", json_integer(v->kv / 2 ? v->kv / 2 : 1));
  json_object_set_new(c, "vision_model_type", json_string("mimovl"));
  return c;
}

/* An MTP layer (spec §2.7, §3.1): SWA attention geometry with its sink, a dense MLP, and the projection of
 * [embedding ; hidden] to the hidden size. */
static void plan_mtp(plan *p, const preset *ps, int M) {
  char n[200];
  const int H = ps->hidden, kv = ps->swa_kv;
  static const char *norms[] = {"enorm", "hnorm", "input_layernorm", "pre_mlp_layernorm", "final_layernorm"};
  for (size_t k = 0; k < sizeof norms / sizeof *norms; k++) {
    snprintf(n, sizeof n, "model.mtp.layers.%d.%s.weight", M, norms[k]);
    add(p, n, MIMO_DT_BF16, 1, H, 0, (gen){.kind = G_NORM_BF16, .std = 0.1});
  }
  snprintf(n, sizeof n, "model.mtp.layers.%d.eh_proj.weight", M);
  add_bf16(p, n, H, 2 * H, 1.0 / sqrt(2.0 * H));
  snprintf(n, sizeof n, "model.mtp.layers.%d.self_attn.qkv_proj.weight", M);
  add_bf16(p, n, ps->heads * ps->head_dim + kv * (ps->head_dim + ps->v_head_dim), H, 1.0 / sqrt((double)H));
  snprintf(n, sizeof n, "model.mtp.layers.%d.self_attn.o_proj.weight", M);
  add_bf16(p, n, H, ps->heads * ps->v_head_dim, 1.0 / sqrt((double)ps->heads * ps->v_head_dim));
  snprintf(n, sizeof n, "model.mtp.layers.%d.self_attn.attention_sink_bias", M);
  add(p, n, MIMO_DT_BF16, 1, ps->heads, 0, (gen){.kind = G_NORMAL_BF16, .std = 1.0});
  static const char *pr[3] = {"gate_proj", "up_proj", "down_proj"};
  for (int k = 0; k < 3; k++) {
    snprintf(n, sizeof n, "model.mtp.layers.%d.mlp.%s", M, pr[k]);
    add_proj(p, n, k == 2 ? H : ps->inter, k == 2 ? ps->inter : H, 0, 0, 0);
  }
}

static json_t *int_list(int n, int (*f)(const preset *, int), const preset *p) {
  json_t *a = json_array();
  for (int i = 0; i < n; i++)
    json_array_append_new(a, json_integer(f(p, i)));
  return a;
}
static int moe_flag(const preset *p, int L) {
  (void)p;
  return L == 0 ? 0 : 1;
}

static json_t *make_config(const preset *ps, int int4, int asym, int split, const mimo_synth_tok_ids *ids,
                           const vision_preset *vis) {
  json_t *c = json_object();
  json_object_set_new(c, "eos_token_id", json_integer(ids->im_end));
  json_object_set_new(c, "pad_token_id", json_integer(ids->endoftext));
  json_object_set_new(c, "image_token_id", json_integer(ids->image_pad));
  json_object_set_new(c, "video_token_id", json_integer(ids->video_pad));
  json_object_set_new(c, "vision_start_token_id", json_integer(ids->vision_start));
  json_object_set_new(c, "vision_end_token_id", json_integer(ids->vision_end));
  json_object_set_new(c, "audio_token_id", json_integer(ids->audio_pad));
  json_object_set_new(c, "architectures", json_pack("[s]", "MiMoV2ForCausalLM"));
  json_object_set_new(c, "model_type", json_string("mimo_v2"));
  json_object_set_new(c, "torch_dtype", json_string("bfloat16"));
  json_object_set_new(c, "vocab_size", json_integer(ps->vocab));
  json_object_set_new(c, "hidden_size", json_integer(ps->hidden));
  json_object_set_new(c, "num_hidden_layers", json_integer(ps->layers));
  json_object_set_new(c, "num_attention_heads", json_integer(ps->heads));
  json_object_set_new(c, "num_key_value_heads", json_integer(ps->kv));
  json_object_set_new(c, "head_dim", json_integer(ps->head_dim));
  json_object_set_new(c, "v_head_dim", json_integer(ps->v_head_dim));
  json_object_set_new(c, "swa_num_attention_heads", json_integer(ps->heads));
  json_object_set_new(c, "swa_num_key_value_heads", json_integer(ps->swa_kv));
  json_object_set_new(c, "swa_head_dim", json_integer(ps->head_dim));
  json_object_set_new(c, "swa_v_head_dim", json_integer(ps->v_head_dim));
  json_object_set_new(c, "hybrid_layer_pattern", int_list(ps->layers, layer_is_swa, ps));
  json_object_set_new(c, "sliding_window", json_integer(ps->window));
  json_object_set_new(c, "sliding_window_size", json_integer(ps->window));
  json_object_set_new(c, "attention_chunk_size", json_integer(ps->window));
  json_object_set_new(c, "partial_rotary_factor", json_real(0.334));
  json_object_set_new(c, "rope_theta", json_real(10000000.0));
  json_object_set_new(c, "swa_rope_theta", json_real(10000.0));
  json_object_set_new(c, "rope_scaling", json_pack("{s:s,s:s}", "rope_type", "default", "type", "default"));
  json_object_set_new(c, "max_position_embeddings", json_integer(1048576));
  json_object_set_new(c, "attention_value_scale", json_real(0.707));
  json_object_set_new(c, "attention_bias", json_false());
  json_object_set_new(c, "add_swa_attention_sink_bias", json_true());
  json_object_set_new(c, "add_full_attention_sink_bias", json_false());
  if (!split) /* the V2-Flash layout has no such field */
    json_object_set_new(c, "attention_projection_layout", json_string("fused_qkv"));
  json_object_set_new(c, "layernorm_epsilon", json_real(1e-5));
  json_object_set_new(c, "hidden_act", json_string("silu"));
  json_object_set_new(c, "tie_word_embeddings", json_false());
  json_object_set_new(c, "intermediate_size", json_integer(ps->inter));
  json_object_set_new(c, "moe_intermediate_size", json_integer(ps->moe_inter));
  json_object_set_new(c, "moe_layer_freq", int_list(ps->layers, moe_flag, ps));
  json_object_set_new(c, "n_routed_experts", json_integer(ps->experts));
  json_object_set_new(c, "num_experts_per_tok", json_integer(ps->topk));
  json_object_set_new(c, "n_shared_experts", json_null());
  json_object_set_new(c, "scoring_func", json_string("sigmoid"));
  json_object_set_new(c, "topk_method", json_string("noaux_tc"));
  json_object_set_new(c, "n_group", json_integer(1));
  json_object_set_new(c, "topk_group", json_integer(1));
  json_object_set_new(c, "norm_topk_prob", json_true());
  json_object_set_new(c, "routed_scaling_factor", json_null());
  if (vis) {
    json_object_set_new(c, "vision_config", vision_config(vis, ps->hidden));
    json_object_set_new(c, "processor_config",
                        json_pack("{s:I,s:I,s:f,s:I}", "image_min_pixels", (json_int_t)vis->min_pixels,
                                  "image_max_pixels", (json_int_t)vis->max_pixels, "fps", 1.0, "max_frames",
                                  (json_int_t)3600));
  }
  if (int4) {
    const bool has_bf16 = ps->bf16_layer >= 1 && ps->bf16_layer < ps->layers;
    json_object_set_new(c, "quantization_config",
                        mimo_ckpt_int4_config(ps->group, asym, "minmax", &ps->bf16_layer, has_bf16 ? 1 : 0));
  }
  return c;
}

/* Shards by cumulative size; then one companion moved so a module's tensors
 * span two shards, as in the release (loaders must resolve through the index). */
static void assign_shards(plan *p, int shards) {
  size_t total = 0, acc = 0;
  for (size_t i = 0; i < p->n; i++)
    total += p->t[i].bytes;
  for (size_t i = 0; i < p->n; i++) {
    int s = (int)((double)acc / (double)total * shards);
    p->t[i].shard = s < shards ? s : shards - 1;
    acc += p->t[i].bytes;
  }
  for (size_t i = 0; i < p->n; i++)
    if (strstr(p->t[i].name, ".weight_scale") && p->t[i].shard == 0) {
      p->t[i].shard = shards - 1;
      break;
    }
}

static mimo_status write_files(plan *p, const char *dir, int shards) {
  json_t *wm = json_object();
  size_t total = 0;
  mimo_status st = MIMO_OK;
  for (int s = 0; s < shards && st == MIMO_OK; s++) {
    char fname[64], path[4096];
    snprintf(fname, sizeof fname, "model-%05d-of-%05d.safetensors", s + 1, shards);
    snprintf(path, sizeof path, "%s/%s", dir, fname);
    mimo_st_writer *w;
    st = mimo_st_writer_init(&w);
    for (size_t i = 0; st == MIMO_OK && i < p->n; i++) {
      tensor_spec *t = &p->t[i];
      if (t->shard != s)
        continue;
      st = mimo_st_writer_add_fill(w, t->name, t->dt, t->ndim, t->shape, fill, &t->g);
      json_object_set_new(wm, t->name, json_string(fname));
      total += t->bytes;
    }
    if (st == MIMO_OK)
      st = mimo_st_writer_save(w, path);
    mimo_st_writer_free(w);
  }
  if (st == MIMO_OK)
    return mimo_ckpt_write_index(dir, wm, total);
  json_decref(wm);
  return st;
}

mimo_status mimo_synth(const mimo_synth_opts *o) {
  preset ps;
  if (!preset_get(o->preset ? o->preset : "tiny", &ps))
    return mimo_errf(MIMO_E_INVALID, "unknown preset '%s' (tiny, small, full)", o->preset);
  const char *quant = o->quant ? o->quant : "int4";
  int int4 = strcmp(quant, "bf16") != 0, asym = strcmp(quant, "int4-asym") == 0;
  if (int4 && !asym && strcmp(quant, "int4") != 0)
    return mimo_errf(MIMO_E_INVALID, "unknown --quant '%s' (int4, int4-asym, bf16)", quant);
  if (o->group_size)
    ps.group = o->group_size;
  if (o->kv_heads) {
    ps.kv = o->kv_heads;
    ps.swa_kv = 2 * o->kv_heads;
  }
  if (o->layers)
    ps.layers = o->layers;
  if (o->shards)
    ps.shards = o->shards;
  if (o->moe_inter)
    ps.moe_inter = o->moe_inter;
  if (ps.moe_inter < 8 || ps.moe_inter % 8)
    return mimo_errf(MIMO_E_INVALID, "--moe-inter %d must be a positive multiple of 8", ps.moe_inter);
  if (ps.layers < 1 || ps.layers > 256 || ps.shards < 1 || ps.shards > 64)
    return mimo_errf(MIMO_E_INVALID, "--layers must be 1..256 and --shards 1..64");
  if (ps.group < 8 || ps.group % 8 || ps.hidden % ps.group || ps.moe_inter % ps.group)
    return mimo_errf(MIMO_E_INVALID, "--group-size %d must be a multiple of 8 dividing %d and %d", ps.group, ps.hidden,
                     ps.moe_inter);
  if (ps.kv < 1 || ps.heads % ps.kv || ps.heads % ps.swa_kv)
    return mimo_errf(MIMO_E_INVALID, "--kv-heads %d must divide the %d query heads (and twice it too)", ps.kv, ps.heads);
  plan p = {.seed = o->seed};
  if ((p.st = mimo_pool_init(&p.pool, 0)) != MIMO_OK)
    return p.st;
  plan_model(&p, &ps, int4, asym, o->split_qkv);
  if (o->mtp_layers < 0 || o->mtp_layers > 8) {
    free(p.t);
    mimo_pool_free(p.pool);
    return mimo_errf(MIMO_E_INVALID, "--mtp-layers %d: 0 to 8", o->mtp_layers);
  }
  for (int M = 0; M < o->mtp_layers; M++)
    plan_mtp(&p, &ps, M);
  vision_preset vis;
  vision_preset_get(o->preset ? o->preset : "tiny", &vis);
  if (!o->no_vision)
    plan_vision(&p, &vis, ps.hidden);
  if (p.st != MIMO_OK) {
    free(p.t);
    mimo_pool_free(p.pool);
    return p.st;
  }
  size_t total = 0;
  for (size_t i = 0; i < p.n; i++)
    total += p.t[i].bytes;
  mimo_status st = mimo_mkdir_p(o->out);
  struct statvfs fs;
  if (st == MIMO_OK && statvfs(o->out, &fs) == 0 && (double)fs.f_bavail * fs.f_frsize < (double)total * 1.02)
    st = mimo_errf(MIMO_E_IO, "%s: the %s checkpoint needs %.1f GB but only %.1f GB are free", o->out, o->preset,
                   total / 1e9, (double)fs.f_bavail * fs.f_frsize / 1e9);
  if (st == MIMO_OK) {
    assign_shards(&p, ps.shards);
    mimo_info("synth: writing %zu tensors, %.3f GB, %d shards to %s", p.n, total / 1e9, ps.shards, o->out);
    st = write_files(&p, o->out, ps.shards);
  }
  mimo_synth_tok_ids ids;
  if (st == MIMO_OK)
    st = mimo_synth_tokenizer(o->out, ps.tok_vocab, o->seed, &ids);
  if (st == MIMO_OK) {
    char path[4096];
    snprintf(path, sizeof path, "%s/chat_template.jinja", o->out);
    st = mimo_write_file(path, mimo_default_chat_template, strlen(mimo_default_chat_template));
  }
  if (st == MIMO_OK) {
    json_t *cfg = make_config(&ps, int4, asym, o->split_qkv, &ids, o->no_vision ? NULL : &vis);
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", o->out);
    if (json_dump_file(cfg, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0)
      st = mimo_errf(MIMO_E_IO, "%s: write failed", path);
    json_decref(cfg);
  }
  free(p.t);
  mimo_pool_free(p.pool);
  return st;
}
