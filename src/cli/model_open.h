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
  /* Several processes (hosts): this one is node node_rank of nnodes and holds tp / nnodes ranks. */
  int nnodes, node_rank;
  const char *master_addr;
  int master_port;
  const char *devices; /* "0,1,...": rank r on the r-th listed GPU (default 0..tp-1); a GPU listed twice
                        * (testing TP on one card) makes the ranks sum through the host instead of NCCL */
} mimo_open_opts;

/* Loads the model with its backend(s), which it then owns; logs load time. */
mimo_status mimo_open_model(const mimo_open_opts *o, mimo_model **out);
/* A worker node (node_rank > 0): after mimo_open_model, run mimo_model_run_worker instead of the command. */
bool mimo_open_is_worker(const mimo_open_opts *o);
/* Fills the multi-process fields from --nnodes/--node-rank/--master-addr/--master-port;
 * false (message printed) on a malformed value. */
struct mimo_arg;
bool mimo_open_parse_nodes(const struct mimo_arg *a, int n, mimo_open_opts *o);
/* The options above, for the commands' argument tables. */
#define MIMO_OPEN_NODE_ARGS                                                                                   \
  {"nnodes", 1, "processes (hosts) the tensor-parallel group spans (default 1)", 0},                        \
      {"node-rank", 1, "this process's place among them, 0 = the one that serves (default 0)", 0},          \
      {"master-addr", 1, "address of node 0 (default 127.0.0.1)", 0},                                       \
      {"master-port", 1, "port node 0 listens on for the other nodes (default 29500)", 0}

/* The backend name chosen for o->backend (after the default). */
const char *mimo_open_backend_name(const char *backend);
#endif
