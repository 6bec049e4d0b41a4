/* NCCL between CUDA backends (tensor parallel). NCCL is opened at run time
 * (dlopen "libnccl.so.2"): a single-GPU run needs no NCCL installed, and the
 * ~220 MB library is found where the system keeps it (toolkit, distribution
 * package or the nvidia-nccl Python wheel on LD_LIBRARY_PATH). Every call's
 * result is checked; the all-reduce runs on the backend's stream, in place. */
#include <dlfcn.h>
#include <nccl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_internal.h"

typedef struct {
  ncclResult_t (*get_unique_id)(ncclUniqueId *);
  ncclResult_t (*comm_init_all)(ncclComm_t *, int, const int *);
  ncclResult_t (*comm_init_rank)(ncclComm_t *, int, ncclUniqueId, int);
  ncclResult_t (*all_reduce)(const void *, void *, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t);
  ncclResult_t (*comm_destroy)(ncclComm_t);
  const char *(*error_string)(ncclResult_t);
  ncclResult_t (*group_start)(void);
  ncclResult_t (*group_end)(void);
} nccl_api;

static nccl_api api;
static mimo_status api_status = MIMO_E_INTERNAL;
static char api_err[512];
static pthread_once_t api_once = PTHREAD_ONCE_INIT;

static void api_open(void) {
  const char *names[] = {"libnccl.so.2", "libnccl.so"};
  void *h = NULL;
  for (int i = 0; i < 2 && !h; i++)
    h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    snprintf(api_err, sizeof api_err,
             "NCCL is needed for more than one GPU: cannot load libnccl.so.2 (%s); install NCCL or add its "
             "directory to LD_LIBRARY_PATH", dlerror());
    return;
  }
#define SYM(field, name)                                                                           \
  if (!(*(void **)&api.field = dlsym(h, name))) {                                                  \
    snprintf(api_err, sizeof api_err, "libnccl.so.2 has no symbol %s (NCCL too old?)", name);      \
    return;                                                                                        \
  }
  SYM(get_unique_id, "ncclGetUniqueId");
  SYM(comm_init_all, "ncclCommInitAll");
  SYM(comm_init_rank, "ncclCommInitRank");
  SYM(all_reduce, "ncclAllReduce");
  SYM(comm_destroy, "ncclCommDestroy");
  SYM(error_string, "ncclGetErrorString");
  SYM(group_start, "ncclGroupStart");
  SYM(group_end, "ncclGroupEnd");
#undef SYM
  api_status = MIMO_OK;
}

static mimo_status api_get(void) {
  pthread_once(&api_once, api_open);
  return api_status == MIMO_OK ? MIMO_OK : mimo_errf(MIMO_E_NCCL, "%s", api_err);
}

typedef struct cu_comm {
  ncclComm_t comm;
  int rank, nranks;
} cu_comm;

static void nccl_all_reduce(mimo_backend *be, float *x, long n) {
  cu_ctx *c = cu(be);
  cu_comm *k = (cu_comm *)be->comm;
  ncclResult_t r = api.all_reduce(x, x, (size_t)n, ncclFloat32, ncclSum, k->comm, c->st);
  if (r != ncclSuccess)
    cu_fail(c, "ncclAllReduce", api.error_string(r), __FILE__, __LINE__);
}

static mimo_status attach(mimo_backend *be, ncclComm_t comm, int rank, int nranks) {
  cu_comm *k = (cu_comm *)calloc(1, sizeof *k);
  if (!k) {
    api.comm_destroy(comm);
    return mimo_errf(MIMO_E_NOMEM, "NCCL communicator");
  }
  k->comm = comm;
  k->rank = rank;
  k->nranks = nranks;
  be->comm = k;
  be->all_reduce = nccl_all_reduce;
  return MIMO_OK;
}

extern "C" mimo_status mimo_cuda_comm_init_all(mimo_backend **bes, int n) {
  MIMO_TRY(api_get());
  int *devs = (int *)malloc((size_t)n * sizeof *devs);
  ncclComm_t *comms = (ncclComm_t *)calloc((size_t)n, sizeof *comms);
  if (!devs || !comms) {
    free(devs);
    free(comms);
    return mimo_errf(MIMO_E_NOMEM, "NCCL communicators");
  }
  for (int i = 0; i < n; i++)
    devs[i] = cu(bes[i])->device;
  ncclResult_t r = api.comm_init_all(comms, n, devs);
  mimo_status st = MIMO_OK;
  if (r != ncclSuccess)
    st = mimo_errf(MIMO_E_NCCL, "ncclCommInitAll over %d GPUs: %s", n, api.error_string(r));
  for (int i = 0; i < n; i++)
    if (st == MIMO_OK)
      st = attach(bes[i], comms[i], i, n);
    else if (r == ncclSuccess && !bes[i]->comm)
      api.comm_destroy(comms[i]);
  free(devs);
  free(comms);
  return st;
}

extern "C" mimo_status mimo_cuda_comm_unique_id(unsigned char id[128]) {
  MIMO_TRY(api_get());
  ncclUniqueId u;
  ncclResult_t r = api.get_unique_id(&u);
  if (r != ncclSuccess)
    return mimo_errf(MIMO_E_NCCL, "ncclGetUniqueId: %s", api.error_string(r));
  memcpy(id, u.internal, sizeof u.internal);
  return MIMO_OK;
}

extern "C" mimo_status mimo_cuda_comm_init_ranks(mimo_backend **bes, int n, int nranks, int first_rank,
                                                 const unsigned char id[128]) {
  MIMO_TRY(api_get());
  ncclUniqueId u;
  memcpy(u.internal, id, sizeof u.internal);
  ncclComm_t *comms = (ncclComm_t *)calloc((size_t)n, sizeof *comms);
  if (!comms)
    return mimo_errf(MIMO_E_NOMEM, "NCCL communicators");
  /* One thread joins several ranks: NCCL wants them inside one group call. */
  ncclResult_t r = api.group_start();
  for (int i = 0; i < n && r == ncclSuccess; i++) {
    if (cudaSetDevice(cu(bes[i])->device) != cudaSuccess) {
      r = ncclInvalidUsage;
      break;
    }
    r = api.comm_init_rank(&comms[i], nranks, u, first_rank + i);
  }
  ncclResult_t e = api.group_end();
  if (r == ncclSuccess)
    r = e;
  mimo_status st = MIMO_OK;
  if (r != ncclSuccess)
    st = mimo_errf(MIMO_E_NCCL, "ncclCommInitRank (ranks %d..%d of %d): %s", first_rank, first_rank + n - 1, nranks,
                   api.error_string(r));
  for (int i = 0; i < n && st == MIMO_OK; i++)
    st = attach(bes[i], comms[i], first_rank + i, nranks);
  free(comms);
  return st;
}

void cu_comm_free(mimo_backend *be) {
  if (be->all_reduce != nccl_all_reduce || !be->comm)
    return;
  cu_comm *k = (cu_comm *)be->comm;
  api.comm_destroy(k->comm);
  free(k);
  be->comm = NULL;
}
