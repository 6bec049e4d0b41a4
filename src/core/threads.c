#include "core/threads.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct mimo_pool {
  int n;
  pthread_t *threads;
  pthread_mutex_t mu;
  pthread_cond_t wake, done;
  atomic_ulong generation; /* bumped per job so waiting workers see a new one */
  atomic_int stop;
  /* current job */
  mimo_range_fn fn;
  void *ctx;
  long total, chunk;
  atomic_long next;
  atomic_int busy; /* workers still in the current job */
};

/* Back-to-back jobs (a decode step is hundreds of small ones) are handed over by
 * spinning briefly before sleeping: a futex wake costs tens of microseconds. */
enum { SPIN_ITERS = 1000 };

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

int mimo_cpu_count(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* Chunks are handed out dynamically so uneven work (MoE experts) balances. */
static void run_chunks(mimo_pool *p) {
  for (;;) {
    long b = atomic_fetch_add(&p->next, p->chunk);
    if (b >= p->total)
      break;
    long e = b + p->chunk < p->total ? b + p->chunk : p->total;
    p->fn(p->ctx, b, e);
  }
}

static void *worker(void *arg) {
  mimo_pool *p = arg;
  unsigned long seen = 0;
  for (;;) {
    for (int i = 0; i < SPIN_ITERS && atomic_load(&p->generation) == seen && !p->stop; i++)
      cpu_relax();
    pthread_mutex_lock(&p->mu);
    while (!p->stop && atomic_load(&p->generation) == seen)
      pthread_cond_wait(&p->wake, &p->mu);
    if (p->stop) {
      pthread_mutex_unlock(&p->mu);
      break;
    }
    seen = atomic_load(&p->generation);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p);
    if (atomic_fetch_sub(&p->busy, 1) == 1) {
      pthread_mutex_lock(&p->mu);
      pthread_cond_signal(&p->done);
      pthread_mutex_unlock(&p->mu);
    }
  }
  return NULL;
}

mimo_status mimo_pool_init(mimo_pool **out, int n_threads) {
  mimo_pool *p = calloc(1, sizeof *p);
  if (!p)
    return mimo_errf(MIMO_E_NOMEM, "thread pool");
  p->n = n_threads > 0 ? n_threads : mimo_cpu_count();
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->wake, NULL);
  pthread_cond_init(&p->done, NULL);
  p->threads = calloc((size_t)p->n, sizeof *p->threads);
  if (!p->threads) {
    free(p);
    return mimo_errf(MIMO_E_NOMEM, "thread pool");
  }
  for (int i = 1; i < p->n; i++) { /* the caller is thread 0 */
    if (pthread_create(&p->threads[i], NULL, worker, p) != 0) {
      p->n = i;
      mimo_pool_free(p);
      return mimo_errf(MIMO_E_INTERNAL, "cannot start worker thread %d", i);
    }
  }
  *out = p;
  return MIMO_OK;
}

void mimo_pool_free(mimo_pool *p) {
  if (!p)
    return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++)
    pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->wake);
  pthread_cond_destroy(&p->done);
  free(p->threads);
  free(p);
}

int mimo_pool_size(const mimo_pool *p) { return p ? p->n : 1; }

void mimo_parallel_for(mimo_pool *p, long n, long min_chunk, mimo_range_fn fn, void *ctx) {
  if (n <= 0)
    return;
  if (min_chunk < 1)
    min_chunk = 1;
  if (!p || p->n == 1 || n <= min_chunk) {
    fn(ctx, 0, n);
    return;
  }
  long chunk = (n + 4L * p->n - 1) / (4L * p->n); /* ~4 chunks per thread */
  if (chunk < min_chunk)
    chunk = min_chunk;
  pthread_mutex_lock(&p->mu);
  p->fn = fn;
  p->ctx = ctx;
  p->total = n;
  p->chunk = chunk;
  atomic_store(&p->next, 0);
  atomic_store(&p->busy, p->n - 1);
  atomic_fetch_add(&p->generation, 1);
  pthread_cond_broadcast(&p->wake);
  pthread_mutex_unlock(&p->mu);
  run_chunks(p);
  for (int i = 0; i < SPIN_ITERS && atomic_load(&p->busy) > 0; i++)
    cpu_relax();
  pthread_mutex_lock(&p->mu);
  while (atomic_load(&p->busy) > 0)
    pthread_cond_wait(&p->done, &p->mu);
  pthread_mutex_unlock(&p->mu);
}
