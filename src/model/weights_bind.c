/* Binding checkpoint tensors to weight views, with the checks every bound tensor gets (spec §8): present,
 * aligned, the shape the config implies, a float dtype. Shared by the text model and the vision tower. */
#include "model/weights_bind.h"

#include <stdio.h>
#include <string.h>

const char *mimo_bind_shape_str(const mimo_st_tensor *t, char *buf, size_t n) {
  size_t o = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < t->ndim && o < n; i++)
    o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
  if (o < n)
    snprintf(buf + o, n - o, "]");
  return buf;
}

mimo_status mimo_bind_get(mimo_binder *b, const char *name, const mimo_st_tensor **out) {
  *out = mimo_ckpt_find(b->ck, name);
  if (!*out)
    return mimo_errf(MIMO_E_FORMAT, "%s: missing tensor '%s'", b->ck->dir, name);
  /* Views are read as typed arrays: the extent must be aligned to its element. */
  if ((uintptr_t)(*out)->data % mimo_dtype_size((*out)->dtype) != 0)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' is not aligned to its %zu-byte elements", b->ck->dir, name,
                     mimo_dtype_size((*out)->dtype));
  *b->bytes += (*out)->end - (*out)->begin;
  return MIMO_OK;
}

mimo_status mimo_bind_expect_shape(mimo_binder *b, const mimo_st_tensor *t, int ndim, int64_t d0, int64_t d1) {
  if (t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1))
    return MIMO_OK;
  char have[128];
  if (ndim == 1)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has shape %s, config needs [%lld]", b->ck->dir, t->name,
                     mimo_bind_shape_str(t, have, sizeof have), (long long)d0);
  return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has shape %s, config needs [%lld, %lld]", b->ck->dir, t->name,
                   mimo_bind_shape_str(t, have, sizeof have), (long long)d0, (long long)d1);
}

bool mimo_bind_is_float(mimo_dtype d) { return d == MIMO_DT_F32 || d == MIMO_DT_BF16 || d == MIMO_DT_F16; }

mimo_status mimo_bind_vec(mimo_binder *b, const char *name, int n, mimo_vec *v) {
  const mimo_st_tensor *t;
  MIMO_TRY(mimo_bind_get(b, name, &t));
  MIMO_TRY(mimo_bind_expect_shape(b, t, 1, n, 0));
  if (!mimo_bind_is_float(t->dtype))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has dtype %s, expected a float type", b->ck->dir, name,
                     mimo_dtype_name(t->dtype));
  v->n = n;
  v->dt = t->dtype;
  v->p = t->data;
  return MIMO_OK;
}

mimo_status mimo_bind_dense(mimo_binder *b, const char *name, int out, int in, mimo_linear *l) {
  const mimo_st_tensor *t;
  MIMO_TRY(mimo_bind_get(b, name, &t));
  MIMO_TRY(mimo_bind_expect_shape(b, t, 2, out, in));
  if (!mimo_bind_is_float(t->dtype))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' has dtype %s, expected F32, BF16 or F16", b->ck->dir, name,
                     mimo_dtype_name(t->dtype));
  memset(l, 0, sizeof *l);
  l->out = out;
  l->in = in;
  l->fmt = MIMO_WF_DENSE;
  l->dt = t->dtype;
  l->w = t->data;
  return MIMO_OK;
}
