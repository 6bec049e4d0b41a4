/* A fixed pool of worker threads for data-parallel loops. One pool per engine;
 * parallel_for calls must not nest. */
#ifndef MIMO_CORE_THREADS_H
#define MIMO_CORE_THREADS_H
#include "core/status.h"

typedef struct mimo_pool mimo_pool;
/* fn is called as fn(ctx, begin, end) over disjoint ranges covering [0, n). */
typedef void (*mimo_range_fn)(void *ctx, long begin, long end);

mimo_status mimo_pool_init(mimo_pool **out, int n_threads); /* n_threads <= 0: all cores */
void mimo_pool_free(mimo_pool *p);
int mimo_pool_size(const mimo_pool *p);
/* Splits [0, n) into chunks of at least min_chunk and runs them on all threads. */
void mimo_parallel_for(mimo_pool *p, long n, long min_chunk, mimo_range_fn fn, void *ctx);
int mimo_cpu_count(void);
#endif
