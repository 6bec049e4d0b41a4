/* Backend choice and model load shared by the commands that run the model
 * (logits, generate, bench, serve): one device, or a tensor-parallel group. */
#ifndef MIMO_CLI_MODEL_OPEN_H
#define MIMO_CLI_MODEL_OPEN_H
#include <stdbool.h>

#include "model/mimo_v2.h"

typedef struct mimo_open_opts {
  const char *dir;
  const char *backend; /* "cpu" | "cuda"; NULL: cuda when built with it and a GPU is present */
  int threads;         /* CPU threads in all (0: all cores), shared out over CPU ranks */
  int tp;              /* tensor-parallel ranks (0 or 1: one device) */
  bool ep;             /* expert parallel inside the group */
  double gpu_memory_utilization; /* fraction of each GPU's memory to use (0: default 0.9) */
  const char *devices; /* "0,1,...": rank r on the r-th listed GPU (default 0..tp-1); a GPU listed twice
                        * (testing TP on one card) makes the ranks sum through the host instead of NCCL */
} mimo_open_opts;

/* Loads the model with its backend(s), which it then owns; logs load time. */
mimo_status mimo_open_model(const mimo_open_opts *o, mimo_model **out);
/* The backend name chosen for o->backend (after the default). */
const char *mimo_open_backend_name(const char *backend);
#endif
