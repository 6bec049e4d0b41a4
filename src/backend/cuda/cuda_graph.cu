/* CUDA graphs for decode steps (backend.h graph_begin / graph_end).
 *
 * A decode step issues ~12 launches per layer; without dependent launch (SM80) each kernel starts only after the
 * previous one has drained, and each costs the host a few µs in the driver. The model brackets each layer of a
 * decode step (the last with the lm_head) with graph_begin/graph_end. The first layer runs as issued; for each
 * other the stream is captured, the captured graph updates an executable graph kept for that layer
 * (cudaGraphExecUpdate: new lengths, split counts, grids and pointers, same kernels; the one last used for this
 * step shape, else the most recent) and is launched. The device runs one layer while the host captures the next:
 * capture records without running, so one graph for the whole step, or a captured first layer, left the device
 * idle while the host captured (measured slower, docs/cuda.md round 10). A new shape's first step runs as issued:
 * it sizes the temporaries and the per-kernel caches (shared-memory attributes, occupancy) so that the captured
 * steps allocate nothing.
 *
 * Capture is relaxed: an op that must grow a temporary during capture takes plain cudaMalloc (legal while capturing,
 * unlike a stream-ordered allocation, which would become a node of the graph) and the old buffer is freed at the
 * next wait (cu_defer_free). A capture that breaks anyway fails that step with the reason (its work never ran) and
 * turns graphs off; the backend has no sticky error from it, so serving goes on. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cuda/cuda_internal.h"

enum { CG_EXECS = 4, CG_SEEN = 64 };

/* One part's (layer's) executable graphs, each last updated for a step shape. Another batch size usually keeps the
 * topology (the same kernels with other grids and arguments), so a new shape first tries to update the most
 * recently used graph before it makes one (instantiating costs far more than updating). */
typedef struct cg_exec {
  int shape;
  cudaGraphExec_t exec;
  unsigned long used;    /* tick of the last use */
} cg_exec;
typedef struct cg_part {
  cg_exec x[CG_EXECS];
} cg_part;

struct cu_graphs {
  cg_part *parts;        /* by part number */
  int n_parts;
  int seen[CG_SEEN];     /* shapes whose first step ran as issued (a ring: the oldest forgotten first) */
  int n_seen, seen_next;
  bool eager_step;       /* part 0 found a new shape: this whole step runs as issued */
  cg_part *open;         /* the part being captured, for shape open_shape */
  int open_shape;
  unsigned long tick;
  bool off;              /* a capture failed: no more graphs on this backend */
  mimo_cuda_graph_stats stats;
};

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* MIMO_CUDA_GRAPHS=0 (or --enforce-eager in the model): every op launched as issued. Measured on an H200 (round
 * 10): with dependent launch a tie (-2.7 to +1 % per decode step), without it (the SM80 launch mode) -2 to -5 %. */
static int graphs_mode = -1;
extern "C" int mimo_cuda_graphs_mode(int mode) {
  if (graphs_mode < 0) {
    const char *e = getenv("MIMO_CUDA_GRAPHS");
    graphs_mode = e && !strcmp(e, "0") ? 0 : 1;
  }
  const int old = graphs_mode;
  if (mode == 0 || mode == 1)
    graphs_mode = mode;
  return old;
}
extern "C" bool mimo_cuda_graphs_used(mimo_backend *be) {
  (void)be; /* one switch for every backend of the process */
  return mimo_cuda_graphs_mode(-1) == 1;
}

/* Whether shape's first step has run (as issued); records it if not. */
static bool seen_before(cu_graphs *g, int shape) {
  for (int i = 0; i < g->n_seen; i++)
    if (g->seen[i] == shape)
      return true;
  if (g->n_seen < CG_SEEN)
    g->seen[g->n_seen++] = shape;
  else
    g->seen[g->seen_next++ % CG_SEEN] = shape;
  return false;
}

static bool cu_graph_begin(mimo_backend *be, int shape, int part) {
  cu_ctx *c = cu(be);
  if (c->prof || c->err != MIMO_OK || part < 0 || !mimo_cuda_graphs_used(be))
    return false;
  if (!c->graphs && !(c->graphs = (cu_graphs *)calloc(1, sizeof *c->graphs)))
    return false;
  cu_graphs *g = c->graphs;
  if (g->off || g->open)
    return false;
  /* Part 0 always runs as issued: the device starts on it at once while the host captures part 1 (capturing
   * it too would leave the device idle for that long at the start of every step). A new shape's first step runs
   * as issued throughout: it sizes its temporaries and kernel set-ups. */
  if (part == 0) {
    g->eager_step = !seen_before(g, shape);
    return false;
  }
  if (g->eager_step) {
    g->stats.uncaptured++;
    return false;
  }
  if (part >= g->n_parts) {
    const int n = part + 1 > 2 * g->n_parts ? part + 1 : 2 * g->n_parts;
    cg_part *p = (cg_part *)realloc(g->parts, (size_t)n * sizeof *p);
    if (!p)
      return false;
    memset(p + g->n_parts, 0, (size_t)(n - g->n_parts) * sizeof *p);
    g->parts = p;
    g->n_parts = n;
  }
  if (MIMO_CUDA(c, cudaStreamBeginCapture(c->st, cudaStreamCaptureModeRelaxed)) != MIMO_OK)
    return false;
  c->capturing = true;
  g->open = &g->parts[part];
  g->open_shape = shape;
  return true;
}

/* Updates x's executable graph to graph; false (x unchanged for use) when the topology differs. */
static bool try_update(cu_graphs *g, cg_exec *x, cudaGraph_t graph) {
  const double t0 = now_ms();
  cudaGraphExecUpdateResultInfo info;
  const bool ok = cudaGraphExecUpdate(x->exec, graph, &info) == cudaSuccess;
  if (!ok)
    (void)cudaGetLastError();
  g->stats.update_ms += now_ms() - t0;
  ok ? g->stats.updates++ : g->stats.update_misses++;
  return ok;
}

/* Ends the capture; on success updates (or makes) the part's executable graph and launches it. */
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
    /* The captured work never ran, so this step fails; the device is fine (no sticky error), and the next steps
     * run as issued. */
    return mimo_errf(MIMO_E_INTERNAL, "CUDA graph capture of a decode step failed (%s); decode steps run as issued "
                     "from now on", cudaGetErrorString(ce));
  }
  /* the graph last used for this shape, else the most recent one, else a new one */
  cg_exec *same = NULL, *recent = NULL, *slot = NULL;
  for (int i = 0; i < CG_EXECS; i++) {
    cg_exec *x = &e->x[i];
    if (!x->exec) {
      slot = slot && !slot->exec ? slot : x;
      continue;
    }
    if (x->shape == g->open_shape)
      same = x;
    if (!recent || x->used > recent->used)
      recent = x;
    if (!slot || (slot->exec && x->used < slot->used))
      slot = x; /* a free entry, else the least recently used */
  }
  cg_exec *run = same && try_update(g, same, graph) ? same : NULL;
  if (!run && recent && recent != same && try_update(g, recent, graph))
    run = recent;
  mimo_status st = MIMO_OK;
  if (!run) {
    if (slot->exec)
      cudaGraphExecDestroy(slot->exec); /* a launch still queued keeps what it needs until it ends */
    slot->exec = NULL;
    const double t0 = now_ms();
    st = MIMO_CUDA(c, cudaGraphInstantiate(&slot->exec, graph, 0));
    g->stats.instantiate_ms += now_ms() - t0;
    if (st == MIMO_OK) {
      g->stats.instantiated++;
      run = slot;
    } else {
      slot->exec = NULL;
    }
  }
  size_t nodes = 0;
  if (st == MIMO_OK && cudaGraphGetNodes(graph, NULL, &nodes) == cudaSuccess)
    g->stats.last_nodes = (long)nodes;
  cudaGraphDestroy(graph);
  if (st == MIMO_OK) {
    run->shape = g->open_shape;
    run->used = ++g->tick;
    st = MIMO_CUDA(c, cudaGraphLaunch(run->exec, c->st));
  }
  if (st == MIMO_OK)
    g->stats.launches++;
  return st;
}

void cu_graphs_free(cu_ctx *c) {
  cu_graphs *g = c->graphs;
  if (!g)
    return;
  for (int p = 0; p < g->n_parts; p++)
    for (int i = 0; i < CG_EXECS; i++)
      if (g->parts[p].x[i].exec)
        cudaGraphExecDestroy(g->parts[p].x[i].exec);
  free(g->parts);
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
