#include "server/metrics.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NB 14
#define MAX_KEYS 64

static const double bounds[MIMO_HIST_N][NB] = {
    {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
    {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5},
    {0.01, 0.05, 0.1, 0.3, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 120, 300},
    {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
};
static const char *names[MIMO_HIST_N] = {
    "vllm:time_to_first_token_seconds", "vllm:inter_token_latency_seconds", "vllm:e2e_request_latency_seconds",
    "mimo:http_request_duration_seconds"};
static const char *helps[MIMO_HIST_N] = {"Time to first token", "Time between output tokens",
                                         "End-to-end generation latency", "HTTP request duration"};

typedef struct hist {
  long count[NB + 1];
  double sum;
  long n;
} hist;

typedef struct key_count {
  char key[96];
  long n;
} key_count;

struct mimo_metrics {
  pthread_mutex_t mu;
  char model[128];
  hist h[MIMO_HIST_N];
  key_count http[MAX_KEYS], fin[8];
  int n_http, n_fin;
};

mimo_metrics *mimo_metrics_new(const char *model_name) {
  mimo_metrics *m = calloc(1, sizeof *m);
  if (!m)
    return NULL;
  pthread_mutex_init(&m->mu, NULL);
  snprintf(m->model, sizeof m->model, "%s", model_name);
  for (char *p = m->model; *p; p++) /* label values must not break the text format */
    if (*p == '"' || *p == '\\' || *p == '\n')
      *p = '_';
  return m;
}

void mimo_metrics_free(mimo_metrics *m) {
  if (!m)
    return;
  pthread_mutex_destroy(&m->mu);
  free(m);
}

void mimo_metrics_observe(mimo_metrics *m, mimo_hist h, double s) {
  if (!m)
    return;
  int b = 0;
  while (b < NB && s > bounds[h][b])
    b++;
  pthread_mutex_lock(&m->mu);
  m->h[h].count[b]++;
  m->h[h].sum += s;
  m->h[h].n++;
  pthread_mutex_unlock(&m->mu);
}

static void bump(key_count *k, int *n, int max, const char *key) {
  for (int i = 0; i < *n; i++)
    if (strcmp(k[i].key, key) == 0) {
      k[i].n++;
      return;
    }
  if (*n < max) {
    snprintf(k[*n].key, sizeof k[*n].key, "%s", key);
    k[(*n)++].n = 1;
  }
}

void mimo_metrics_http(void *ctx, const char *path, int status, double seconds) {
  mimo_metrics *m = ctx;
  char key[96];
  snprintf(key, sizeof key, "path=\"%s\",status=\"%d\"", path, status);
  mimo_metrics_observe(m, MIMO_HIST_HTTP, seconds);
  pthread_mutex_lock(&m->mu);
  bump(m->http, &m->n_http, MAX_KEYS, key);
  pthread_mutex_unlock(&m->mu);
}

void mimo_metrics_finish(mimo_metrics *m, const char *reason) {
  pthread_mutex_lock(&m->mu);
  bump(m->fin, &m->n_fin, 8, reason);
  pthread_mutex_unlock(&m->mu);
}

void mimo_metrics_render(mimo_metrics *m, const mimo_engine_stats *es, double api_cpu_s, mimo_sbuf *o) {
  const char *M = m->model;
  mimo_sbuf_printf(o, "# HELP mimo:api_cpu_seconds_total CPU seconds of the HTTP/API threads (not the engine).\n"
                      "# TYPE mimo:api_cpu_seconds_total counter\nmimo:api_cpu_seconds_total %.6f\n",
                   api_cpu_s);
  mimo_sbuf_printf(o, "# HELP vllm:num_requests_running Sequences in the running batch.\n"
                      "# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name=\"%s\"} %ld\n",
                   M, es->requests_running);
  mimo_sbuf_printf(o, "# HELP mimo:kv_cache_bytes KV cache held by the running sequences.\n"
                      "# TYPE mimo:kv_cache_bytes gauge\nmimo:kv_cache_bytes{model_name=\"%s\"} %ld\n",
                   M, es->kv_bytes);
  mimo_sbuf_printf(o, "# HELP mimo:kv_pool_bytes KV storage the pools took for full-layer blocks and sliding rings (reused, kept).\n"
                      "# TYPE mimo:kv_pool_bytes gauge\nmimo:kv_pool_bytes{model_name=\"%s\"} %ld\n",
                   M, es->kv_pool_bytes);
  mimo_sbuf_printf(o, "# HELP vllm:num_preemptions_total Requests that gave their KV memory back to be recomputed.\n"
                      "# TYPE vllm:num_preemptions_total counter\nvllm:num_preemptions_total{model_name=\"%s\"} %ld\n",
                   M, es->preemptions_total);
  mimo_sbuf_printf(o, "# HELP vllm:prefix_cache_queries_total Prompt tokens looked up in the prefix cache.\n"
                      "# TYPE vllm:prefix_cache_queries_total counter\nvllm:prefix_cache_queries_total{model_name=\"%s\"} "
                      "%ld\n", M, es->prefix_cache_queries_total);
  mimo_sbuf_printf(o, "# HELP vllm:prefix_cache_hits_total Prompt tokens found in the prefix cache.\n"
                      "# TYPE vllm:prefix_cache_hits_total counter\nvllm:prefix_cache_hits_total{model_name=\"%s\"} "
                      "%ld\n", M, es->prefix_cache_hits_total);
  mimo_sbuf_printf(o, "# HELP mimo:prefix_cache_entries Cached prefix states.\n"
                      "# TYPE mimo:prefix_cache_entries gauge\nmimo:prefix_cache_entries{model_name=\"%s\"} %ld\n",
                   M, es->prefix_cache_entries);
  mimo_sbuf_printf(o, "# HELP mimo:prefix_cache_bytes KV memory the cached prefix states hold (shared blocks in each).\n"
                      "# TYPE mimo:prefix_cache_bytes gauge\nmimo:prefix_cache_bytes{model_name=\"%s\"} %ld\n",
                   M, es->prefix_cache_bytes);
  if (es->spec_k > 0) { /* speculative decoding, as vLLM reports it */
    static const struct {
      const char *name, *help;
    } spec[3] = {{"spec_decode_num_drafts", "Sequence steps that verified drafts."},
                 {"spec_decode_num_draft_tokens", "Draft tokens verified."},
                 {"spec_decode_num_accepted_tokens", "Draft tokens kept (the model sampled them too)."}};
    const long v[3] = {es->spec_drafts, es->spec_draft_tokens, es->spec_accepted_tokens};
    for (int i = 0; i < 3; i++)
      mimo_sbuf_printf(o, "# HELP vllm:%s_total %s\n# TYPE vllm:%s_total counter\nvllm:%s_total{model_name=\"%s\"} %ld\n",
                       spec[i].name, spec[i].help, spec[i].name, spec[i].name, M, v[i]);
    mimo_sbuf_printf(o, "# HELP vllm:spec_decode_num_accepted_tokens_per_pos_total Draft tokens kept, by their place "
                        "in the step's drafts.\n# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter\n");
    for (long p = 0; p < es->spec_k && p < MIMO_SPEC_MAX; p++)
      mimo_sbuf_printf(o, "vllm:spec_decode_num_accepted_tokens_per_pos_total{model_name=\"%s\",position=\"%ld\"} %ld\n",
                       M, p, es->spec_accepted_per_pos[p]);
  }
  mimo_sbuf_printf(o, "# HELP vllm:num_requests_waiting Requests waiting to be scheduled.\n"
                      "# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{model_name=\"%s\"} %ld\n",
                   M, es->requests_waiting);
  mimo_sbuf_printf(o, "# HELP vllm:prompt_tokens_total Prefill tokens processed.\n"
                      "# TYPE vllm:prompt_tokens_total counter\nvllm:prompt_tokens_total{model_name=\"%s\"} %ld\n",
                   M, es->prompt_tokens_total);
  mimo_sbuf_printf(o,
                   "# HELP vllm:generation_tokens_total Tokens generated.\n"
                   "# TYPE vllm:generation_tokens_total counter\nvllm:generation_tokens_total{model_name=\"%s\"} %ld\n",
                   M, es->generation_tokens_total);
  mimo_sbuf_printf(o, "# HELP mimo:engine_steps_total Engine steps run.\n"
                      "# TYPE mimo:engine_steps_total counter\nmimo:engine_steps_total{model_name=\"%s\"} %ld\n",
                   M, es->steps);
  pthread_mutex_lock(&m->mu);
  mimo_sbuf_puts(o, "# HELP mimo:http_requests_total HTTP requests by route and status.\n"
                    "# TYPE mimo:http_requests_total counter\n");
  for (int i = 0; i < m->n_http; i++)
    mimo_sbuf_printf(o, "mimo:http_requests_total{%s} %ld\n", m->http[i].key, m->http[i].n);
  mimo_sbuf_puts(o, "# HELP vllm:request_success_total Finished generations by finish reason.\n"
                    "# TYPE vllm:request_success_total counter\n");
  for (int i = 0; i < m->n_fin; i++)
    mimo_sbuf_printf(o, "vllm:request_success_total{model_name=\"%s\",finished_reason=\"%s\"} %ld\n", M,
                     m->fin[i].key, m->fin[i].n);
  for (int h = 0; h < MIMO_HIST_N; h++) {
    mimo_sbuf_printf(o, "# HELP %s %s.\n# TYPE %s histogram\n", names[h], helps[h], names[h]);
    long cum = 0;
    for (int b = 0; b <= NB; b++) {
      cum += m->h[h].count[b];
      if (b < NB)
        mimo_sbuf_printf(o, "%s_bucket{model_name=\"%s\",le=\"%g\"} %ld\n", names[h], M, bounds[h][b], cum);
      else
        mimo_sbuf_printf(o, "%s_bucket{model_name=\"%s\",le=\"+Inf\"} %ld\n", names[h], M, cum);
    }
    mimo_sbuf_printf(o, "%s_sum{model_name=\"%s\"} %.6f\n%s_count{model_name=\"%s\"} %ld\n", names[h], M,
                     m->h[h].sum, names[h], M, m->h[h].n);
  }
  pthread_mutex_unlock(&m->mu);
}
