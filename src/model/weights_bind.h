/* Binding checkpoint tensors to weight views (model/weights_bind.c). */
#ifndef MIMO_MODEL_WEIGHTS_BIND_H
#define MIMO_MODEL_WEIGHTS_BIND_H
#include <stdbool.h>

#include "backend/backend.h"
#include "io/checkpoint.h"
#include "io/config.h"

typedef struct mimo_binder {
  const mimo_config *cfg;
  const mimo_ckpt *ck;
  uint64_t *bytes; /* grows by each bound tensor's extent */
} mimo_binder;

const char *mimo_bind_shape_str(const mimo_st_tensor *t, char *buf, size_t n);
/* The tensor, present and aligned to its element size. */
mimo_status mimo_bind_get(mimo_binder *b, const char *name, const mimo_st_tensor **out);
/* ndim 1: [d0]; ndim 2: [d0, d1]. */
mimo_status mimo_bind_expect_shape(mimo_binder *b, const mimo_st_tensor *t, int ndim, int64_t d0, int64_t d1);
bool mimo_bind_is_float(mimo_dtype d);
mimo_status mimo_bind_vec(mimo_binder *b, const char *name, int n, mimo_vec *v);
mimo_status mimo_bind_dense(mimo_binder *b, const char *name, int out, int in, mimo_linear *l);
#endif
