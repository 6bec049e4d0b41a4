/* A checkpoint directory: config.json plus one model.safetensors or sharded
 * files listed in model.safetensors.index.json. Every tensor is resolved by name
 * through one table, so a weight and its companions may sit in different shards. */
#ifndef MIMO_IO_CHECKPOINT_H
#define MIMO_IO_CHECKPOINT_H
#include "io/safetensors.h"

typedef struct mimo_ckpt {
  char *dir;
  int n_files;
  mimo_st_file *files;
  size_t n_tensors, cap; /* open-addressing table of tensor pointers */
  const mimo_st_tensor **table;
  uint64_t total_bytes; /* sum of all tensor extents */
} mimo_ckpt;

mimo_status mimo_ckpt_open(const char *dir, mimo_ckpt *ck);
void mimo_ckpt_close(mimo_ckpt *ck);
const mimo_st_tensor *mimo_ckpt_find(const mimo_ckpt *ck, const char *name);
#endif
