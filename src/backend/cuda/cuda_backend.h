/* CUDA backend: C ABI. Built only with -DMIMO_CUDA=ON (MIMO_HAVE_CUDA is then
 * defined for every user of mimo_lib). */
#ifndef MIMO_BACKEND_CUDA_CUDA_BACKEND_H
#define MIMO_BACKEND_CUDA_CUDA_BACKEND_H
#include "backend/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates a backend on GPU `device`; every op of backend.h runs there. */
mimo_status mimo_backend_cuda_init(mimo_backend **out, int device);
/* Number of usable GPUs (0 when there is no driver or no device). */
int mimo_cuda_device_count(void);
/* One line naming the card, compute capability and memory. */
const char *mimo_cuda_device_name(mimo_backend *be);
/* Waits for queued work; returns the first error any op met. */
mimo_status mimo_cuda_sync(mimo_backend *be);
/* Device-to-device copy bandwidth in bytes/s (read + written), median of runs over `bytes`. */
double mimo_cuda_copy_bandwidth(mimo_backend *be, size_t bytes);
/* Microseconds a kernel that only reads takes over `bytes` (warps_per_sm warps on every SM, inflight 4 or 8 loads in
 * flight a lane), one launch or back_to_back (16 launches over distinct copies, not from L2); 0 on failure. The
 * ceiling of a kernel of that size (cuda_stream_probe.cu). */
double mimo_cuda_read_probe(mimo_backend *be, size_t bytes, int warps_per_sm, int inflight, int back_to_back);
/* Event timing on the backend's stream: start, then stop returns milliseconds since start. */
void mimo_cuda_timer_start(mimo_backend *be);
float mimo_cuda_timer_stop(mimo_backend *be);
/* Host <-> backend memory (tests and benchmarks). */
mimo_status mimo_cuda_upload(mimo_backend *be, float *dst, const float *host, size_t n);
/* Fills n floats with NaN (poison before a run). */
void mimo_cuda_poison(mimo_backend *be, float *p, size_t n);

/* Caps weights + KV + step scratch at fraction x the card's memory (vLLM's
 * --gpu-memory-utilization); allocations past it fail with a message naming them. */
mimo_status mimo_cuda_set_memory_fraction(mimo_backend *be, double fraction);
/* --cpu-offload-gb: up to gib GiB of the routed experts uploaded after this go to pinned host memory, which the
 * kernels read over the bus (PCIe, NVLink-C2C), instead of GPU memory; the bytes that went there so far. */
void mimo_cuda_set_cpu_offload(mimo_backend *be, double gib);
size_t mimo_cuda_offloaded_bytes(mimo_backend *be);
size_t mimo_cuda_memory_used(mimo_backend *be);

/* Decode steps as CUDA graphs, one per layer (cuda_graph.cu): counts since the backend began. */
typedef struct mimo_cuda_graph_stats {
  long launches;      /* graphs launched (parts of decode steps: layers) */
  long updates;       /* executable graphs updated in place to a captured part */
  long update_misses; /* updates refused (another topology: a kernel variant changed with the batch) */
  long instantiated;  /* executable graphs made (a first part, or no kept graph had the topology) */
  long uncaptured;    /* parts of a new shape's first step, run as issued to size its temporaries */
  long failures;      /* captures that broke (graphs then stay off on that backend) */
  long last_nodes;    /* nodes of the last captured part */
  double update_ms, instantiate_ms; /* host time in cudaGraphExecUpdate (misses included), cudaGraphInstantiate */
} mimo_cuda_graph_stats;
mimo_cuda_graph_stats mimo_cuda_graph_stats_of(mimo_backend *be);
/* Whether decode steps run as graphs: mode 1 (the default) yes, 0 (MIMO_CUDA_GRAPHS=0) no. mode < 0 only asks;
 * returns the mode before the call. */
int mimo_cuda_graphs_mode(int mode);
/* Whether this backend's decode steps run as graphs now. */
bool mimo_cuda_graphs_used(mimo_backend *be);

/* Tensor parallel (cuda_comm.cu, NCCL loaded at run time): joins n backends of
 * this process into one communicator (rank i = bes[i]); or, several processes:
 * node 0 makes the id, sends it to the others, and each process joins its n
 * backends as ranks first_rank.. with it. Sets be->all_reduce. */
mimo_status mimo_cuda_comm_init_all(mimo_backend **bes, int n);
mimo_status mimo_cuda_comm_unique_id(unsigned char id[128]);
mimo_status mimo_cuda_comm_init_ranks(mimo_backend **bes, int n, int nranks, int first_rank, const unsigned char id[128]);

#ifdef __cplusplus
}
#endif
#endif
