/* CUDA graphs for decode steps (backend.h graph_begin / graph_end).
 *
 * A decode step issues ~12 launches per layer; without dependent launch (SM80) each kernel starts only after the
 * previous one has drained, and each costs the host a few µs in the driver. The model brackets each layer of a
 * decode step (the last with the lm_head) with graph_begin/graph_end: the stream is captured, the captured graph
 * updates the executable graph kept for that (step shape, layer) (cudaGraphExecUpdate: new lengths, split counts
 * and pointers, same kernels) and is launched, and the device runs that layer while the host captures the next
 * (one graph for the whole step would leave the device idle while the host captures it all: measured slower).
 * A part's first step runs uncaptured: it sizes the temporaries and the per-kernel caches (shared-memory
 * attributes, occupancy) so that the captured steps allocate nothing.
 *
 * Capture is relaxed: an op that must grow a temporary during capture takes plain cudaMalloc (legal while capturing,
 * unlike a stream-ordered allocation, which would become a node of the graph) and the old buffer is freed at the
 * next wait (cu_defer_free). A capture that breaks anyway fails that step with the reason and turns graphs off. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

enum { CG_SHAPES = 16 }; /* step shapes whose executable graphs are kept (least recently used dropped) */

typedef struct cg_part {
  int seen;              /* this part's first step ran uncaptured */
  cudaGraphExec_t exec;
} cg_part;

typedef struct cg_shape {
  int shape;
  cg_part *parts;        /* by part number */
  int n_parts;
  unsigned long used;    /* tick of the last use */
} cg_shape;

struct cu_graphs {
  cg_shape s[CG_SHAPES];
  int n;
  cg_part *open;         /* the part being captured */
  unsigned long tick;
  bool off;              /* a capture failed: no more graphs on this backend */
  mimo_cuda_graph_stats stats;
};

/* MIMO_CUDA_GRAPHS=0: every op launched as issued; =1: graphs; unset: graphs only where dependent launch is not in
 * use (SM80, compute_80 code). Measured on an H200 (round 10): with dependent launch a layer's kernels already
 * overlap their starts, and per-layer graphs made the batch-1 step 2-4 % slower; without it they made it 4 %
 * faster (batch 32: +1.6 % / -3.7 %). */
static int graphs_mode = -1;
extern "C" int mimo_cuda_graphs_mode(int mode) {
  if (graphs_mode < 0) {
    const char *e = getenv("MIMO_CUDA_GRAPHS");
    graphs_mode = e && !strcmp(e, "0") ? 0 : e && !strcmp(e, "1") ? 1 : 2;
  }
  const int old = graphs_mode;
  if (mode >= 0 && mode <= 2)
    graphs_mode = mode;
  return old;
}
static bool graphs_wanted(cu_ctx *c) {
  const int md = mimo_cuda_graphs_mode(-1);
  return md == 1 || (md == 2 && !cu_pdl(c));
}
extern "C" bool mimo_cuda_graphs_used(mimo_backend *be) { return graphs_wanted(cu(be)); }

static void shape_clear(cg_shape *e) {
  for (int i = 0; i < e->n_parts; i++)
    if (e->parts[i].exec)
      cudaGraphExecDestroy(e->parts[i].exec); /* a launch still queued keeps what it needs until it ends */
  free(e->parts);
  memset(e, 0, sizeof *e);
}

/* The part's entry (NULL: no host memory for it). */
static cg_part *cg_find(cu_graphs *g, int shape, int part) {
  cg_shape *e = NULL;
  for (int i = 0; i < g->n && !e; i++)
    if (g->s[i].shape == shape)
      e = &g->s[i];
  if (!e) {
    if (g->n < CG_SHAPES) {
      e = &g->s[g->n++];
    } else { /* reuse the least recently used */
      e = &g->s[0];
      for (int i = 1; i < g->n; i++)
        if (g->s[i].used < e->used)
          e = &g->s[i];
      shape_clear(e);
    }
    e->shape = shape;
  }
  if (part == 0)
    e->used = ++g->tick;
  if (part >= e->n_parts) {
    const int n = part + 1 > 2 * e->n_parts ? part + 1 : 2 * e->n_parts;
    cg_part *p = (cg_part *)realloc(e->parts, (size_t)n * sizeof *p);
    if (!p)
      return NULL;
    memset(p + e->n_parts, 0, (size_t)(n - e->n_parts) * sizeof *p);
    e->parts = p;
    e->n_parts = n;
  }
  return &e->parts[part];
}

static bool cu_graph_begin(mimo_backend *be, int shape, int part) {
  cu_ctx *c = cu(be);
  if (c->prof || c->err != MIMO_OK || part < 0 || !graphs_wanted(c))
    return false;
  if (!c->graphs && !(c->graphs = (cu_graphs *)calloc(1, sizeof *c->graphs)))
    return false;
  cu_graphs *g = c->graphs;
  cg_part *e = g->off || g->open ? NULL : cg_find(g, shape, part);
  if (!e)
    return false;
  if (!e->seen) { /* next time this part's temporaries are sized */
    e->seen = 1;
    g->stats.uncaptured++;
    return false;
  }
  if (MIMO_CUDA(c, cudaStreamBeginCapture(c->st, cudaStreamCaptureModeRelaxed)) != MIMO_OK)
    return false;
  c->capturing = true;
  g->open = e;
  return true;
}

/* Ends the capture; on success updates (or makes) the shape's executable graph and launches it. */
static mimo_status cu_graph_end(mimo_backend *be) {
  cu_ctx *c = cu(be);
  cu_graphs *g = c->graphs;
  cg_part *e = g ? g->open : NULL;
  if (!e)
    return cu_fail(c, "graph_end", "no capture open", __FILE__, __LINE__);
  g->open = NULL;
  c->capturing = false;
  cudaGraph_t graph = NULL;
  const cudaError_t ce = cudaStreamEndCapture(c->st, &graph);
  if (ce != cudaSuccess || !graph || c->err != MIMO_OK) {
    if (graph)
      cudaGraphDestroy(graph);
    (void)cudaGetLastError();
    g->off = true;
    g->stats.failures++;
    if (c->err != MIMO_OK) /* an op's error: the step's */
      return c->err;
    return cu_fail(c, "CUDA graph capture of a decode step", cudaGetErrorString(ce), __FILE__, __LINE__);
  }
  mimo_status st = MIMO_OK;
  bool ready = false;
  if (e->exec) {
    cudaGraphExecUpdateResultInfo info;
    if (cudaGraphExecUpdate(e->exec, graph, &info) == cudaSuccess) {
      ready = true;
      g->stats.updates++;
    } else { /* another topology (a kernel variant changed): make it again */
      (void)cudaGetLastError();
      cudaGraphExecDestroy(e->exec);
      e->exec = NULL;
    }
  }
  if (!ready) {
    st = MIMO_CUDA(c, cudaGraphInstantiate(&e->exec, graph, 0));
    if (st == MIMO_OK)
      g->stats.instantiated++;
    else
      e->exec = NULL;
  }
  size_t nodes = 0;
  if (st == MIMO_OK && cudaGraphGetNodes(graph, NULL, &nodes) == cudaSuccess)
    g->stats.last_nodes = (long)nodes;
  cudaGraphDestroy(graph);
  if (st == MIMO_OK)
    st = MIMO_CUDA(c, cudaGraphLaunch(e->exec, c->st));
  if (st == MIMO_OK)
    g->stats.launches++;
  return st;
}

void cu_graphs_free(cu_ctx *c) {
  cu_graphs *g = c->graphs;
  if (!g)
    return;
  for (int i = 0; i < g->n; i++)
    shape_clear(&g->s[i]);
  free(g);
  c->graphs = NULL;
}

extern "C" mimo_cuda_graph_stats mimo_cuda_graph_stats_of(mimo_backend *be) {
  cu_graphs *g = cu(be)->graphs;
  mimo_cuda_graph_stats s;
  memset(&s, 0, sizeof s);
  return g ? g->stats : s;
}

void cu_graphs_install(mimo_backend *be) {
  be->graph_begin = cu_graph_begin;
  be->graph_end = cu_graph_end;
}
