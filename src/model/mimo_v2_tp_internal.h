/* Shared by the tensor-parallel files (mimo_v2_tp.c: ranks, load, steps; mimo_v2_tp_worker.c: caches across nodes,
 * the worker loop). Not an interface: model/mimo_v2.h is. */
#ifndef MIMO_MODEL_MIMO_V2_TP_INTERNAL_H
#define MIMO_MODEL_MIMO_V2_TP_INTERNAL_H
#include <pthread.h>
#include <stdatomic.h>

#include "model/mimo_v2.h"
#include "model/mimo_v2_tp_net.h"

/* JOB_STEP (one process): reserve, agree across the ranks at a barrier, then forward — one hand-off per step
 * instead of two. Several processes reserve and forward as separate jobs, the nodes agreeing in between. */
enum { JOB_LOAD = 1, JOB_RESERVE, JOB_FORWARD, JOB_STEP, JOB_QUIT };

typedef struct rank_slot {
  struct mimo_tp_group *g;
  int rank;
  mimo_status st;
  char msg[1024];
  mimo_kv_seq **seqs; /* this step's sequences: the rank's shards */
  int cap_seqs;
  mimo_batch batch;
  atomic_int layers_done;
  double load_s;
  float *stage; /* host copy for the all-reduce of device ranks without NCCL */
  long stage_n;
} rank_slot;

struct mimo_tp_group {
  int tp;                   /* ranks in this process */
  int global_tp, node;      /* all ranks of the group; this process's node (0 alone) */
  mimo_tp_net *net;         /* several processes: the link to node 0 / the workers (owned) */
  unsigned long long next_uid;
  bool reserved;            /* the last step's reservation passed on every rank (rank 0 writes it) */
  pthread_mutex_t free_mu;  /* node 0: sequences ended since the last step (the engine frees them) */
  unsigned long long *freed;
  int n_freed, cap_freed;
  mimo_kv_seq **wseqs;      /* worker: the group's live sequences by uid */
  int n_wseqs, cap_wseqs;
  float *red;               /* several processes, CPU ranks: this node's partial sum */
  long red_n;
  mimo_model *top;
  mimo_model **ranks;
  rank_slot *slots;
  pthread_t *threads;
  int n_threads;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  unsigned job_id;
  int job, pending;
  float *logits;
  /* host all-reduce between CPU ranks */
  pthread_barrier_t bar;
  float **xs;
};

/* Every node agrees on the step's outcome, so that none waits in a collective for one that gave up. */
mimo_status mimo_tp_agree(struct mimo_tp_group *g, mimo_status st, const char *what);
/* The step on this process's ranks (every node runs it with the same batch). */
mimo_status mimo_tp_step(mimo_model *m, const mimo_batch *b, float *logits);
/* A sequence of node 0 ended: its id goes to the workers with the next step (kv_seq.on_free). */
void mimo_tp_seq_freed(void *ctx, unsigned long long uid);
#endif
