/* libmicrohttpd in thread-per-connection mode: each connection has its own
 * thread, so a handler may block on the engine and a streamed reply's producer
 * may wait for tokens without stalling other clients (docs/server.md). */
#include "server/http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/utf8.h"
#include "server/sbuf.h"

#define MAX_ROUTES 32
#define MAX_EXTRA_HEADERS 4

typedef struct route {
  char method[8], path[64];
  int flags;
  mimo_http_handler fn;
  void *ctx;
  mimo_http_err_fn err;
} route;

struct mimo_http {
  mimo_http_opts o;
  char *api_key;
  struct MHD_Daemon *d;
  route routes[MAX_ROUTES];
  int n_routes;
  atomic_int draining, active;
  atomic_llong cpu_ns; /* connection threads' CPU over finished requests */
  mimo_http_observer observe;
  void *observe_ctx;
};

struct mimo_http_req {
  mimo_http *h;
  struct MHD_Connection *c;
  const route *rt;
  char path[128];
  mimo_sbuf body;
  int too_large;
  int replied;
  int status;
  double t0;
  char *hdr_name[MAX_EXTRA_HEADERS], *hdr_value[MAX_EXTRA_HEADERS];
  int n_hdr;
  long long cpu0; /* thread CPU time when the request arrived */
};

typedef struct stream {
  mimo_http *h;
  struct MHD_Connection *c;
  mimo_http_produce produce;
  mimo_http_done done;
  void *ctx;
  mimo_sbuf out;
  size_t off;
  int ended, idle;
} stream;

static long long thread_cpu_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double mimo_http_cpu_seconds(mimo_http *h) { return (double)atomic_load(&h->cpu_ns) * 1e-9; }

static json_t *plain_error(int status, const char *type, const char *param, const char *code, const char *msg) {
  (void)param;
  (void)code;
  return json_pack("{s:{s:s,s:s,s:i}}", "error", "message", msg, "type", type, "code", status);
}

mimo_status mimo_http_init(mimo_http **out, const mimo_http_opts *o) {
  mimo_http *h = calloc(1, sizeof *h);
  if (!h)
    return mimo_errf(MIMO_E_NOMEM, "http server");
  h->o = *o;
  if (o->api_key && *o->api_key && !(h->api_key = strdup(o->api_key))) {
    free(h);
    return mimo_errf(MIMO_E_NOMEM, "http server");
  }
  h->o.api_key = h->api_key;
  if (!h->o.max_body)
    h->o.max_body = 32u << 20;
  if (!h->o.max_conns)
    h->o.max_conns = 1024;
  *out = h;
  return MIMO_OK;
}

mimo_status mimo_http_route(mimo_http *h, const char *method, const char *path, int flags, mimo_http_handler fn,
                            void *ctx, mimo_http_err_fn err) {
  if (h->n_routes == MAX_ROUTES || strlen(method) >= sizeof h->routes[0].method ||
      strlen(path) >= sizeof h->routes[0].path)
    return mimo_errf(MIMO_E_INVALID, "http: cannot add route %s %s", method, path);
  route *r = &h->routes[h->n_routes++];
  snprintf(r->method, sizeof r->method, "%s", method);
  snprintf(r->path, sizeof r->path, "%s", path);
  r->flags = flags;
  r->fn = fn;
  r->ctx = ctx;
  r->err = err ? err : plain_error;
  return MIMO_OK;
}

void mimo_http_set_observer(mimo_http *h, mimo_http_observer fn, void *ctx) {
  h->observe = fn;
  h->observe_ctx = ctx;
}

/* ---------------- replies ---------------- */

static void queue(mimo_http_req *rq, int status, struct MHD_Response *resp, const char *ctype) {
  if (rq->replied || !resp) {
    if (resp)
      MHD_destroy_response(resp);
    return;
  }
  rq->replied = 1;
  rq->status = status;
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  for (int i = 0; i < rq->n_hdr; i++)
    MHD_add_response_header(resp, rq->hdr_name[i], rq->hdr_value[i]);
  if (MHD_queue_response(rq->c, (unsigned)status, resp) != MHD_YES)
    mimo_warn("http: could not queue a %d reply", status);
  MHD_destroy_response(resp);
}

void mimo_http_reply(mimo_http_req *rq, int status, const char *content_type, const char *body, size_t len) {
  queue(rq, status, MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY), content_type);
}

/* Reals with 9 significant digits: a float32 (a logprob) reads back as the same float; lm-evaluation-harness sums
 * hundreds of them. */
void mimo_http_reply_json(mimo_http_req *rq, int status, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
  json_decref(j);
  if (!s) {
    static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"InternalServerError\"}}";
    mimo_http_reply(rq, 500, "application/json", oom, sizeof oom - 1);
    return;
  }
  queue(rq, status, MHD_create_response_from_buffer(strlen(s), s, MHD_RESPMEM_MUST_FREE), "application/json");
}

void mimo_http_reply_error(mimo_http_req *rq, int status, const char *type, const char *param, const char *code,
                           const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  mimo_utf8_trim_tail(msg);
  mimo_http_err_fn err = rq->rt ? rq->rt->err : plain_error;
  mimo_http_reply_json(rq, status, err(status, type, param, code, msg));
}

void mimo_http_add_header(mimo_http_req *rq, const char *name, const char *value) {
  if (rq->n_hdr == MAX_EXTRA_HEADERS)
    return;
  rq->hdr_name[rq->n_hdr] = strdup(name);
  rq->hdr_value[rq->n_hdr] = strdup(value);
  if (!rq->hdr_name[rq->n_hdr] || !rq->hdr_value[rq->n_hdr]) {
    free(rq->hdr_name[rq->n_hdr]);
    free(rq->hdr_value[rq->n_hdr]);
    return;
  }
  rq->n_hdr++;
}

static int fd_gone(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
  if (!ci)
    return 1;
  char b;
  ssize_t n = recv(ci->connect_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0)
    return 1;
  return n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
}

int mimo_http_client_gone(mimo_http_req *rq) { return fd_gone(rq->c); }

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
  (void)pos;
  stream *s = cls;
  for (;;) {
    if (s->off < s->out.len) {
      size_t n = s->out.len - s->off;
      if (n > max)
        n = max;
      memcpy(buf, s->out.p + s->off, n);
      s->off += n;
      if (s->off == s->out.len) {
        s->out.len = 0;
        s->off = 0;
      }
      return (ssize_t)n;
    }
    if (s->ended)
      return MHD_CONTENT_READER_END_OF_STREAM;
    /* a peek per token would cost a syscall; writes fail anyway when the client
     * is gone, so the socket is checked only while the stream is idle */
    int gone = s->idle && fd_gone(s->c);
    int r = s->produce(s->ctx, &s->out, gone);
    s->idle = s->out.len == 0;
    if (s->out.oom || r < 0 || (gone && s->out.len == 0 && r > 0))
      return MHD_CONTENT_READER_END_WITH_ERROR;
    if (r == 0)
      s->ended = 1;
  }
}

static void stream_free(void *cls) {
  stream *s = cls;
  s->done(s->ctx);
  mimo_sbuf_free(&s->out);
  atomic_fetch_sub(&s->h->active, 1);
  free(s);
}

void mimo_http_reply_stream(mimo_http_req *rq, int status, const char *content_type, mimo_http_produce produce,
                            mimo_http_done done, void *ctx) {
  stream *s = calloc(1, sizeof *s);
  if (!s) {
    done(ctx);
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
    return;
  }
  s->h = rq->h;
  s->c = rq->c;
  s->produce = produce;
  s->done = done;
  s->ctx = ctx;
  atomic_fetch_add(&rq->h->active, 1);
  /* stream_free runs when the response is released, also if queueing fails */
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
  if (!resp) {
    stream_free(s);
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory");
    return;
  }
  MHD_add_response_header(resp, "Cache-Control", "no-cache");
  queue(rq, status, resp, content_type);
}

/* ---------------- request plumbing ---------------- */

const char *mimo_http_body(const mimo_http_req *rq, size_t *len) {
  *len = rq->body.len;
  return rq->body.p ? rq->body.p : "";
}

const char *mimo_http_header(const mimo_http_req *rq, const char *name) {
  return MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, name);
}

const char *mimo_http_path(const mimo_http_req *rq) { return rq->path; }
const char *mimo_http_request_id(const mimo_http_req *rq) {
  const char *id = MHD_lookup_connection_value(rq->c, MHD_HEADER_KIND, "X-Request-Id");
  const size_t n = id ? strlen(id) : 0;
  if (n < 1 || n > 64 || strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-") != n)
    return NULL;
  return id;
}

const char *mimo_http_query(const mimo_http_req *rq, const char *name) {
  return MHD_lookup_connection_value(rq->c, MHD_GET_ARGUMENT_KIND, name);
}
double mimo_http_start_time(const mimo_http_req *rq) { return rq->t0; }

static int authorized(mimo_http_req *rq) {
  const char *key = rq->h->api_key;
  if (!key || !(rq->rt->flags & MIMO_HTTP_AUTH))
    return 1;
  const char *a = mimo_http_header(rq, MHD_HTTP_HEADER_AUTHORIZATION);
  if (a && strncasecmp(a, "Bearer ", 7) == 0 && strcmp(a + 7, key) == 0)
    return 1;
  const char *x = mimo_http_header(rq, "x-api-key"); /* Anthropic clients */
  return x && strcmp(x, key) == 0;
}

/* A route's path matches exactly, where a segment that is a star matches any one non-empty segment (a response's
 * id, in the GET of a response and of its input items). */
static int path_matches(const char *route_path, const char *path) {
  const char *r = route_path, *p = path;
  while (*r && *p) {
    if (r[0] == '*' && r[-1] == '/' && (r[1] == '/' || !r[1])) { /* (r > route_path: a path starts with '/') */
      const char *end = strchr(p, '/');
      if (!end)
        end = p + strlen(p);
      if (end == p)
        return 0;
      p = end;
      r++;
    } else if (*r++ != *p++) {
      return 0;
    }
  }
  return !*r && !*p;
}

static const route *find_route(mimo_http *h, const char *method, const char *path, int *path_known) {
  *path_known = 0;
  for (int i = 0; i < h->n_routes; i++)
    if (path_matches(h->routes[i].path, path)) {
      *path_known = 1;
      if (strcmp(h->routes[i].method, method) == 0)
        return &h->routes[i];
    }
  return NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
  (void)version;
  mimo_http *h = cls;
  mimo_http_req *rq = *con_cls;
  if (!rq) {
    rq = calloc(1, sizeof *rq);
    if (!rq)
      return MHD_NO;
    *con_cls = rq;
    rq->h = h;
    rq->c = c;
    rq->t0 = mimo_now();
    rq->cpu0 = thread_cpu_ns();
    snprintf(rq->path, sizeof rq->path, "%s", url);
    char *q = strchr(rq->path, '?');
    if (q)
      *q = 0;
    if (h->o.request_id_headers) { /* (vLLM's --enable-request-id-headers) */
      const char *given = mimo_http_request_id(rq);
      char fresh[33] = {0};
      unsigned char r[16];
      if (!given) {
        if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) { /* (no entropy yet: distinct is enough) */
          static atomic_ulong counter;
          const unsigned long v = atomic_fetch_add(&counter, 1) + 1;
          memset(r, 0, sizeof r);
          memcpy(r, &v, sizeof v);
        }
        for (size_t i = 0; i < sizeof r; i++)
          snprintf(fresh + 2 * i, 3, "%02x", r[i]);
      }
      mimo_http_add_header(rq, "X-Request-Id", given ? given : fresh);
    }
    int known;
    rq->rt = find_route(h, method, rq->path, &known);
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > h->o.max_body)
      rq->too_large = 1;
    if (!rq->rt) {
      mimo_http_reply_error(rq, known ? 405 : 404, known ? "MethodNotAllowed" : "NotFoundError", NULL, NULL,
                            known ? "method %s is not allowed on %s" : "no route for %s %s", method, rq->path);
      return MHD_YES;
    }
    if (rq->too_large) { /* answer before reading the body; microhttpd closes the connection after */
      mimo_http_reply_error(rq, 413, "BadRequestError", NULL, NULL, "request body is larger than %zu bytes",
                            h->o.max_body);
      return MHD_YES;
    }
    return MHD_YES;
  }
  if (*upload_size) {
    if (!rq->replied && !rq->too_large) {
      if (rq->body.len + *upload_size > h->o.max_body)
        rq->too_large = 1;
      else
        mimo_sbuf_put(&rq->body, upload, *upload_size);
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (rq->replied)
    return MHD_YES;
  if (rq->too_large) {
    mimo_http_reply_error(rq, 413, "BadRequestError", NULL, NULL, "request body is larger than %zu bytes",
                          h->o.max_body);
    return MHD_YES;
  }
  if (rq->body.oom) {
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "out of memory reading the request");
    return MHD_YES;
  }
  if (!authorized(rq)) {
    mimo_http_reply_error(rq, 401, "AuthenticationError", NULL, "invalid_api_key", "invalid or missing API key");
    return MHD_YES;
  }
  if (atomic_load(&h->draining)) {
    mimo_http_add_header(rq, "Connection", "close");
    mimo_http_reply_error(rq, 503, "ServiceUnavailableError", NULL, NULL, "the server is shutting down");
    return MHD_YES;
  }
  atomic_fetch_add(&h->active, 1);
  rq->rt->fn(rq, rq->rt->ctx);
  atomic_fetch_sub(&h->active, 1);
  if (!rq->replied)
    mimo_http_reply_error(rq, 500, "InternalServerError", NULL, NULL, "the handler produced no reply");
  return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
  (void)c;
  (void)toe;
  mimo_http *h = cls;
  mimo_http_req *rq = *con_cls;
  if (!rq)
    return;
  /* thread-per-connection: arrival and completion run on the same thread */
  atomic_fetch_add(&h->cpu_ns, thread_cpu_ns() - rq->cpu0);
  if (h->observe && rq->replied)
    h->observe(h->observe_ctx, rq->rt ? rq->rt->path : "other", rq->status, mimo_now() - rq->t0);
  for (int i = 0; i < rq->n_hdr; i++) {
    free(rq->hdr_name[i]);
    free(rq->hdr_value[i]);
  }
  mimo_sbuf_free(&rq->body);
  free(rq);
  *con_cls = NULL;
}

mimo_status mimo_http_start(mimo_http *h) {
  char port[16];
  snprintf(port, sizeof port, "%d", h->o.port);
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
  const char *host = h->o.host && *h->o.host ? h->o.host : "0.0.0.0";
  int gai = getaddrinfo(host, port, &hints, &ai);
  if (gai != 0)
    return mimo_errf(MIMO_E_INVALID, "--host %s: %s", host, gai_strerror(gai));
  unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC;
  if (ai->ai_family == AF_INET6)
    flags |= MHD_USE_IPv6;
  h->d = MHD_start_daemon(flags, (uint16_t)h->o.port, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                          MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_TIMEOUT,
                          h->o.idle_timeout ? h->o.idle_timeout : 60u, MHD_OPTION_CONNECTION_LIMIT, h->o.max_conns,
                          MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
  freeaddrinfo(ai);
  if (!h->d)
    return mimo_errf(MIMO_E_IO, "cannot listen on %s:%d (%s)", host, h->o.port, errno ? strerror(errno) : "?");
  return MIMO_OK;
}

int mimo_http_port(const mimo_http *h) {
  const union MHD_DaemonInfo *di = h->d ? MHD_get_daemon_info(h->d, MHD_DAEMON_INFO_BIND_PORT) : NULL;
  return di ? di->port : h->o.port;
}

void mimo_http_quiesce(mimo_http *h) {
  atomic_store(&h->draining, 1);
  if (h->d) {
    MHD_socket fd = MHD_quiesce_daemon(h->d);
    if (fd != MHD_INVALID_SOCKET)
      close(fd);
  }
}

int mimo_http_active(mimo_http *h) { return atomic_load(&h->active); }
int mimo_http_draining(const mimo_http *h) { return atomic_load(&((mimo_http *)h)->draining); }

void mimo_http_free(mimo_http *h) {
  if (!h)
    return;
  if (h->d)
    MHD_stop_daemon(h->d);
  free(h->api_key);
  free(h);
}
