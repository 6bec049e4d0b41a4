#include "cli/model_open.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "core/fileio.h"
#include "core/log.h"
#include "model/mimo_v2_tp_net.h"
#include "text/tokenizer.h"
#ifdef MIMO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

const char *mimo_open_backend_name(const char *backend) {
#ifdef MIMO_HAVE_CUDA
  if (!backend)
    return mimo_cuda_device_count() > 0 ? "cuda" : "cpu";
#endif
  return backend ? backend : "cpu";
}

static mimo_status make_backend(const char *name, int device, int threads, double gmu, double offload_gb,
                                mimo_backend **be) {
#ifdef MIMO_HAVE_CUDA
  if (strcmp(name, "cuda") == 0) {
    MIMO_TRY(mimo_backend_cuda_init(be, device));
    mimo_status st = mimo_cuda_set_memory_fraction(*be, gmu > 0 ? gmu : 0.9);
    if (st != MIMO_OK) {
      (*be)->free(*be);
      return st;
    }
    mimo_cuda_set_cpu_offload(*be, offload_gb);
    mimo_info("backend cuda %d: %s", device, mimo_cuda_device_name(*be));
    return MIMO_OK;
  }
#endif
  (void)device;
  (void)gmu;
  if (offload_gb > 0)
    mimo_warn("--cpu-offload-gb %g: the %s backend keeps its weights in host memory already", offload_gb, name);
  if (strcmp(name, "cpu") == 0)
    return mimo_backend_cpu_init(be, threads);
  return mimo_errf(MIMO_E_INVALID, "backend '%s' is not available in this build (have: cpu%s)", name,
#ifdef MIMO_HAVE_CUDA
                   ", cuda"
#else
                   ""
#endif
  );
}

bool mimo_open_is_worker(const mimo_open_opts *o) { return o->nnodes > 1 && o->node_rank > 0; }

bool mimo_open_parse(const mimo_arg *a, int n, const char *dir, mimo_open_opts *o) {
  bool bad = false;
  *o = (mimo_open_opts){.dir = dir,
                        .backend = mimo_arg_str(a, n, "backend", NULL),
                        .threads = (int)mimo_arg_long(a, n, "threads", 0, &bad),
                        .tp = (int)mimo_arg_long(a, n, "tensor-parallel-size", 1, &bad),
                        .ep = mimo_arg_str(a, n, "enable-expert-parallel", NULL) != NULL,
                        .devices = mimo_arg_str(a, n, "devices", NULL),
                        .gpu_memory_utilization = mimo_arg_double(a, n, "gpu-memory-utilization", 0.9, &bad),
                        .cpu_offload_gb = mimo_arg_double(a, n, "cpu-offload-gb", 0, &bad),
                        .nnodes = (int)mimo_arg_long(a, n, "nnodes", 1, &bad),
                        .node_rank = (int)mimo_arg_long(a, n, "node-rank", 0, &bad),
                        .master_addr = mimo_arg_str(a, n, "master-addr", "127.0.0.1"),
                        .master_port = (int)mimo_arg_long(a, n, "master-port", 29500, &bad),
                        .host_sampling = mimo_arg_str(a, n, "host-sampling", NULL) != NULL,
                        .eager = mimo_arg_str(a, n, "enforce-eager", NULL) != NULL};
  if (bad)
    return false; /* mimo_arg_* named the value */
  const char *kvt = mimo_arg_str(a, n, "kv-cache-dtype", "float32");
  if (!strcmp(kvt, "bfloat16") || !strcmp(kvt, "bf16")) {
    o->kv_bf16 = true;
  } else if (strcmp(kvt, "float32") && strcmp(kvt, "fp32") && strcmp(kvt, "auto")) {
    fprintf(stderr, "mimo: --kv-cache-dtype '%s': need float32 or bfloat16\n", kvt);
    return false;
  }
  if (o->threads < 0 || o->tp < 1 || o->tp > 1024 || !(o->gpu_memory_utilization > 0 && o->gpu_memory_utilization <= 1)) {
    fprintf(stderr, "mimo: need --threads >= 0, 1 <= --tensor-parallel-size <= 1024 and 0 < --gpu-memory-utilization <= 1\n");
    return false;
  }
  if (!(o->cpu_offload_gb >= 0 && o->cpu_offload_gb <= 1 << 20)) {
    fprintf(stderr, "mimo: --cpu-offload-gb %g: need 0 to 1048576 GiB\n", o->cpu_offload_gb);
    return false;
  }
  if (o->nnodes < 1 || o->nnodes > 64 || o->node_rank < 0 || o->node_rank >= o->nnodes || o->master_port < 1 ||
      o->master_port > 65535) {
    fprintf(stderr, "mimo: need 1 <= --nnodes <= 64, 0 <= --node-rank < --nnodes and a --master-port in 1..65535\n");
    return false;
  }
  return true;
}

static mimo_status open_model(const mimo_open_opts *o, mimo_model **out) {
  const char *name = mimo_open_backend_name(o->backend);
  int tp = o->tp > 1 ? o->tp : 1, nnodes = o->nnodes > 1 ? o->nnodes : 1;
  if (tp % nnodes)
    return mimo_errf(MIMO_E_INVALID, "--tensor-parallel-size %d does not split over --nnodes %d", tp, nnodes);
  tp /= nnodes; /* the ranks in this process */
  mimo_tp_net *net = NULL;
  if (nnodes > 1) {
    mimo_net_opts no = {.nnodes = nnodes, .node_rank = o->node_rank, .master_addr = o->master_addr,
                        .master_port = o->master_port};
    MIMO_TRY(mimo_tp_net_open(&no, &net));
  }
  double t0 = mimo_now();
  if (tp == 1 && !net) {
    if (o->ep)
      mimo_warn("--enable-expert-parallel has no effect with one device");
    mimo_backend *be;
    MIMO_TRY(make_backend(name, 0, o->threads, o->gpu_memory_utilization, o->cpu_offload_gb, &be));
    mimo_status st = mimo_model_load(o->dir, be, out);
    if (st != MIMO_OK) {
      be->free(be);
      return st;
    }
    (*out)->own_be = true;
    mimo_info("loaded %s in %.2f s (%.1f MB of weights)", o->dir, mimo_now() - t0, (*out)->w.bytes / 1e6);
#ifdef MIMO_HAVE_CUDA
    if (o->cpu_offload_gb > 0 && strcmp(name, "cuda") == 0)
      mimo_info("routed experts in pinned host memory: %.2f GiB (--cpu-offload-gb %g)",
                mimo_cuda_offloaded_bytes(be) / 1073741824.0, o->cpu_offload_gb);
#endif
    return MIMO_OK;
  }
  /* The group's backends: rank r on GPU dev[r] (--devices, default r). */
  mimo_status st = MIMO_OK;
  bool shared = false;
  int *dev = calloc((size_t)tp, sizeof *dev);
  mimo_backend **bes = calloc((size_t)tp, sizeof *bes);
  if (!dev || !bes) {
    st = mimo_errf(MIMO_E_NOMEM, "backends");
    goto fail;
  }
  for (int r = 0; r < tp; r++)
    dev[r] = r;
  for (int r = 0, at = 0; o->devices && r < tp; r++) {
    char *end;
    long d = strtol(o->devices + at, &end, 10);
    if (end == o->devices + at || d < 0 || d > 1023 || (*end && *end != ',') || (r == tp - 1 && *end)) {
      st = mimo_errf(MIMO_E_INVALID, "--devices '%s': need %d comma-separated GPU numbers", o->devices, tp);
      goto fail;
    }
    dev[r] = (int)d;
    for (int q = 0; q < r; q++)
      shared |= dev[q] == dev[r];
    at = (int)(end - o->devices) + (*end ? 1 : 0);
  }
  const bool cuda = strcmp(name, "cuda") == 0;
#ifdef MIMO_HAVE_CUDA
  for (int r = 0; r < tp && cuda; r++)
    if (dev[r] >= mimo_cuda_device_count()) {
      st = mimo_errf(MIMO_E_INVALID, "--tensor-parallel-size %d: rank %d wants GPU %d; %d present (see --devices)", tp,
                     r, dev[r], mimo_cuda_device_count());
      goto fail;
    }
#endif
  int per_rank = o->threads > 0 ? (o->threads / tp > 0 ? o->threads / tp : 1) : 0;
  for (int r = 0; r < tp && st == MIMO_OK; r++)
    st = make_backend(name, dev[r], per_rank, o->gpu_memory_utilization, o->cpu_offload_gb, &bes[r]);
#ifdef MIMO_HAVE_CUDA
  if (st == MIMO_OK && cuda && !shared && !net)
    st = mimo_cuda_comm_init_all(bes, tp);
  if (cuda && !shared && net) { /* node 0's NCCL id to every node, then all join */
    unsigned char id[128] = {0};
    int code = st == MIMO_OK && o->node_rank == 0 ? (int)mimo_cuda_comm_unique_id(id) : (int)st, node = -1;
    if (mimo_tp_net_agree(net, &code, &node) != MIMO_OK || code != MIMO_OK)
      st = st != MIMO_OK ? st : mimo_errf(MIMO_E_NCCL, "setting up NCCL failed on node %d", node);
    if (st == MIMO_OK)
      st = mimo_tp_net_bcast(net, id, sizeof id);
    if (st == MIMO_OK)
      st = mimo_cuda_comm_init_ranks(bes, tp, tp * nnodes, o->node_rank * tp, id);
  }
  if (shared && cuda)
    mimo_warn("--devices %s: ranks share a GPU, so they sum through host memory (a test mode; NCCL needs one "
              "GPU per rank)", o->devices);
#endif
  (void)cuda; /* only GPUs care which backend and whether ranks share a device */
  (void)shared;
  if (st != MIMO_OK)
    goto fail;
  free(dev);
  st = mimo_model_load_tp(o->dir, bes, tp, o->ep, net, out); /* owns the backends and the link from here */
  free(bes);
  return st;
fail:
  for (int r = 0; bes && r < tp; r++)
    if (bes[r])
      bes[r]->free(bes[r]);
  free(bes);
  free(dev);
  mimo_tp_net_close(net);
  return st;
}

mimo_status mimo_open_model(const mimo_open_opts *o, mimo_model **out) {
  MIMO_TRY(open_model(o, out));
  (*out)->host_sampling = o->host_sampling;
  (*out)->eager = o->eager;
  { /* a measuring switch, like the CUDA backend's MIMO_CUDA_* ones (docs/speculative.md) */
    const char *gv = getenv("MIMO_GRAPHS_VERIFY");
    (*out)->graph_verify = gv && !strcmp(gv, "1");
  }
  mimo_status st = mimo_model_set_kv_bf16(*out, o->kv_bf16);
  if (st != MIMO_OK) {
    mimo_model_free(*out);
    *out = NULL;
  }
  return st;
}

void mimo_runner_free(mimo_runner *r) {
  mimo_kv_seq_free(r->seq);
  mimo_model_free(r->m);
}

mimo_status mimo_runner_init(mimo_runner *r, const char *dir, const mimo_arg *a, int n) {
  memset(r, 0, sizeof *r);
  mimo_open_opts o;
  if (!mimo_open_parse(a, n, dir, &o))
    return mimo_errf(MIMO_E_INVALID, "bad model options (see --help)");
  MIMO_TRY(mimo_open_model(&o, &r->m));
  if (mimo_open_is_worker(&o)) {
    r->worker = true;
    return mimo_model_run_worker(r->m);
  }
  return mimo_kv_seq_init(&r->seq, &r->m->cfg);
}

mimo_status mimo_runner_restart(mimo_runner *r) {
  mimo_kv_seq_free(r->seq);
  r->seq = NULL;
  return mimo_kv_seq_init(&r->seq, &r->m->cfg);
}

mimo_status mimo_runner_feed(mimo_runner *r, const int *ids, int n, int chunk, float *logits, float *margin) {
  return mimo_runner_feed_embeds(r, ids, n, chunk, logits, margin, NULL, 0);
}

mimo_status mimo_runner_feed_embeds(mimo_runner *r, const int *ids, int n, int chunk, float *logits, float *margin,
                                    const mimo_embed_run *runs, int n_runs) {
  const int V = r->m->cfg.vocab_size;
  mimo_embed_run *part = n_runs ? malloc((size_t)n_runs * sizeof *part) : NULL;
  if (n_runs && !part)
    return mimo_errf(MIMO_E_NOMEM, "image rows");
  mimo_status st = MIMO_OK;
  for (int i = 0; i < n && st == MIMO_OK; i += chunk) {
    int k = n - i < chunk ? n - i : chunk;
    const int n_part = mimo_embed_runs_slice(runs, n_runs, i, k, 0, r->m->cfg.hidden_size, part);
    mimo_batch b = {.n_seqs = 1, .seqs = &r->seq, .n_tokens = &k, .tokens = ids + i, .all_logits = 1,
                    .embeds = part, .n_embeds = n_part};
    r->m->route_margin = margin ? margin + i : NULL;
    st = mimo_model_forward(r->m, &b, logits + (size_t)i * V);
    r->m->route_margin = NULL;
  }
  free(part);
  return st;
}

/* --tokens ids, or --file text through the checkpoint's tokenizer. */
mimo_status mimo_input_ids(const char *dir, const char *file, const char *toks, int **ids, long *T) {
  if (toks) {
    const int n = mimo_parse_ids(toks, ids);
    if (n <= 0) {
      if (n == 0)
        free(*ids);
      *ids = NULL;
      return mimo_errf(MIMO_E_INVALID, "--tokens: not a list of token ids");
    }
    *T = n;
    return MIMO_OK;
  }
  char *text = NULL;
  size_t len = 0;
  MIMO_TRY(mimo_read_file(file, &text, &len, (size_t)1 << 30));
  mimo_tok *tok = NULL;
  size_t n = 0;
  mimo_status st = mimo_tok_load(dir, &tok);
  if (st == MIMO_OK)
    st = mimo_tok_encode(tok, text, len, ids, &n);
  *T = (long)n;
  mimo_tok_free(tok);
  free(text);
  return st;
}
