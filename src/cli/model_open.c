#include "cli/model_open.h"

#include <stdlib.h>
#include <string.h>

#include "core/log.h"
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

static mimo_status make_backend(const char *name, int device, int threads, double gmu, mimo_backend **be) {
#ifdef MIMO_HAVE_CUDA
  if (strcmp(name, "cuda") == 0) {
    MIMO_TRY(mimo_backend_cuda_init(be, device));
    mimo_status st = mimo_cuda_set_memory_fraction(*be, gmu > 0 ? gmu : 0.9);
    if (st != MIMO_OK) {
      (*be)->free(*be);
      return st;
    }
    mimo_info("backend cuda %d: %s", device, mimo_cuda_device_name(*be));
    return MIMO_OK;
  }
#endif
  (void)device;
  (void)gmu;
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

mimo_status mimo_open_model(const mimo_open_opts *o, mimo_model **out) {
  const char *name = mimo_open_backend_name(o->backend);
  int tp = o->tp > 1 ? o->tp : 1;
  double t0 = mimo_now();
  if (tp == 1) {
    if (o->ep)
      mimo_warn("--enable-expert-parallel has no effect with one device");
    mimo_backend *be;
    MIMO_TRY(make_backend(name, 0, o->threads, o->gpu_memory_utilization, &be));
    mimo_status st = mimo_model_load(o->dir, be, out);
    if (st != MIMO_OK) {
      be->free(be);
      return st;
    }
    (*out)->own_be = true;
    mimo_info("loaded %s in %.2f s (%.1f MB of weights)", o->dir, mimo_now() - t0, (*out)->w.bytes / 1e6);
    return MIMO_OK;
  }
  int *dev = calloc((size_t)tp, sizeof *dev);
  if (!dev)
    return mimo_errf(MIMO_E_NOMEM, "devices");
  bool shared = false;
  for (int r = 0; r < tp; r++)
    dev[r] = r;
  if (o->devices) {
    const char *p = o->devices;
    for (int r = 0; r < tp; r++) {
      char *end;
      long d = strtol(p, &end, 10);
      if (end == p || d < 0 || d > 1023 || (*end && *end != ',') || (r == tp - 1 && *end)) {
        free(dev);
        return mimo_errf(MIMO_E_INVALID, "--devices '%s': need %d comma-separated GPU numbers", o->devices, tp);
      }
      dev[r] = (int)d;
      for (int q = 0; q < r; q++)
        shared |= dev[q] == dev[r];
      p = *end ? end + 1 : end;
    }
  }
#ifdef MIMO_HAVE_CUDA
  for (int r = 0; r < tp && strcmp(name, "cuda") == 0; r++)
    if (dev[r] >= mimo_cuda_device_count()) {
      int have = mimo_cuda_device_count(), want = dev[r];
      free(dev);
      return mimo_errf(MIMO_E_INVALID, "--tensor-parallel-size %d: rank %d wants GPU %d; %d present (see --devices)", tp,
                       r, want, have);
    }
#endif
  mimo_backend **bes = calloc((size_t)tp, sizeof *bes);
  if (!bes) {
    free(dev);
    return mimo_errf(MIMO_E_NOMEM, "backends");
  }
  int per_rank = o->threads > 0 ? (o->threads / tp > 0 ? o->threads / tp : 1) : 0;
  mimo_status st = MIMO_OK;
  for (int r = 0; r < tp && st == MIMO_OK; r++)
    st = make_backend(name, dev[r], per_rank, o->gpu_memory_utilization, &bes[r]);
#ifdef MIMO_HAVE_CUDA
  if (st == MIMO_OK && strcmp(name, "cuda") == 0 && !shared)
    st = mimo_cuda_comm_init_all(bes, tp);
  if (shared && strcmp(name, "cuda") == 0)
    mimo_warn("--devices %s: ranks share a GPU, so they sum through host memory (a test mode; NCCL needs one "
              "GPU per rank)", o->devices);
#endif
  free(dev);
  if (st != MIMO_OK) {
    for (int r = 0; r < tp; r++)
      if (bes[r])
        bes[r]->free(bes[r]);
    free(bes);
    return st;
  }
  st = mimo_model_load_tp(o->dir, bes, tp, o->ep, out); /* owns the backends from here */
  free(bes);
  return st;
}
