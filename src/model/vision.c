/* The vision tower's forward pass over backend ops (spec §4.4):
 *
 *   x = patches · W_peᵀ
 *   per block: (column-window blocks see the merge units in column-major order, the others row-major)
 *              a = RMSNorm(x); q,k,v = a·Wqkvᵀ + b; 2-D RoPE on q,k;
 *              o = Attention(q,k,v) per image, full or |i - j| <= window with the sink;  x += o·Wpᵀ + bp
 *              a = RMSNorm(x); x += (SiLU(a·Gᵀ + g) ⊙ (a·Uᵀ + u))·Dᵀ + d
 *   out = GELU(Norm(x) viewed [N/merge², merge²·hidden] · W1ᵀ) · W2ᵀ
 */
#include "model/vision.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "model/vision_cache.h"
#include "model/vision_preproc.h"

/* Row-major and column-major orders of every image's merge units, as token permutations of the whole call:
 * col[r] = the row-major index of the token at position r of the column-major order. */
typedef struct {
  int N;            /* tokens */
  int *seq_start;   /* [n + 1] */
  int *hpos, *wpos; /* row-major order */
  int *col_h, *col_w;
  int *to_col, *to_row;
} vit_layout;

static void layout_free(vit_layout *l) {
  free(l->seq_start);
  free(l->hpos);
  free(l->wpos);
  free(l->col_h);
  free(l->col_w);
  free(l->to_col);
  free(l->to_row);
}

static mimo_status layout_init(const mimo_vision_config *vc, const mimo_vision_item *it, int n, vit_layout *l) {
  memset(l, 0, sizeof *l);
  const int m = vc->merge;
  for (int i = 0; i < n; i++) {
    if (it[i].grid_h <= 0 || it[i].grid_w <= 0 || it[i].grid_h % m || it[i].grid_w % m)
      return mimo_errf(MIMO_E_INVALID, "vision: image %d's grid %dx%d is not a multiple of the merge size %d", i,
                       it[i].grid_h, it[i].grid_w, m);
    l->N += it[i].grid_h * it[i].grid_w;
  }
  const size_t sz = (size_t)l->N * sizeof(int);
  l->seq_start = malloc((size_t)(n + 1) * sizeof(int));
  l->hpos = malloc(sz), l->wpos = malloc(sz), l->col_h = malloc(sz), l->col_w = malloc(sz);
  l->to_col = malloc(sz), l->to_row = malloc(sz);
  if (!l->seq_start || !l->hpos || !l->wpos || !l->col_h || !l->col_w || !l->to_col || !l->to_row) {
    layout_free(l);
    return mimo_errf(MIMO_E_NOMEM, "vision: layout of %d tokens", l->N);
  }
  int base = 0;
  for (int i = 0; i < n; i++) {
    const int bh = it[i].grid_h / m, bw = it[i].grid_w / m, unit = m * m;
    l->seq_start[i] = base;
    /* row-major: units (bh, bw) in raster order, tokens (mh, mw) inside */
    for (int uh = 0; uh < bh; uh++)
      for (int uw = 0; uw < bw; uw++)
        for (int t = 0; t < unit; t++) {
          const int r = base + (uh * bw + uw) * unit + t;
          l->hpos[r] = uh * m + t / m;
          l->wpos[r] = uw * m + t % m;
        }
    /* column-major: the same units listed (bw, bh) */
    for (int uw = 0; uw < bw; uw++)
      for (int uh = 0; uh < bh; uh++)
        for (int t = 0; t < unit; t++) {
          const int c = base + (uw * bh + uh) * unit + t, r = base + (uh * bw + uw) * unit + t;
          l->to_col[c] = r;
          l->to_row[r] = c;
          l->col_h[c] = l->hpos[r];
          l->col_w[c] = l->wpos[r];
        }
    base += it[i].grid_h * it[i].grid_w;
  }
  l->seq_start[n] = base;
  return MIMO_OK;
}

/* Step buffers on the backend. */
typedef struct {
  float *x, *a, *qkv, *q, *k, *v, *o, *g, *u, *tmp;
} vit_scratch;

static void scratch_free(mimo_backend *be, vit_scratch *s) {
  float **p = (float **)s;
  for (size_t i = 0; i < sizeof *s / sizeof(float *); i++)
    if (p[i])
      be->release(be, p[i]);
}

static mimo_status scratch_init(mimo_backend *be, const mimo_vision_config *vc, int N, vit_scratch *s) {
  memset(s, 0, sizeof *s);
  const size_t H = (size_t)vc->hidden, q = (size_t)vc->n_heads * vc->head_dim, kv = (size_t)vc->n_kv_heads * vc->head_dim;
  const size_t cat = H * vc->merge * vc->merge;
  size_t need[10] = {N * H, N * H, N * (q + 2 * kv), N * q, N * kv, N * kv, N * q, N * (size_t)vc->inter,
                     N * (size_t)vc->inter, N * H};
  /* the merger's [N/merge², cat] rows fit in N·H; its output [N/merge², out_hidden] in g when out_hidden·/merge² */
  const size_t mo = (size_t)N / (vc->merge * vc->merge) * (cat > (size_t)vc->out_hidden ? cat : (size_t)vc->out_hidden);
  if (need[7] < mo)
    need[7] = need[8] = mo;
  float **p = (float **)s;
  for (int i = 0; i < 10; i++)
    if (!(p[i] = be->alloc(be, need[i]))) {
      scratch_free(be, s);
      return mimo_errf(MIMO_E_NOMEM, "vision: step buffers for %d patches", N);
    }
  return MIMO_OK;
}

static void reorder(mimo_backend *be, vit_scratch *s, const int *idx, int N, int H) {
  be->gather_rows(be, s->tmp, s->x, idx, N, H);
  float *t = s->x;
  s->x = s->tmp;
  s->tmp = t;
}

static void block(mimo_backend *be, const mimo_vision_config *vc, const mimo_vit_block *w, int i,
                  const vit_layout *l, bool col, vit_scratch *s, int n_seq) {
  const int N = l->N, H = vc->hidden, D = vc->head_dim;
  const int q = vc->n_heads * D, kv = vc->n_kv_heads * D;
  const float eps = (float)vc->eps;
  be->rmsnorm(be, s->a, s->x, &w->norm1, N, H, eps);
  be->linear(be, s->qkv, s->a, N, &w->qkv);
  be->bias_add(be, s->qkv, &w->qkv_bias, N, q + 2 * kv);
  be->copy2d(be, s->q, q, s->qkv, q + 2 * kv, N, q);
  be->copy2d(be, s->k, kv, s->qkv + q, q + 2 * kv, N, kv);
  be->copy2d(be, s->v, kv, s->qkv + q + kv, q + 2 * kv, N, kv);
  const int *hp = col ? l->col_h : l->hpos, *wp = col ? l->col_w : l->wpos;
  be->rope_2d(be, s->q, N, vc->n_heads, D, q, hp, wp, vc->rope_theta);
  be->rope_2d(be, s->k, N, vc->n_kv_heads, D, kv, hp, wp, vc->rope_theta);
  const bool windowed = vc->attn[i] != MIMO_VIT_FULL;
  mimo_vit_attn_args a = {
      .q = s->q, .k = s->k, .v = s->v, .out = s->o, .T = N, .n_heads = vc->n_heads, .n_kv = vc->n_kv_heads,
      .head_dim = D, .n_seq = n_seq, .seq_start = l->seq_start, .window = windowed ? vc->window : 0,
      .scale = 1.0f / sqrtf((float)D), .sink = windowed && w->sinks.n ? &w->sinks : NULL,
      .sink_key0 = vc->sink_mode == MIMO_VIT_SINK_KEY0};
  be->vit_attention(be, &a);
  be->linear(be, s->a, s->o, N, &w->proj);
  be->bias_add(be, s->a, &w->proj_bias, N, H);
  be->add(be, s->x, s->a, (long)N * H);
  be->rmsnorm(be, s->a, s->x, &w->norm2, N, H, eps);
  be->linear(be, s->g, s->a, N, &w->gate);
  be->bias_add(be, s->g, &w->gate_bias, N, vc->inter);
  be->linear(be, s->u, s->a, N, &w->up);
  be->bias_add(be, s->u, &w->up_bias, N, vc->inter);
  be->swiglu(be, s->g, s->g, s->u, (long)N * vc->inter);
  be->linear(be, s->a, s->g, N, &w->down);
  be->bias_add(be, s->a, &w->down_bias, N, H);
  be->add(be, s->x, s->a, (long)N * H);
}

mimo_status mimo_vision_forward(mimo_backend *be, const mimo_vision_config *vc, const mimo_vision_weights *w,
                                const mimo_vision_item *items, int n, float *out) {
  if (!be->vit_attention || !be->rope_2d || !be->gather_rows || !be->bias_add || !be->gelu || !be->layernorm)
    return mimo_errf(MIMO_E_INVALID, "vision: the %s backend has no vision tower ops", be->name);
  if (!w->present)
    return mimo_errf(MIMO_E_INVALID, "vision: the checkpoint has no vision tower");
  if (n <= 0)
    return MIMO_OK;
  vit_layout l;
  MIMO_TRY(layout_init(vc, items, n, &l));
  const int N = l.N, H = vc->hidden, P = w->patch_embed.in, m2 = vc->merge * vc->merge;
  vit_scratch s;
  mimo_status st = scratch_init(be, vc, N, &s);
  float *patches = st == MIMO_OK ? be->alloc(be, (size_t)N * P) : NULL;
  if (st == MIMO_OK && !patches)
    st = mimo_errf(MIMO_E_NOMEM, "vision: %d patch rows", N);
  for (int i = 0, r = 0; st == MIMO_OK && i < n; r += items[i].grid_h * items[i].grid_w, i++) {
    st = mimo_backend_to(be, patches + (size_t)r * P, items[i].patches, (size_t)items[i].grid_h * items[i].grid_w * P);
  }
  if (st != MIMO_OK)
    goto done;
  be->linear(be, s.x, patches, N, &w->patch_embed);
  bool col = false; /* tokens in column-major unit order now */
  for (int i = 0; i < vc->depth; i++) {
    const bool want_col = vc->attn[i] == MIMO_VIT_COL;
    if (want_col != col)
      reorder(be, &s, want_col ? l.to_col : l.to_row, N, H);
    col = want_col;
    block(be, vc, &w->blocks[i], i, &l, col, &s, n);
  }
  if (col)
    reorder(be, &s, l.to_row, N, H);
  /* merger: merge² consecutive tokens (one unit, (mh, mw) order) become one row */
  if (vc->merger_norm == MIMO_VIT_NORM_RMS)
    be->rmsnorm(be, s.a, s.x, &w->merger_norm, N, H, (float)vc->eps);
  else
    be->layernorm(be, s.a, s.x, &w->merger_norm, N, H, (float)vc->eps);
  be->linear(be, s.g, s.a, N / m2, &w->merger_fc1);
  be->gelu(be, s.g, (long)(N / m2) * w->merger_fc1.out);
  be->linear(be, s.u, s.g, N / m2, &w->merger_fc2);
  st = mimo_backend_from(be, out, s.u, (size_t)(N / m2) * vc->out_hidden);
done:
  if (patches)
    be->release(be, patches);
  scratch_free(be, &s);
  layout_free(&l);
  return st;
}

int mimo_embed_runs_slice(const mimo_embed_run *runs, int n, int from, int count, int at, int hidden,
                          mimo_embed_run *out) {
  int k = 0;
  for (int i = 0; i < n; i++) {
    const mimo_embed_run *x = &runs[i];
    const int lo = x->at > from ? x->at : from, hi = x->at + x->n < from + count ? x->at + x->n : from + count;
    if (lo < hi)
      out[k++] = (mimo_embed_run){.at = at + lo - from, .n = hi - lo, .rows = x->rows + (size_t)(lo - x->at) * hidden};
  }
  return k;
}

mimo_status mimo_vision_expand(const mimo_vision_config *vc, const int *ids, int n_ids, const int *tokens,
                               int n_images, int **out, int *n_out, mimo_embed_run *runs) {
  *out = NULL;
  *n_out = 0;
  long total = n_ids;
  int found = 0;
  for (int i = 0; i < n_ids; i++)
    if (ids[i] == vc->image_token_id) {
      if (found == n_images)
        return mimo_errf(MIMO_E_INVALID, "the prompt has more image placeholders (token %d) than the %d image%s given",
                         vc->image_token_id, n_images, n_images == 1 ? "" : "s");
      total += tokens[found++] - 1;
    }
  if (found != n_images)
    return mimo_errf(MIMO_E_INVALID, "%d image%s given but the prompt has %d placeholder%s (token %d)", n_images,
                     n_images == 1 ? "" : "s", found, found == 1 ? "" : "s", vc->image_token_id);
  if (total > (1L << 30))
    return mimo_errf(MIMO_E_TOO_LONG, "the prompt would be %ld tokens with its images", total);
  int *o = malloc((size_t)(total ? total : 1) * sizeof *o);
  if (!o)
    return mimo_errf(MIMO_E_NOMEM, "prompt of %ld tokens", total);
  int k = 0, img = 0;
  for (int i = 0; i < n_ids; i++) {
    if (ids[i] != vc->image_token_id) {
      o[k++] = ids[i];
      continue;
    }
    runs[img] = (mimo_embed_run){.at = k, .n = tokens[img], .rows = NULL};
    for (int j = 0; j < tokens[img]; j++)
      o[k++] = vc->image_token_id;
    img++;
  }
  *out = o;
  *n_out = k;
  return MIMO_OK;
}

struct mimo_vision {
  mimo_vision_config cfg;
  const mimo_vision_weights *w;
  mimo_vision_weights own; /* a device backend's copy of the views (their ->dev set by its uploads) */
  mimo_backend *be;
  pthread_mutex_t mu; /* one encode at a time on the backend */
  mimo_vcache *cache; /* NULL: none */
};

/* Every tensor of the tower to be (a GPU backend copies them into its memory). */
static mimo_status upload(mimo_backend *be, mimo_vision_weights *w, int depth) {
  MIMO_TRY(mimo_backend_upload_linear(be, &w->patch_embed));
  for (int i = 0; i < depth; i++) {
    mimo_vit_block *b = &w->blocks[i];
    mimo_linear *lins[] = {&b->qkv, &b->proj, &b->gate, &b->up, &b->down};
    mimo_vec *vecs[] = {&b->norm1, &b->norm2, &b->qkv_bias, &b->proj_bias, &b->sinks, &b->gate_bias, &b->up_bias,
                        &b->down_bias};
    for (size_t k = 0; k < sizeof lins / sizeof *lins; k++)
      MIMO_TRY(mimo_backend_upload_linear(be, lins[k]));
    for (size_t k = 0; k < sizeof vecs / sizeof *vecs; k++)
      MIMO_TRY(mimo_backend_upload_vec(be, vecs[k]));
  }
  MIMO_TRY(mimo_backend_upload_vec(be, &w->merger_norm));
  MIMO_TRY(mimo_backend_upload_linear(be, &w->merger_fc1));
  return mimo_backend_upload_linear(be, &w->merger_fc2);
}

mimo_status mimo_vision_open(const mimo_config *cfg, const mimo_vision_weights *w, mimo_backend *be, int threads,
                             mimo_vision **out) {
  *out = NULL;
  mimo_vision *v = NULL;
  mimo_status st = MIMO_OK;
  if (!cfg->vision.present || !w->present)
    st = mimo_errf(MIMO_E_INVALID, "the model has no vision tower (config.json has no vision_config)");
  else if (!(v = calloc(1, sizeof *v)))
    st = mimo_errf(MIMO_E_NOMEM, "vision encoder");
  if (st != MIMO_OK) {
    if (be)
      be->free(be);
    return st;
  }
  v->cfg = cfg->vision;
  v->w = w;
  v->be = be;
  if (!be) {
    st = mimo_backend_cpu_init(&v->be, threads);
  } else { /* the views again, for this backend's copies */
    v->own = *w;
    v->own.blocks = malloc((size_t)v->cfg.depth * sizeof *v->own.blocks);
    if (!v->own.blocks)
      st = mimo_errf(MIMO_E_NOMEM, "vision weights");
    else
      memcpy(v->own.blocks, w->blocks, (size_t)v->cfg.depth * sizeof *v->own.blocks);
    if (st == MIMO_OK && be->bind_thread)
      st = be->bind_thread(be);
    if (st == MIMO_OK)
      st = upload(be, &v->own, v->cfg.depth);
    v->w = &v->own;
  }
  pthread_mutex_init(&v->mu, NULL);
  if (st != MIMO_OK) {
    mimo_vision_close(v);
    return st;
  }
  *out = v;
  return MIMO_OK;
}

void mimo_vision_close(mimo_vision *v) {
  if (!v)
    return;
  if (v->be)
    v->be->free(v->be);
  mimo_vcache_free(v->cache);
  free(v->own.blocks);
  pthread_mutex_destroy(&v->mu);
  free(v);
}

const char *mimo_vision_backend_name(const mimo_vision *v) { return v->be->name; }

mimo_status mimo_vision_set_cache(mimo_vision *v, size_t bytes) {
  mimo_vcache_free(v->cache);
  v->cache = mimo_vcache_new(bytes);
  return v->cache || !bytes ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "vision cache");
}

void mimo_vision_cache_stats(mimo_vision *v, long *hits, long *misses, size_t *bytes) {
  mimo_vcache_stats(v->cache, hits, misses, bytes);
}

mimo_status mimo_vision_encode(mimo_vision *v, const mimo_vision_item *items, int n, float *out) {
  pthread_mutex_lock(&v->mu);
  mimo_status st = v->be->bind_thread ? v->be->bind_thread(v->be) : MIMO_OK;
  if (st == MIMO_OK)
    st = mimo_vision_forward(v->be, &v->cfg, v->w, items, n, out);
  pthread_mutex_unlock(&v->mu);
  return st;
}

const mimo_vision_config *mimo_vision_cfg(const mimo_vision *v) { return &v->cfg; }

mimo_status mimo_vision_encode_image(mimo_vision *v, const mimo_image *im, float **embeds, int *n_tokens) {
  *embeds = NULL;
  *n_tokens = 0;
  if (mimo_vcache_get(v->cache, im, v->cfg.out_hidden, embeds, n_tokens))
    return MIMO_OK;
  mimo_vision_item it = {0};
  float *patches = NULL;
  MIMO_TRY(mimo_vision_patchify(&v->cfg, im, &patches, &it.grid_h, &it.grid_w));
  it.patches = patches;
  const int n = mimo_vision_tokens(&v->cfg, it.grid_h, it.grid_w);
  float *e = malloc((size_t)n * v->cfg.out_hidden * sizeof(float));
  mimo_status st = e ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "vision: %d embeddings", n);
  if (st == MIMO_OK)
    st = mimo_vision_encode(v, &it, 1, e);
  free(patches);
  if (st != MIMO_OK) {
    free(e);
    return st;
  }
  mimo_vcache_put(v->cache, im, v->cfg.out_hidden, e, n);
  *embeds = e;
  *n_tokens = n;
  return MIMO_OK;
}
