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
  double cpu_offload_gb;         /* GiB of each GPU's routed experts in pinned host memory (0: none) */
  /* Several processes (hosts): this one is node node_rank of nnodes and holds tp / nnodes ranks. */
  int nnodes, node_rank;
  const char *master_addr;
  int master_port;
  const char *devices; /* "0,1,...": rank r on the r-th listed GPU (default 0..tp-1); a GPU listed twice
                        * (testing TP on one card) makes the ranks sum through the host instead of NCCL */
  bool host_sampling;  /* sample on the host even where the backend samples where the logits are */
  bool kv_bf16;        /* --kv-cache-dtype bfloat16 */
  bool eager;          /* --enforce-eager: no CUDA graphs for decode steps */
} mimo_open_opts;

/* Loads the model with its backend(s), which it then owns; logs load time. */
mimo_status mimo_open_model(const mimo_open_opts *o, mimo_model **out);
/* A worker node (node_rank > 0): after mimo_open_model, run mimo_model_run_worker instead of the command. */
bool mimo_open_is_worker(const mimo_open_opts *o);
/* The options every model-running command takes, for its argument table (mimo_arg rows). */
#define MIMO_OPEN_ARGS                                                                                             \
  {"threads", 1, "CPU threads (default: all cores; shared out over CPU ranks)", 0},                               \
      {"backend", 1, "cpu | cuda (default: cuda if built with it and a GPU is present)", 0},                      \
      {"tensor-parallel-size", 1, "ranks (GPUs, or CPU backends) the model is split over (default 1)", 0},        \
      {"enable-expert-parallel", 0, "whole experts per rank instead of every expert split", 0},                 \
      {"devices", 1, "GPU of each rank, e.g. 0,1 (default 0..N-1; 0,0 tests TP on one GPU via host sums)", 0},  \
      {"gpu-memory-utilization", 1, "fraction of each GPU's memory for weights, KV and activations (default 0.9)", \
       0},                                                                                                         \
      {"cpu-offload-gb", 1, "GiB of each GPU's routed experts kept in pinned host memory, read over the bus (default 0)", \
       0},                                                                                                         \
      {"nnodes", 1, "processes (hosts) the tensor-parallel group spans (default 1)", 0},                          \
      {"node-rank", 1, "this process's place among them; 0 runs the command, the others follow it (default 0)", 0}, \
      {"master-addr", 1, "address of node 0 (default 127.0.0.1)", 0},                                             \
      {"master-port", 1, "port node 0 listens on for the other nodes (default 29500)", 0},                        \
      {"host-sampling", 0, "sample tokens on the host even where the GPU could (which moves no logits)", 0},        \
      {"kv-cache-dtype", 1, "float32 | bfloat16: the KV cache's elements (default float32; bfloat16 halves its memory)", 0}, \
      {"enforce-eager", 0, "launch every GPU op as issued (no CUDA graphs for decode steps)", 0}
/* Reads those options (after mimo_args_parse) into o, with o->dir = dir; false, with a message printed, on a
 * malformed or out-of-range value. */
struct mimo_arg;
bool mimo_open_parse(const struct mimo_arg *a, int n, const char *dir, mimo_open_opts *o);

/* The backend name chosen for o->backend (after the default). */
const char *mimo_open_backend_name(const char *backend);

/* A model opened from a command's options with one sequence to feed (logits, generate, perplexity). */
typedef struct mimo_runner {
  mimo_model *m;
  mimo_kv_seq *seq;
  bool worker; /* a worker node: it served node 0's steps and is done */
} mimo_runner;
mimo_status mimo_runner_init(mimo_runner *r, const char *dir, const struct mimo_arg *a, int n);
void mimo_runner_free(mimo_runner *r);
/* The sequence emptied: a new one in its place. */
mimo_status mimo_runner_restart(mimo_runner *r);
/* Feeds ids in chunks of `chunk`; logits gets [n][vocab]; margin (optional, filled with +inf) each token's
 * smallest router margin (mimo_model.route_margin). */
mimo_status mimo_runner_feed(mimo_runner *r, const int *ids, int n, int chunk, float *logits, float *margin);
/* The same with rows that replace the embeddings of some of the ids (runs' at = positions in ids). */
mimo_status mimo_runner_feed_embeds(mimo_runner *r, const int *ids, int n, int chunk, float *logits, float *margin,
                                    const mimo_embed_run *runs, int n_runs);
/* --tokens ids, or --file text (at most 1 GiB) through the checkpoint's tokenizer (perplexity, quantize). */
mimo_status mimo_input_ids(const char *dir, const char *file, const char *toks, int **ids, long *T);
#endif
