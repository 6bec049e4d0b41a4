#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct {
  const char *name;
  size_t size;
} dtypes[MIMO_DT_COUNT] = {
    [MIMO_DT_F32] = {"F32", 4},     [MIMO_DT_F16] = {"F16", 2},         [MIMO_DT_BF16] = {"BF16", 2},
    [MIMO_DT_F64] = {"F64", 8},     [MIMO_DT_I64] = {"I64", 8},         [MIMO_DT_I32] = {"I32", 4},
    [MIMO_DT_I16] = {"I16", 2},     [MIMO_DT_I8] = {"I8", 1},           [MIMO_DT_U64] = {"U64", 8},
    [MIMO_DT_U32] = {"U32", 4},     [MIMO_DT_U16] = {"U16", 2},         [MIMO_DT_U8] = {"U8", 1},
    [MIMO_DT_BOOL] = {"BOOL", 1},   [MIMO_DT_F8_E4M3] = {"F8_E4M3", 1}, [MIMO_DT_F8_E5M2] = {"F8_E5M2", 1},
};

const char *mimo_dtype_name(mimo_dtype d) { return d < MIMO_DT_COUNT ? dtypes[d].name : "?"; }
size_t mimo_dtype_size(mimo_dtype d) { return d < MIMO_DT_COUNT ? dtypes[d].size : 0; }

int mimo_dtype_parse(const char *s, mimo_dtype *out) {
  for (int i = 0; i < MIMO_DT_COUNT; i++)
    if (strcmp(s, dtypes[i].name) == 0) {
      *out = (mimo_dtype)i;
      return 1;
    }
  return 0;
}

int64_t mimo_st_numel(const mimo_st_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

static int cmp_begin(const void *a, const void *b) {
  const mimo_st_tensor *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static void free_tensors(mimo_st_file *f) {
  for (size_t i = 0; i < f->n_tensors; i++)
    free(f->tensors[i].name);
  free(f->tensors);
  f->tensors = NULL;
  f->n_tensors = 0;
}

/* One header entry: {"dtype": "BF16", "shape": [..], "data_offsets": [b, e]}. */
static mimo_status parse_entry(const char *path, const char *name, json_t *v, uint64_t data_size,
                               mimo_st_tensor *t) {
  if (!json_is_object(v))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': header entry is not an object", path, name);
  json_t *dt = json_object_get(v, "dtype"), *shape = json_object_get(v, "shape"),
         *off = json_object_get(v, "data_offsets");
  if (!json_is_string(dt))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': missing or non-string dtype", path, name);
  if (!mimo_dtype_parse(json_string_value(dt), &t->dtype))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': unknown dtype '%s'", path, name, json_string_value(dt));
  if (!json_is_array(shape) || json_array_size(shape) > MIMO_ST_MAX_DIMS)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': shape must be an array of at most %d dims", path, name,
                     MIMO_ST_MAX_DIMS);
  t->ndim = (int)json_array_size(shape);
  uint64_t numel = 1;
  for (int i = 0; i < t->ndim; i++) {
    json_t *d = json_array_get(shape, (size_t)i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
    t->shape[i] = json_integer_value(d);
    if (t->shape[i] != 0 && numel > UINT64_MAX / 16 / (uint64_t)t->shape[i])
      return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': shape overflows", path, name);
    numel *= (uint64_t)t->shape[i];
  }
  if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(json_array_get(off, 0)) ||
      !json_is_integer(json_array_get(off, 1)))
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': data_offsets must be [begin, end]", path, name);
  json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
  if (b < 0 || e < b)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': data_offsets [%lld, %lld] are not an interval", path, name,
                     (long long)b, (long long)e);
  t->begin = (uint64_t)b;
  t->end = (uint64_t)e;
  uint64_t want = numel * mimo_dtype_size(t->dtype);
  if (t->end - t->begin != want)
    return mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s': extent is %llu bytes but shape x %s needs %llu", path, name,
                     (unsigned long long)(t->end - t->begin), mimo_dtype_name(t->dtype), (unsigned long long)want);
  if (t->end > data_size)
    return mimo_errf(MIMO_E_FORMAT,
                     "%s: tensor '%s': data ends at byte %llu of a %llu-byte data area (file truncated?)", path,
                     name, (unsigned long long)t->end, (unsigned long long)data_size);
  return MIMO_OK;
}

mimo_status mimo_st_parse(const uint8_t *buf, size_t size, const char *path, mimo_st_file *out) {
  memset(out, 0, sizeof *out);
  if (size < 8)
    return mimo_errf(MIMO_E_FORMAT, "%s: %zu bytes is too short for a safetensors file", path, size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | buf[i];
  if (n > MIMO_ST_MAX_HEADER || n > size - 8)
    return mimo_errf(MIMO_E_FORMAT, "%s: header length %llu runs past the end of the %zu-byte file", path,
                     (unsigned long long)n, size);
  json_error_t jerr;
  json_t *root = json_loadb((const char *)buf + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
  if (!root)
    return mimo_errf(MIMO_E_FORMAT, "%s: header is not valid JSON: %s at byte %d", path, jerr.text, jerr.position);
  mimo_status st = MIMO_OK;
  if (!json_is_object(root)) {
    st = mimo_errf(MIMO_E_FORMAT, "%s: header is not a JSON object", path);
    goto done;
  }
  uint64_t data_size = size - 8 - n;
  size_t cap = json_object_size(root);
  out->tensors = calloc(cap ? cap : 1, sizeof *out->tensors);
  if (!out->tensors) {
    st = mimo_errf(MIMO_E_NOMEM, "%s: header with %zu entries", path, cap);
    goto done;
  }
  const char *key;
  json_t *val;
  json_object_foreach(root, key, val) {
    if (strcmp(key, "__metadata__") == 0) {
      if (!json_is_object(val)) {
        st = mimo_errf(MIMO_E_FORMAT, "%s: __metadata__ is not an object", path);
        goto done;
      }
      continue;
    }
    mimo_st_tensor *t = &out->tensors[out->n_tensors];
    st = parse_entry(path, key, val, data_size, t);
    if (st != MIMO_OK)
      goto done;
    t->name = strdup(key);
    if (!t->name) {
      st = mimo_errf(MIMO_E_NOMEM, "%s", path);
      goto done;
    }
    t->data = buf + 8 + n + t->begin;
    out->n_tensors++;
  }
  qsort(out->tensors, out->n_tensors, sizeof *out->tensors, cmp_begin);
  /* Extents must tile the data area: no overlap, no hole, nothing after the last. */
  uint64_t pos = 0;
  for (size_t i = 0; i < out->n_tensors; i++) {
    mimo_st_tensor *t = &out->tensors[i];
    if (t->begin < pos) {
      st = mimo_errf(MIMO_E_FORMAT, "%s: tensor '%s' (bytes %llu..%llu) overlaps '%s'", path, t->name,
                     (unsigned long long)t->begin, (unsigned long long)t->end, out->tensors[i - 1].name);
      goto done;
    }
    if (t->begin > pos) {
      st = mimo_errf(MIMO_E_FORMAT, "%s: %llu unused bytes before tensor '%s'", path,
                     (unsigned long long)(t->begin - pos), t->name);
      goto done;
    }
    pos = t->end;
  }
  if (pos != data_size) {
    st = mimo_errf(MIMO_E_FORMAT, "%s: data area is %llu bytes but the tensors cover %llu", path,
                   (unsigned long long)data_size, (unsigned long long)pos);
    goto done;
  }
done:
  json_decref(root);
  if (st != MIMO_OK)
    free_tensors(out);
  return st;
}

mimo_status mimo_st_open(const char *path, mimo_st_file *out) {
  memset(out, 0, sizeof *out);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return mimo_errf(MIMO_E_IO, "%s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return mimo_errf(MIMO_E_IO, "%s: not a regular file", path);
  }
  size_t size = (size_t)sb.st_size;
  void *map = NULL;
  if (size > 0) {
    map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      close(fd);
      return mimo_errf(MIMO_E_IO, "%s: mmap: %s", path, strerror(errno));
    }
  }
  close(fd);
  static const uint8_t empty[1];
  mimo_status st = mimo_st_parse(map ? map : empty, size, path, out);
  if (st != MIMO_OK) {
    if (map)
      munmap(map, size);
    return st;
  }
  out->map = map;
  out->size = size;
  out->owns_map = 1;
  out->path = strdup(path);
  return MIMO_OK;
}

void mimo_st_close(mimo_st_file *f) {
  if (!f)
    return;
  free_tensors(f);
  if (f->owns_map && f->map)
    munmap(f->map, f->size);
  free(f->path);
  memset(f, 0, sizeof *f);
}

const mimo_st_tensor *mimo_st_find(const mimo_st_file *f, const char *name) {
  for (size_t i = 0; i < f->n_tensors; i++)
    if (strcmp(f->tensors[i].name, name) == 0)
      return &f->tensors[i];
  return NULL;
}

/* ---- writer ---- */

typedef struct {
  char *name;
  mimo_dtype dt;
  int ndim;
  int64_t shape[MIMO_ST_MAX_DIMS];
  const void *data;
  mimo_st_fill_fn fill;
  void *ctx;
  size_t bytes;
} wentry;

struct mimo_st_writer {
  wentry *e;
  size_t n, cap, total;
};

mimo_status mimo_st_writer_init(mimo_st_writer **w) {
  *w = calloc(1, sizeof **w);
  return *w ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "safetensors writer");
}

static mimo_status add_entry(mimo_st_writer *w, const char *name, mimo_dtype dt, int ndim, const int64_t *shape,
                             const void *data, mimo_st_fill_fn fill, void *ctx) {
  if (ndim < 0 || ndim > MIMO_ST_MAX_DIMS)
    return mimo_errf(MIMO_E_INVALID, "tensor '%s': %d dims", name, ndim);
  if (w->n == w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 64;
    wentry *e = realloc(w->e, cap * sizeof *e);
    if (!e)
      return mimo_errf(MIMO_E_NOMEM, "safetensors writer");
    w->e = e;
    w->cap = cap;
  }
  wentry *e = &w->e[w->n];
  memset(e, 0, sizeof *e);
  e->name = strdup(name);
  if (!e->name)
    return mimo_errf(MIMO_E_NOMEM, "safetensors writer");
  e->dt = dt;
  e->ndim = ndim;
  size_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    e->shape[i] = shape[i];
    numel *= (size_t)shape[i];
  }
  e->bytes = numel * mimo_dtype_size(dt);
  e->data = data;
  e->fill = fill;
  e->ctx = ctx;
  w->total += e->bytes;
  w->n++;
  return MIMO_OK;
}

mimo_status mimo_st_writer_add(mimo_st_writer *w, const char *name, mimo_dtype dt, int ndim, const int64_t *shape,
                               const void *data) {
  return add_entry(w, name, dt, ndim, shape, data, NULL, NULL);
}

mimo_status mimo_st_writer_add_fill(mimo_st_writer *w, const char *name, mimo_dtype dt, int ndim,
                                    const int64_t *shape, mimo_st_fill_fn fill, void *ctx) {
  return add_entry(w, name, dt, ndim, shape, NULL, fill, ctx);
}

size_t mimo_st_writer_bytes(const mimo_st_writer *w) { return w->total; }

mimo_status mimo_st_writer_save(mimo_st_writer *w, const char *path) {
  json_t *root = json_object();
  size_t off = 0, max_fill = 0;
  for (size_t i = 0; i < w->n; i++) {
    wentry *e = &w->e[i];
    json_t *shape = json_array();
    for (int d = 0; d < e->ndim; d++)
      json_array_append_new(shape, json_integer(e->shape[d]));
    json_t *ent = json_pack("{s:s, s:o, s:[I,I]}", "dtype", mimo_dtype_name(e->dt), "shape", shape,
                            "data_offsets", (json_int_t)off, (json_int_t)(off + e->bytes));
    json_object_set_new(root, e->name, ent);
    off += e->bytes;
    if (e->fill && e->bytes > max_fill)
      max_fill = e->bytes;
  }
  json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt"));
  char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  if (!hdr)
    return mimo_errf(MIMO_E_NOMEM, "%s: header", path);
  size_t hlen = strlen(hdr), padded = (hlen + 7) & ~(size_t)7; /* 8-byte aligned data, as the Rust writer does */
  FILE *f = fopen(path, "wb");
  if (!f) {
    free(hdr);
    return mimo_errf(MIMO_E_IO, "%s: %s", path, strerror(errno));
  }
  mimo_status st = MIMO_OK;
  uint8_t len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
  void *tmp = max_fill ? malloc(max_fill) : NULL;
  if (max_fill && !tmp)
    st = mimo_errf(MIMO_E_NOMEM, "%s: %zu-byte staging buffer", path, max_fill);
  if (st == MIMO_OK && (fwrite(len8, 1, 8, f) != 8 || fwrite(hdr, 1, hlen, f) != hlen ||
                        fwrite("        ", 1, padded - hlen, f) != padded - hlen))
    st = mimo_errf(MIMO_E_IO, "%s: write failed: %s", path, strerror(errno));
  for (size_t i = 0; st == MIMO_OK && i < w->n; i++) {
    wentry *e = &w->e[i];
    const void *src = e->data;
    if (e->fill) {
      st = e->fill(e->ctx, tmp, e->bytes);
      src = tmp;
    }
    if (st == MIMO_OK && e->bytes && fwrite(src, 1, e->bytes, f) != e->bytes)
      st = mimo_errf(MIMO_E_IO, "%s: write failed: %s", path, strerror(errno));
  }
  if (fclose(f) != 0 && st == MIMO_OK)
    st = mimo_errf(MIMO_E_IO, "%s: close failed: %s", path, strerror(errno));
  free(tmp);
  free(hdr);
  return st;
}

void mimo_st_writer_free(mimo_st_writer *w) {
  if (!w)
    return;
  for (size_t i = 0; i < w->n; i++)
    free(w->e[i].name);
  free(w->e);
  free(w);
}
