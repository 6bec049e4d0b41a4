/* mimo_cuda_check allreduce: the tensor-parallel all-reduce between the GPUs of
 * this host (NCCL through the backend's all_reduce hook). Checks the sum exactly
 * (small integers in fp32), then times decode-size messages, 8 KB ... 1 MB (one
 * hidden row of 4096 floats is 16 KB; a 64-token step 1 MB), and a large one for
 * the bus bandwidth. One thread per GPU, as the model's ranks run. */
#include <pthread.h>

#include "core/log.h"
#include "cuda_common.h"

typedef struct {
  mimo_backend *be;
  int rank, n, iters;
  long count;
  float *dev;
  double seconds;
  pthread_barrier_t *bar;
} ar_job;

static void *ar_thread(void *arg) {
  ar_job *j = arg;
  must(j->be->bind_thread(j->be), "bind");
  pthread_barrier_wait(j->bar);
  double t0 = mimo_now();
  for (int i = 0; i < j->iters; i++)
    j->be->all_reduce(j->be, j->dev, j->count);
  must(mimo_cuda_sync(j->be), "all-reduce");
  j->seconds = mimo_now() - t0;
  return NULL;
}

static double run(ar_job *jobs, int n, long count, int iters) {
  pthread_t th[16];
  pthread_barrier_t bar;
  pthread_barrier_init(&bar, NULL, (unsigned)n);
  for (int r = 0; r < n; r++) {
    jobs[r].count = count;
    jobs[r].iters = iters;
    jobs[r].bar = &bar;
    pthread_create(&th[r], NULL, ar_thread, &jobs[r]);
  }
  double worst = 0;
  for (int r = 0; r < n; r++) {
    pthread_join(th[r], NULL);
    worst = jobs[r].seconds > worst ? jobs[r].seconds : worst;
  }
  pthread_barrier_destroy(&bar);
  return worst / iters;
}

int cuda_allreduce_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  int n = mimo_cuda_device_count();
  if (n < 2) {
    printf("allreduce: %d GPU(s): skipped (needs 2)\nallreduce: 0 passed, 0 failed\n", n);
    return 0;
  }
  if (n > 16)
    n = 16;
  mimo_backend *bes[16];
  ar_job jobs[16];
  const long maxc = 16L << 20; /* 64 MB of floats */
  for (int r = 0; r < n; r++) {
    must(mimo_backend_cuda_init(&bes[r], r), "cuda backend");
    jobs[r] = (ar_job){.be = bes[r], .rank = r, .n = n};
  }
  must(mimo_cuda_comm_init_all(bes, n), "NCCL");
  float *h = xmalloc((size_t)maxc * sizeof(float));
  int pass = 0, fail = 0;
  for (int r = 0; r < n; r++) {
    must(bes[r]->bind_thread(bes[r]), "bind");
    jobs[r].dev = bes[r]->alloc(bes[r], (size_t)maxc);
    for (long i = 0; i < maxc; i++)
      h[i] = (float)((i * 7 + r * 13) % 1024);
    must(mimo_cuda_upload(bes[r], jobs[r].dev, h, (size_t)maxc), "upload");
  }
  run(jobs, n, maxc, 1);
  for (int r = 0; r < n; r++) {
    must(bes[r]->bind_thread(bes[r]), "bind");
    must(bes[r]->download(bes[r], h, jobs[r].dev, (size_t)maxc), "download");
    long bad = 0;
    for (long i = 0; i < maxc; i++) {
      double want = 0;
      for (int q = 0; q < n; q++)
        want += (double)((i * 7 + q * 13) % 1024);
      bad += h[i] != (float)want;
    }
    printf("%-4s all-reduce sum on rank %d of %d: %ld of %ld elements wrong\n", bad ? "FAIL" : "ok", r, n, bad, maxc);
    bad ? fail++ : pass++;
  }
  long sizes[] = {2048, 4096, 16384, 65536, 262144, 16L << 20};
  for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
    long c = sizes[s];
    int iters = c > 1000000 ? 20 : 200;
    run(jobs, n, c, 10); /* warm */
    double t = run(jobs, n, c, iters);
    double bytes = c * 4.0, bus = 2.0 * (n - 1) / n * bytes / t;
    printf("BENCH allreduce %d GPUs NCCL %.0f KB: %.1f us, algbw %.1f GB/s, busbw %.1f GB/s\n", n, bytes / 1024,
           t * 1e6, bytes / t / 1e9, bus / 1e9);
  }
  for (int r = 0; r < n; r++) {
    bes[r]->release(bes[r], jobs[r].dev);
    bes[r]->free(bes[r]);
  }
  free(h);
  printf("allreduce: %d passed, %d failed\n", pass, fail);
  return fail ? 1 : 0;
}
