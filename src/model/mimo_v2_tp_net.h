/* Several processes (hosts) in one tensor-parallel group: node 0 runs the engine
 * and drives every step; the other nodes run their ranks on its orders. The
 * control channel is one TCP connection per worker node to node 0 (the
 * --master-addr/--master-port of the command line); GPU ranks exchange
 * activations through NCCL, bootstrapped with an id node 0 sends over it; CPU
 * ranks sum through it too (node 0 adds the nodes' partial sums in node order). */
#ifndef MIMO_MODEL_MIMO_V2_TP_NET_H
#define MIMO_MODEL_MIMO_V2_TP_NET_H
#include <stddef.h>

#include "core/status.h"

typedef struct mimo_net_opts {
  int nnodes, node_rank;
  const char *master_addr; /* node 0 listens here (default 127.0.0.1) */
  int master_port;
  double timeout_s; /* how long workers retry connecting / node 0 waits for them (default 120) */
} mimo_net_opts;

typedef struct mimo_tp_net mimo_tp_net;

mimo_status mimo_tp_net_open(const mimo_net_opts *o, mimo_tp_net **out);
void mimo_tp_net_close(mimo_tp_net *n);
int mimo_tp_net_nodes(const mimo_tp_net *n);
int mimo_tp_net_rank(const mimo_tp_net *n);
/* Node 0 sends bytes to every worker; a worker receives them. Sizes must agree. */
mimo_status mimo_tp_net_bcast(mimo_tp_net *n, void *buf, size_t bytes);
/* Node 0 sends a message of any size (a worker learns the size; *buf is malloc'ed there). */
mimo_status mimo_tp_net_send_msg(mimo_tp_net *n, const void *buf, size_t bytes);
mimo_status mimo_tp_net_recv_msg(mimo_tp_net *n, void **buf, size_t *bytes);
/* x becomes the sum over the nodes of their x (node order), identical everywhere. */
mimo_status mimo_tp_net_allreduce(mimo_tp_net *n, float *x, long count);
/* Every node's code; all get the first non-zero one in node order (0 if none) and its node. */
mimo_status mimo_tp_net_agree(mimo_tp_net *n, int *code, int *node);
#endif
