/* safetensors files: mmap'ed, every header validated before any tensor is used.
 * Layout: u64 little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}},
 * then the data area; offsets are relative to byte 8 + N. */
#ifndef MIMO_IO_SAFETENSORS_H
#define MIMO_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum mimo_dtype {
  MIMO_DT_F32, MIMO_DT_F16, MIMO_DT_BF16, MIMO_DT_F64,
  MIMO_DT_I64, MIMO_DT_I32, MIMO_DT_I16, MIMO_DT_I8,
  MIMO_DT_U64, MIMO_DT_U32, MIMO_DT_U16, MIMO_DT_U8, MIMO_DT_BOOL,
  MIMO_DT_F8_E4M3, MIMO_DT_F8_E5M2,
  MIMO_DT_COUNT
} mimo_dtype;

const char *mimo_dtype_name(mimo_dtype d); /* the safetensors spelling, e.g. "BF16" */
size_t mimo_dtype_size(mimo_dtype d);
int mimo_dtype_parse(const char *s, mimo_dtype *out); /* 1 if known */

#define MIMO_ST_MAX_DIMS 8
#define MIMO_ST_MAX_HEADER (100u << 20) /* the Rust reference caps headers at 100 MB too */

typedef struct mimo_st_tensor {
  char *name;
  mimo_dtype dtype;
  int ndim;
  int64_t shape[MIMO_ST_MAX_DIMS];
  uint64_t begin, end; /* byte extent in the data area */
  const void *data;    /* points into the mapping */
  int file_index;      /* which shard (set by the checkpoint) */
} mimo_st_tensor;

typedef struct mimo_st_file {
  char *path;
  void *map;
  size_t size;
  int owns_map;
  size_t n_tensors;
  mimo_st_tensor *tensors; /* sorted by begin offset */
} mimo_st_file;

/* Parses and validates a whole file image already in memory (pure: used by the
 * fuzzer). `path` only labels messages. On success tensors point into buf. */
mimo_status mimo_st_parse(const uint8_t *buf, size_t size, const char *path, mimo_st_file *out);
mimo_status mimo_st_open(const char *path, mimo_st_file *out);
void mimo_st_close(mimo_st_file *f);
const mimo_st_tensor *mimo_st_find(const mimo_st_file *f, const char *name);
int64_t mimo_st_numel(const mimo_st_tensor *t);

/* Writing: collect tensors, then write header + data in one pass. */
typedef struct mimo_st_writer mimo_st_writer;
mimo_status mimo_st_writer_init(mimo_st_writer **w);
/* Copies nothing: data must stay valid until mimo_st_writer_save. */
mimo_status mimo_st_writer_add(mimo_st_writer *w, const char *name, mimo_dtype dt, int ndim,
                               const int64_t *shape, const void *data);
mimo_status mimo_st_writer_save(mimo_st_writer *w, const char *path);
/* For tensors too large to hold all at once: fill(ctx, dst, bytes) produces the
 * bytes while the file is written, one tensor in memory at a time. */
typedef mimo_status (*mimo_st_fill_fn)(void *ctx, void *dst, size_t bytes);
mimo_status mimo_st_writer_add_fill(mimo_st_writer *w, const char *name, mimo_dtype dt, int ndim,
                                    const int64_t *shape, mimo_st_fill_fn fill, void *ctx);
size_t mimo_st_writer_bytes(const mimo_st_writer *w);
void mimo_st_writer_free(mimo_st_writer *w);
#endif
