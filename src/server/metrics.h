/* Prometheus counters and histograms for /metrics (vLLM-like names). */
#ifndef MIMO_SERVER_METRICS_H
#define MIMO_SERVER_METRICS_H
#include "engine/engine.h"
#include "server/sbuf.h"

typedef struct mimo_metrics mimo_metrics;
typedef enum { MIMO_HIST_TTFT, MIMO_HIST_ITL, MIMO_HIST_E2E, MIMO_HIST_HTTP, MIMO_HIST_N } mimo_hist;

mimo_metrics *mimo_metrics_new(const char *model_name);
void mimo_metrics_free(mimo_metrics *m);
void mimo_metrics_observe(mimo_metrics *m, mimo_hist h, double seconds);
/* One finished HTTP request (the mimo_http observer signature). */
void mimo_metrics_http(void *m, const char *path, int status, double seconds);
/* Counts a finished generation by finish reason ("stop", "length", ...). */
void mimo_metrics_finish(mimo_metrics *m, const char *reason);
/* api_cpu_s: the HTTP threads' CPU seconds (mimo_http_cpu_seconds). */
void mimo_metrics_render(mimo_metrics *m, const mimo_engine_stats *es, double api_cpu_s, mimo_sbuf *out);
#endif
