/* HTTP/1.1 layer over libmicrohttpd (docs/server.md): a route table, request
 * bodies with a size limit, JSON/text replies, API-style error bodies, streamed
 * (SSE) replies fed by a producer that may block, client-liveness checks, and a
 * drain-then-stop shutdown. API modules (openai.c, anthropic.c) only register
 * routes and use these helpers; they never touch microhttpd. */
#ifndef MIMO_SERVER_HTTP_H
#define MIMO_SERVER_HTTP_H
#include <jansson.h>
#include <stddef.h>

#include "core/status.h"

typedef struct mimo_http mimo_http;
typedef struct mimo_http_req mimo_http_req;

/* Builds the error body for this route's API style (OpenAI, Anthropic, ...). */
typedef json_t *(*mimo_http_err_fn)(int status, const char *type, const char *param, const char *code,
                                    const char *message);
/* A handler must end by queueing exactly one reply (json/text/error/stream).
 * It runs on the connection's own thread and may block. */
typedef void (*mimo_http_handler)(mimo_http_req *rq, void *ctx);

typedef struct mimo_http_opts {
  const char *host; /* "0.0.0.0" when NULL */
  int port;
  const char *api_key;   /* NULL: no auth; else routes flagged auth need it */
  size_t max_body;       /* bytes (413 beyond) */
  unsigned idle_timeout; /* seconds an idle keep-alive connection is kept */
  unsigned max_conns;
  int request_id_headers; /* X-Request-Id on every reply: the client's (mimo_http_request_id) or a new one */
} mimo_http_opts;

enum { MIMO_HTTP_AUTH = 1 };

mimo_status mimo_http_init(mimo_http **out, const mimo_http_opts *o);
/* Routes are matched on method and path (before starting): exactly, where a segment that is a star matches any one
 * non-empty segment (GET /v1/responses/{id} and its input_items). */
mimo_status mimo_http_route(mimo_http *h, const char *method, const char *path, int flags, mimo_http_handler fn,
                            void *ctx, mimo_http_err_fn err);
mimo_status mimo_http_start(mimo_http *h);
int mimo_http_port(const mimo_http *h); /* the bound port (useful with port 0) */
/* Stops accepting and answers 503 to new requests; returns the number of
 * replies still being produced (poll until 0 or a deadline). */
void mimo_http_quiesce(mimo_http *h);
int mimo_http_active(mimo_http *h);
int mimo_http_draining(const mimo_http *h);
/* Closes every connection and joins the threads. */
void mimo_http_free(mimo_http *h);

/* Per-status request counters and latency, for /metrics. */
typedef void (*mimo_http_observer)(void *ctx, const char *path, int status, double seconds);
void mimo_http_set_observer(mimo_http *h, mimo_http_observer fn, void *ctx);

/* CPU time the connection threads spent on finished requests (HTTP, JSON,
 * SSE, detokenizing, parsing; not the engine): the server's own cost. */
double mimo_http_cpu_seconds(mimo_http *h);

/* --- inside a handler --- */
const char *mimo_http_body(const mimo_http_req *rq, size_t *len);
const char *mimo_http_header(const mimo_http_req *rq, const char *name);
const char *mimo_http_path(const mimo_http_req *rq);
const char *mimo_http_query(const mimo_http_req *rq, const char *name); /* ?name=value, decoded; NULL if absent */
/* The client's X-Request-Id when it is 1-64 of [A-Za-z0-9._:-] (safe in ids and headers as it is), else NULL. */
const char *mimo_http_request_id(const mimo_http_req *rq);
double mimo_http_start_time(const mimo_http_req *rq);
void mimo_http_reply(mimo_http_req *rq, int status, const char *content_type, const char *body, size_t len);
/* Takes the reference to j. */
void mimo_http_reply_json(mimo_http_req *rq, int status, json_t *j);
void mimo_http_reply_error(mimo_http_req *rq, int status, const char *type, const char *param, const char *code,
                           const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* Extra header on the next reply (e.g. Retry-After). */
void mimo_http_add_header(mimo_http_req *rq, const char *name, const char *value);
/* 1 when the client has closed its end (checked without blocking). */
int mimo_http_client_gone(mimo_http_req *rq);

/* Streamed reply: produce(ctx, out) is called on the connection thread whenever
 * the client can take more; it appends bytes to out (blocking while it waits is
 * fine, but it should return within ~100 ms to let disconnects be noticed) and
 * returns 1 while more will come, 0 at the end, -1 to abort the connection.
 * done(ctx, client_gone) runs exactly once when the reply is over. */
typedef struct mimo_sbuf mimo_sbuf;
typedef int (*mimo_http_produce)(void *ctx, mimo_sbuf *out, int client_gone);
typedef void (*mimo_http_done)(void *ctx);
void mimo_http_reply_stream(mimo_http_req *rq, int status, const char *content_type, mimo_http_produce produce,
                            mimo_http_done done, void *ctx);
#endif
