#include "model/mimo_v2_tp_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"

struct mimo_tp_net {
  int nnodes, rank;
  int *fd;        /* node 0: fd[k] = connection to node k (k >= 1); worker: fd[0] = to node 0 */
  float *tmp;     /* node 0: one worker's part during an all-reduce */
  long tmp_n;
};

static const uint32_t MAGIC = 0x6d696d6f; /* "mimo" */

static mimo_status send_all(int fd, const void *p, size_t n, const char *what) {
  const char *c = p;
  while (n) {
    ssize_t w = send(fd, c, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      return mimo_errf(MIMO_E_IO, "tensor-parallel link: sending %s: %s", what, w < 0 ? strerror(errno) : "closed");
    c += w;
    n -= (size_t)w;
  }
  return MIMO_OK;
}

static mimo_status recv_all(int fd, void *p, size_t n, const char *what) {
  char *c = p;
  while (n) {
    ssize_t r = recv(fd, c, n, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return mimo_errf(MIMO_E_IO, "tensor-parallel link: receiving %s: %s", what,
                       r < 0 ? strerror(errno) : "the other node closed the connection");
    c += r;
    n -= (size_t)r;
  }
  return MIMO_OK;
}

static void tune(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* small control messages every step */
}

static mimo_status resolve(const char *host, int port, struct sockaddr_storage *sa, socklen_t *len) {
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  int e = getaddrinfo(host, ps, &hints, &res);
  if (e || !res)
    return mimo_errf(MIMO_E_INVALID, "--master-addr %s: %s", host, e ? gai_strerror(e) : "no address");
  memcpy(sa, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  freeaddrinfo(res);
  return MIMO_OK;
}

static mimo_status serve_nodes(mimo_tp_net *n, const mimo_net_opts *o, const struct sockaddr_storage *sa,
                               socklen_t len) {
  int ls = socket(sa->ss_family, SOCK_STREAM, 0), one = 1;
  if (ls < 0)
    return mimo_errf(MIMO_E_IO, "socket: %s", strerror(errno));
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(ls, (const struct sockaddr *)sa, len) != 0 || listen(ls, 64) != 0) {
    mimo_status st = mimo_errf(MIMO_E_IO, "node 0: cannot listen on %s:%d: %s", o->master_addr, o->master_port,
                               strerror(errno));
    close(ls);
    return st;
  }
  mimo_info("node 0: waiting for %d worker node(s) on %s:%d", o->nnodes - 1, o->master_addr, o->master_port);
  double t_end = mimo_now() + o->timeout_s;
  mimo_status st = MIMO_OK;
  for (int joined = 0; joined < o->nnodes - 1 && st == MIMO_OK;) {
    struct pollfd p = {.fd = ls, .events = POLLIN};
    int left_ms = (int)((t_end - mimo_now()) * 1000);
    if (left_ms <= 0 || poll(&p, 1, left_ms) <= 0) {
      st = mimo_errf(MIMO_E_IO, "node 0: %d of %d worker node(s) joined within %.0f s", joined, o->nnodes - 1,
                     o->timeout_s);
      break;
    }
    int fd = accept(ls, NULL, NULL);
    if (fd < 0)
      continue;
    tune(fd);
    uint32_t hello[3];
    if (recv_all(fd, hello, sizeof hello, "hello") != MIMO_OK || hello[0] != MAGIC) {
      close(fd); /* not one of ours */
      continue;
    }
    int k = (int)hello[1];
    if (k < 1 || k >= o->nnodes || n->fd[k] >= 0 || (int)hello[2] != o->nnodes) {
      st = mimo_errf(MIMO_E_INVALID, "node 0: a worker says it is node %d of %u (expected 1..%d of %d, once each)", k,
                     hello[2], o->nnodes - 1, o->nnodes);
      close(fd);
      break;
    }
    n->fd[k] = fd;
    joined++;
    mimo_info("node 0: node %d joined", k);
  }
  close(ls);
  return st;
}

static mimo_status join_node0(mimo_tp_net *n, const mimo_net_opts *o, const struct sockaddr_storage *sa,
                              socklen_t len) {
  double t_end = mimo_now() + o->timeout_s;
  for (;;) {
    int fd = socket(sa->ss_family, SOCK_STREAM, 0);
    if (fd < 0)
      return mimo_errf(MIMO_E_IO, "socket: %s", strerror(errno));
    if (connect(fd, (const struct sockaddr *)sa, len) == 0) {
      tune(fd);
      uint32_t hello[3] = {MAGIC, (uint32_t)o->node_rank, (uint32_t)o->nnodes};
      n->fd[0] = fd;
      return send_all(fd, hello, sizeof hello, "hello");
    }
    int e = errno;
    close(fd);
    if (mimo_now() > t_end)
      return mimo_errf(MIMO_E_IO, "node %d: cannot reach node 0 at %s:%d within %.0f s: %s", o->node_rank,
                       o->master_addr, o->master_port, o->timeout_s, strerror(e));
    usleep(200 * 1000);
  }
}

mimo_status mimo_tp_net_open(const mimo_net_opts *o, mimo_tp_net **out) {
  if (o->nnodes < 2 || o->node_rank < 0 || o->node_rank >= o->nnodes)
    return mimo_errf(MIMO_E_INVALID, "--node-rank %d must be in [0, --nnodes %d)", o->node_rank, o->nnodes);
  if (o->master_port < 1 || o->master_port > 65535)
    return mimo_errf(MIMO_E_INVALID, "--master-port %d is not a port", o->master_port);
  mimo_tp_net *n = calloc(1, sizeof *n);
  int *fd = malloc((size_t)o->nnodes * sizeof *fd);
  if (!n || !fd) {
    free(n);
    free(fd);
    return mimo_errf(MIMO_E_NOMEM, "tensor-parallel link");
  }
  for (int i = 0; i < o->nnodes; i++)
    fd[i] = -1;
  n->fd = fd;
  n->nnodes = o->nnodes;
  n->rank = o->node_rank;
  mimo_net_opts oo = *o;
  if (!oo.master_addr)
    oo.master_addr = "127.0.0.1";
  if (oo.timeout_s <= 0)
    oo.timeout_s = 120;
  struct sockaddr_storage sa;
  socklen_t len = 0;
  mimo_status st = resolve(oo.master_addr, oo.master_port, &sa, &len);
  if (st == MIMO_OK)
    st = n->rank == 0 ? serve_nodes(n, &oo, &sa, len) : join_node0(n, &oo, &sa, len);
  if (st != MIMO_OK) {
    mimo_tp_net_close(n);
    return st;
  }
  *out = n;
  return MIMO_OK;
}

void mimo_tp_net_close(mimo_tp_net *n) {
  if (!n)
    return;
  for (int i = 0; i < n->nnodes; i++)
    if (n->fd[i] >= 0)
      close(n->fd[i]);
  free(n->fd);
  free(n->tmp);
  free(n);
}

int mimo_tp_net_nodes(const mimo_tp_net *n) { return n->nnodes; }
int mimo_tp_net_rank(const mimo_tp_net *n) { return n->rank; }

mimo_status mimo_tp_net_bcast(mimo_tp_net *n, void *buf, size_t bytes) {
  if (n->rank)
    return recv_all(n->fd[0], buf, bytes, "a broadcast");
  for (int k = 1; k < n->nnodes; k++)
    MIMO_TRY(send_all(n->fd[k], buf, bytes, "a broadcast"));
  return MIMO_OK;
}

mimo_status mimo_tp_net_send_msg(mimo_tp_net *n, const void *buf, size_t bytes) {
  uint64_t len = bytes;
  for (int k = 1; k < n->nnodes; k++) {
    MIMO_TRY(send_all(n->fd[k], &len, sizeof len, "a message length"));
    MIMO_TRY(send_all(n->fd[k], buf, bytes, "a message"));
  }
  return MIMO_OK;
}

mimo_status mimo_tp_net_recv_msg(mimo_tp_net *n, void **buf, size_t *bytes) {
  uint64_t len;
  MIMO_TRY(recv_all(n->fd[0], &len, sizeof len, "a message length"));
  if (len > ((uint64_t)1 << 32))
    return mimo_errf(MIMO_E_FORMAT, "tensor-parallel link: a message of %llu bytes", (unsigned long long)len);
  void *p = malloc(len ? len : 1);
  if (!p)
    return mimo_errf(MIMO_E_NOMEM, "a message of %llu bytes", (unsigned long long)len);
  mimo_status st = recv_all(n->fd[0], p, len, "a message");
  if (st != MIMO_OK) {
    free(p);
    return st;
  }
  *buf = p;
  *bytes = len;
  return MIMO_OK;
}

mimo_status mimo_tp_net_allreduce(mimo_tp_net *n, float *x, long count) {
  size_t bytes = (size_t)count * sizeof(float);
  if (n->rank) {
    MIMO_TRY(send_all(n->fd[0], x, bytes, "a partial sum"));
    return recv_all(n->fd[0], x, bytes, "a sum");
  }
  if (n->tmp_n < count) {
    float *t = realloc(n->tmp, bytes);
    if (!t)
      return mimo_errf(MIMO_E_NOMEM, "all-reduce buffer");
    n->tmp = t;
    n->tmp_n = count;
  }
  for (int k = 1; k < n->nnodes; k++) {
    MIMO_TRY(recv_all(n->fd[k], n->tmp, bytes, "a partial sum"));
    for (long i = 0; i < count; i++)
      x[i] += n->tmp[i];
  }
  for (int k = 1; k < n->nnodes; k++)
    MIMO_TRY(send_all(n->fd[k], x, bytes, "a sum"));
  return MIMO_OK;
}

mimo_status mimo_tp_net_agree(mimo_tp_net *n, int *code, int *node) {
  int32_t v[2] = {*code, *code ? n->rank : -1};
  if (n->rank) {
    MIMO_TRY(send_all(n->fd[0], v, sizeof v, "a status"));
    MIMO_TRY(recv_all(n->fd[0], v, sizeof v, "the group's status"));
  } else {
    for (int k = 1; k < n->nnodes; k++) {
      int32_t w[2];
      MIMO_TRY(recv_all(n->fd[k], w, sizeof w, "a status"));
      if (!v[0] && w[0]) {
        v[0] = w[0];
        v[1] = k;
      }
    }
    for (int k = 1; k < n->nnodes; k++)
      MIMO_TRY(send_all(n->fd[k], v, sizeof v, "the group's status"));
  }
  *code = v[0];
  *node = v[1];
  return MIMO_OK;
}
