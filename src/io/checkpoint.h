/* A checkpoint directory: config.json plus one model.safetensors or sharded
 * files listed in model.safetensors.index.json. Every tensor is resolved by name
 * through one table, so a weight and its companions may sit in different shards. */
#ifndef MIMO_IO_CHECKPOINT_H
#define MIMO_IO_CHECKPOINT_H
#include <stdbool.h>

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

/* Writing a checkpoint (mimo synth, mimo quantize). */
struct json_t;
/* dir/model.safetensors.index.json from weight_map (tensor name -> shard file name; the call takes it) and the
 * tensors' total bytes. */
mimo_status mimo_ckpt_write_index(const char *dir, struct json_t *weight_map, uint64_t total_bytes);
/* config.json's compressed-tensors `quantization_config` for int4 routed experts (spec §6.4): group size, symmetric
 * or not, the observer's name, and the experts of ignore_layers[0..n) left dense (lm_head is always ignored). */
struct json_t *mimo_ckpt_int4_config(int group, bool asym, const char *observer, const int *ignore_layers, int n);
#endif
