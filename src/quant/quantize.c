/* `mimo quantize` (quant/quantize.h): load the source on the CPU engine, find AWQ's scales if asked, then write
 * every shard of the source again under its own name: the experts of the quantised layers as int4 triples
 * (computed while the shard is written, one expert in memory at a time), the smoothed norms and routers, every other
 * tensor byte for byte; config.json with a quantization_config; the other files copied. */
#include "quant/quantize.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backend/backend.h"
#include "core/fileio.h"
#include "core/log.h"
#include "core/num.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "quant/int4.h"
#include "quant/quant_internal.h"

/* One output tensor made from an expert projection: part 0 packed, 1 scale, 2 zero points, 3 dense (smooth only). */
typedef struct xjob {
  qctx *q;
  int L, e, p, part;
  int64_t shape[2];
} xjob;

/* The last expert quantised (the packed, scale and zero-point tensors of one projection are written in a row). */
static struct {
  int L, e, p;
  uint32_t *packed, *zero;
  uint16_t *scale;
} last = {-1, -1, -1, NULL, NULL, NULL};

static void last_free(void) {
  free(last.packed), free(last.zero), free(last.scale);
  last.packed = last.zero = NULL;
  last.scale = NULL;
  last.L = -1;
}

/* The projection's weights as they go in: AWQ's column scales (its input's) and, for up, its rows / down's. */
static float *expert_smoothed(qctx *q, int L, int e, int p) {
  const mimo_linear *W = &q->m->w.layers[L].experts[e * 3 + p];
  float *w = mimo_q_dense_f32(W);
  const qlayer *ql = &q->L[L];
  if (!w || !ql->s_gu)
    return w;
  const float *col = p < 2 ? ql->s_gu : ql->s_dn + (size_t)e * W->in;
  for (int r = 0; r < W->out; r++) {
    const float rs = p == 1 ? 1.f / ql->s_dn[(size_t)e * W->out + r] : 1.f;
    for (int c = 0; c < W->in; c++)
      w[(size_t)r * W->in + c] *= col[c] * rs;
  }
  return w;
}

static void put_dense(void *dst, mimo_dtype dt, const float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (dt == MIMO_DT_F32)
      ((float *)dst)[i] = x[i];
    else /* bf16 (f16 sources are refused) */
      ((uint16_t *)dst)[i] = mimo_f32_to_bf16(x[i]);
  }
}

static mimo_status xfill(void *ctx, void *dst, size_t bytes) {
  xjob *j = ctx;
  const mimo_linear *W = &j->q->m->w.layers[j->L].experts[j->e * 3 + j->p];
  const int rows = W->out, in = W->in, G = j->q->o->group, ng = in / G;
  if (j->part == 3) {
    float *w = expert_smoothed(j->q, j->L, j->e, j->p);
    if (!w)
      return mimo_errf(MIMO_E_NOMEM, "expert weights");
    put_dense(dst, MIMO_DT_F32, w, (size_t)rows * in);
    free(w);
    return MIMO_OK;
  }
  if (last.L != j->L || last.e != j->e || last.p != j->p) {
    last_free();
    float *w = expert_smoothed(j->q, j->L, j->e, j->p);
    last.packed = malloc((size_t)rows * (in / 8) * 4);
    last.scale = malloc((size_t)rows * ng * 2);
    last.zero = j->q->o->asym ? malloc((size_t)((rows + 7) / 8) * ng * 4) : NULL;
    if (!w || !last.packed || !last.scale || (j->q->o->asym && !last.zero)) {
      free(w);
      last_free();
      return mimo_errf(MIMO_E_NOMEM, "expert weights");
    }
    mimo_int4_quantize(w, rows, in, G, j->q->o->asym, last.packed, last.scale, last.zero);
    free(w);
    last.L = j->L, last.e = j->e, last.p = j->p;
  }
  memcpy(dst, j->part == 0 ? (void *)last.packed : j->part == 1 ? (void *)last.scale : (void *)last.zero, bytes);
  return MIMO_OK;
}

/* Layer L's smoothed norm (/ s) or router (columns * s), n values, in dtype dt. */
static void *smoothed_vec(const qctx *q, int L, bool router, mimo_dtype dt) {
  const mimo_layer_weights *lw = &q->m->w.layers[L];
  const float *s = q->L[L].s_gu;
  const int H = q->m->cfg.hidden_size;
  const size_t n = router ? (size_t)lw->router.out * H : (size_t)H;
  float *x = router ? mimo_q_dense_f32(&lw->router) : malloc(n * sizeof *x);
  void *out = malloc(n * (dt == MIMO_DT_F32 ? 4 : 2));
  if (!x || !out) {
    free(x), free(out);
    return NULL;
  }
  for (size_t i = 0; i < n; i++)
    x[i] = router ? x[i] * s[i % H] : mimo_vec_get(&lw->post_norm, (int)i) / s[i];
  put_dense(out, dt, x, n);
  free(x);
  return out;
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

static mimo_status copy_file(const char *from, const char *to) {
  char *buf = NULL;
  size_t n = 0;
  mimo_status st = mimo_read_file(from, &buf, &n, (size_t)1 << 34);
  if (st == MIMO_OK)
    st = mimo_write_file(to, buf, n);
  free(buf);
  return st;
}

static mimo_status write_config(qctx *q, const char *dst) {
  const mimo_quant_opts *o = q->o;
  char path[4096];
  snprintf(path, sizeof path, "%s/config.json", o->src);
  json_error_t err;
  json_t *c = json_load_file(path, 0, &err);
  if (!c)
    return mimo_errf(MIMO_E_FORMAT, "%s:%d: %s", path, err.line, err.text);
  if (!o->smooth_only) {
    int ign[MIMO_MAX_LAYERS], n = 0; /* MoE layers left dense */
    for (int L = 0; L < q->m->cfg.num_hidden_layers; L++)
      if (q->m->cfg.layer_moe[L] && !q->L[L].quant)
        ign[n++] = L;
    json_object_set_new(c, "quantization_config",
                        mimo_ckpt_int4_config(o->group, o->asym, o->awq ? "awq (mimo quantize)" : "minmax (mimo quantize)",
                                              ign, n));
  }
  snprintf(path, sizeof path, "%s/config.json", dst);
  const int bad = json_dump_file(c, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  json_decref(c);
  return bad ? mimo_errf(MIMO_E_IO, "%s: write failed", path) : MIMO_OK;
}

/* Every shard of the source again, under its name. */
static mimo_status write_shards(qctx *q) {
  const mimo_ckpt *ck = &q->m->ck;
  json_t *wm = json_object();
  uint64_t total = 0;
  mimo_status st = MIMO_OK;
  for (int f = 0; f < ck->n_files && st == MIMO_OK; f++) {
    const mimo_st_file *sf = &ck->files[f];
    mimo_st_writer *w = NULL;
    st = mimo_st_writer_init(&w);
    void **owned = calloc(sf->n_tensors * 4 + 1, sizeof *owned);
    size_t n_owned = 0;
    if (!owned && st == MIMO_OK)
      st = mimo_errf(MIMO_E_NOMEM, "shard %s", sf->path);
    for (size_t i = 0; st == MIMO_OK && i < sf->n_tensors; i++) {
      const mimo_st_tensor *t = &sf->tensors[i];
      int L = -1, e = -1, pos = 0;
      char proj[8] = {0};
      const qlayer *ql = NULL;
      if (sscanf(t->name, "model.layers.%d.mlp.experts.%d.%7[a-z]_proj.weight%n", &L, &e, proj, &pos) == 3 &&
          !t->name[pos] && L >= 0 && L < q->m->cfg.num_hidden_layers && q->L[L].quant) {
        const int p = !strcmp(proj, "gate") ? 0 : !strcmp(proj, "up") ? 1 : 2;
        const mimo_linear *W = &q->m->w.layers[L].experts[e * 3 + p];
        char name[512];
        const int nparts = q->o->smooth_only ? 1 : q->o->asym ? 3 : 2;
        for (int k = 0; k < nparts && st == MIMO_OK; k++) {
          xjob *j = calloc(1, sizeof *j);
          if (!j) {
            st = mimo_errf(MIMO_E_NOMEM, "shard %s", sf->path);
            break;
          }
          owned[n_owned++] = j;
          *j = (xjob){q, L, e, p, q->o->smooth_only ? 3 : k, {W->out, W->in}};
          const char *suffix = j->part == 3 ? "weight" : k == 0 ? "weight_packed" : k == 1 ? "weight_scale" : "weight_zero_point";
          mimo_dtype dt = j->part == 3 ? MIMO_DT_F32 : k == 1 ? MIMO_DT_BF16 : MIMO_DT_I32;
          if (j->part == 3)
            ; /* dense: [out][in] */
          else if (k == 0)
            j->shape[1] = W->in / 8;
          else if (k == 1)
            j->shape[1] = W->in / q->o->group;
          else if (k == 2)
            j->shape[0] = (W->out + 7) / 8, j->shape[1] = W->in / q->o->group;
          snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s_proj.%s", L, e, proj, suffix);
          st = mimo_st_writer_add_fill(w, name, dt, 2, j->shape, xfill, j);
          json_object_set_new(wm, name, json_string(base_name(sf->path)));
        }
        if (st == MIMO_OK && !q->o->smooth_only) {
          int64_t *shp = malloc(2 * sizeof *shp), one = 2;
          if (!shp) {
            st = mimo_errf(MIMO_E_NOMEM, "shard %s", sf->path);
            break;
          }
          shp[0] = W->out, shp[1] = W->in;
          owned[n_owned++] = shp;
          snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s_proj.weight_shape", L, e, proj);
          st = mimo_st_writer_add(w, name, MIMO_DT_I64, 1, &one, shp);
          json_object_set_new(wm, name, json_string(base_name(sf->path)));
        }
        continue;
      }
      const void *data = t->data;
      mimo_dtype dt = t->dtype;
      int norm = 0;
      if ((sscanf(t->name, "model.layers.%d.post_attention_layernorm.weight%n", &L, &pos) == 1 && !t->name[pos] &&
           (norm = 1)) ||
          (sscanf(t->name, "model.layers.%d.mlp.gate.weight%n", &L, &pos) == 1 && !t->name[pos]))
        if (L >= 0 && L < q->m->cfg.num_hidden_layers && (ql = &q->L[L])->s_gu) {
          /* --smooth-only writes what it smooths in float32, so that only the folding's own rounding differs */
          dt = q->o->smooth_only ? MIMO_DT_F32 : t->dtype;
          void *sm = smoothed_vec(q, L, !norm, dt);
          if (!sm) {
            st = mimo_errf(MIMO_E_NOMEM, "shard %s", sf->path);
            break;
          }
          owned[n_owned++] = sm;
          data = sm;
        }
      st = mimo_st_writer_add(w, t->name, dt, t->ndim, t->shape, data);
      json_object_set_new(wm, t->name, json_string(base_name(sf->path)));
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", q->o->dst, base_name(sf->path));
    if (st == MIMO_OK) {
      total += mimo_st_writer_bytes(w);
      st = mimo_st_writer_save(w, path);
      mimo_info("quantize: wrote %s", path);
    }
    mimo_st_writer_free(w);
    for (size_t i = 0; i < n_owned; i++)
      free(owned[i]);
    free(owned);
    last_free();
  }
  if (st == MIMO_OK)
    return mimo_ckpt_write_index(q->o->dst, wm, total);
  json_decref(wm);
  return st;
}

/* The source directory's other files (tokenizer, chat template, generation config, ...). */
static mimo_status copy_others(const mimo_quant_opts *o) {
  DIR *d = opendir(o->src);
  if (!d)
    return mimo_errf(MIMO_E_IO, "%s: cannot list", o->src);
  mimo_status st = MIMO_OK;
  for (struct dirent *de; st == MIMO_OK && (de = readdir(d));) {
    const char *n = de->d_name;
    const size_t len = strlen(n);
    if (n[0] == '.' || !strcmp(n, "config.json") || !strcmp(n, "model.safetensors.index.json") ||
        (len > 12 && !strcmp(n + len - 12, ".safetensors")))
      continue;
    char from[4096], to[4096];
    snprintf(from, sizeof from, "%s/%s", o->src, n);
    snprintf(to, sizeof to, "%s/%s", o->dst, n);
    struct stat sb;
    if (stat(from, &sb) == 0 && S_ISREG(sb.st_mode))
      st = copy_file(from, to);
  }
  closedir(d);
  return st;
}

/* After a failure: the files written into dst (which was empty or absent), and dst if this run made it. */
static void remove_output(const char *dst, bool made) {
  DIR *d = opendir(dst);
  if (!d)
    return;
  for (struct dirent *de; (de = readdir(d));) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dst, de->d_name);
    remove(path);
  }
  closedir(d);
  if (made)
    remove(dst);
}

static mimo_status check_opts(const mimo_quant_opts *o, const mimo_model *m, qlayer *L) {
  const mimo_config *c = &m->cfg;
  const int H = c->hidden_size, I = c->moe_intermediate_size;
  if (o->group < 8 || o->group % 8 || H % o->group || I % o->group)
    return mimo_errf(MIMO_E_INVALID, "--group-size %d must be a multiple of 8 dividing hidden_size %d and "
                     "moe_intermediate_size %d", o->group, H, I);
  int n = 0;
  for (int l = 0; l < c->num_hidden_layers; l++) {
    const mimo_layer_weights *lw = &m->w.layers[l];
    bool ignored = false;
    for (int i = 0; i < o->n_ignore; i++)
      ignored |= o->ignore[i] == l;
    if (!lw->moe || ignored)
      continue;
    if (lw->expert_fmt == MIMO_WF_INT4)
      return mimo_errf(MIMO_E_INVALID, "%s: layer %d's experts are already int4 "
                       "(model.layers.%d.mlp.experts.0.gate_proj.weight_packed): quantize a checkpoint whose experts are "
                       "dense (bf16), or leave the layer out with --ignore-layers", o->src, l, l);
    if (lw->expert_dt != MIMO_DT_BF16 && lw->expert_dt != MIMO_DT_F32)
      return mimo_errf(MIMO_E_INVALID, "%s: layer %d's experts are neither bf16 nor f32", o->src, l);
    if (o->awq && (!lw->post_norm.p || (lw->post_norm.dt != MIMO_DT_BF16 && lw->post_norm.dt != MIMO_DT_F32) ||
                   (lw->router.dt != MIMO_DT_BF16 && lw->router.dt != MIMO_DT_F32)))
      return mimo_errf(MIMO_E_INVALID, "%s: layer %d's post_attention_layernorm or router is neither bf16 nor f32",
                       o->src, l);
    L[l].quant = true;
    n++;
  }
  if (!n)
    return mimo_errf(MIMO_E_INVALID, "%s: no MoE layer with dense experts to quantize", o->src);
  if (o->awq && (o->n_calib < 1 || o->calib_ctx < 1))
    return mimo_errf(MIMO_E_INVALID, "awq needs calibration tokens (--calib-file or --calib-tokens)");
  for (int i = 0; i < o->n_calib; i++)
    if (o->calib[i] < 0 || o->calib[i] >= c->vocab_size)
      return mimo_errf(MIMO_E_INVALID, "calibration token %d at position %d is outside the vocabulary (%d)",
                       o->calib[i], i, c->vocab_size);
  return MIMO_OK;
}

mimo_status mimo_quantize(const mimo_quant_opts *o) {
  char rs[4096], rd[4096];
  if (realpath(o->src, rs) && realpath(o->dst, rd) && !strcmp(rs, rd))
    return mimo_errf(MIMO_E_INVALID, "--out %s is the source directory", o->dst);
  DIR *d = opendir(o->dst);
  const bool made = !d;
  if (d) { /* never over another checkpoint */
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)))
      n += de->d_name[0] != '.';
    closedir(d);
    if (n)
      return mimo_errf(MIMO_E_INVALID, "--out %s exists and is not empty", o->dst);
  }
  mimo_backend *be = NULL;
  mimo_model *m = NULL;
  MIMO_TRY(mimo_backend_cpu_init(&be, o->threads));
  mimo_status st = mimo_model_load(o->src, be, &m);
  if (st != MIMO_OK) {
    be->free(be);
    return st;
  }
  m->own_be = true;
  qctx q = {.o = o, .m = m};
  q.L = calloc((size_t)m->cfg.num_hidden_layers, sizeof *q.L);
  if (!q.L)
    st = mimo_errf(MIMO_E_NOMEM, "quantize");
  if (st == MIMO_OK)
    st = check_opts(o, m, q.L);
  if (st == MIMO_OK)
    st = mimo_pool_init(&q.pool, o->threads);
  if (st == MIMO_OK && o->awq)
    st = mimo_awq_scales(&q);
  bool writing = false;
  if (st == MIMO_OK)
    writing = (st = mimo_mkdir_p(o->dst)) == MIMO_OK;
  if (st == MIMO_OK)
    st = write_shards(&q);
  if (st == MIMO_OK)
    st = write_config(&q, o->dst);
  if (st == MIMO_OK)
    st = copy_others(o);
  if (st != MIMO_OK && writing) /* no half-written checkpoint left to load */
    remove_output(o->dst, made);
  for (int L = 0; q.L && L < m->cfg.num_hidden_layers; L++) {
    free(q.L[L].s_gu);
    free(q.L[L].s_dn);
  }
  free(q.L);
  if (q.pool)
    mimo_pool_free(q.pool);
  mimo_model_free(m); /* frees its backend */
  return st;
}
