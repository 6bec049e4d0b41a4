/* config.json field readers shared by the config files: each names the file and field in its message. */
#ifndef MIMO_IO_CONFIG_INTERNAL_H
#define MIMO_IO_CONFIG_INTERNAL_H
#include <jansson.h>
#include <stdbool.h>

#include "core/status.h"

typedef struct {
  json_t *root; /* the object the keys are looked up in */
  const char *path;
} mimo_cfg_reader;

/* Absent or null: dflt, or an error when required. */
mimo_status mimo_cfg_int(mimo_cfg_reader *r, const char *key, long lo, long hi, int required, long dflt, long *out);
mimo_status mimo_cfg_num(mimo_cfg_reader *r, const char *key, int required, double dflt, double *out);
mimo_status mimo_cfg_bool(mimo_cfg_reader *r, const char *key, bool dflt, bool *out);
/* A string field that, when present, must be one of allowed (NULL-terminated). */
mimo_status mimo_cfg_expect_str(mimo_cfg_reader *r, const char *key, const char *const *allowed, const char *what);
#endif
