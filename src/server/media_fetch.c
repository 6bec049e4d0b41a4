#include "server/media_fetch.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

mimo_status mimo_media_fetch_global_init(void) {
  const CURLcode c = curl_global_init(CURL_GLOBAL_DEFAULT);
  return c == CURLE_OK ? MIMO_OK : mimo_errf(MIMO_E_INTERNAL, "libcurl: %s", curl_easy_strerror(c));
}

typedef struct {
  char *p;
  size_t n, cap, max;
  bool too_big, nomem;
} body;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ctx) {
  body *b = ctx;
  const size_t add = size * nmemb;
  if (add > b->max - b->n) {
    b->too_big = true;
    return 0; /* aborts the transfer */
  }
  if (b->n + add > b->cap) {
    size_t cap = b->cap ? 2 * b->cap : 64 << 10;
    while (cap < b->n + add)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->nomem = true;
      return 0;
    }
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, ptr, add);
  b->n += add;
  return add;
}

/* Whether host is one of the comma-separated names (case does not matter in host names). */
static bool host_listed(const char *list, const char *host) {
  const size_t hn = strlen(host);
  for (const char *p = list; *p;) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    while (len && p[0] == ' ')
      p++, len--;
    while (len && p[len - 1] == ' ')
      len--;
    if (len == hn && strncasecmp(p, host, hn) == 0)
      return true;
    if (!end)
      break;
    p = end + 1;
  }
  return false;
}

mimo_status mimo_media_fetch_url(const mimo_media_fetch *o, const char *url, char **data, size_t *n) {
  *data = NULL;
  *n = 0;
  if (o->off)
    return mimo_errf(MIMO_E_INVALID, "the server does not fetch image URLs (--no-media-fetch); send the image inline "
                     "as a data:image/...;base64 URL");
  /* the host, as libcurl will read the URL (so that a check and a fetch cannot disagree) */
  CURLU *u = curl_url();
  char *scheme = NULL, *host = NULL;
  mimo_status st = MIMO_OK;
  if (!u)
    return mimo_errf(MIMO_E_NOMEM, "URL parser");
  if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
      curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    st = mimo_errf(MIMO_E_INVALID, "%.200s: not a URL libcurl can read", url);
  else if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)
    st = mimo_errf(MIMO_E_INVALID, "%.200s: only http and https URLs are fetched", url);
  else if (o->domains && !host_listed(o->domains, host))
    st = mimo_errf(MIMO_E_INVALID, "%.200s: host %s is not in --allowed-media-domains", url, host);
  curl_free(scheme);
  curl_free(host);
  if (st != MIMO_OK) {
    curl_url_cleanup(u);
    return st;
  }
  CURL *c = curl_easy_init();
  if (!c) {
    curl_url_cleanup(u);
    return mimo_errf(MIMO_E_NOMEM, "libcurl handle");
  }
  body b = {.max = o->max_bytes ? o->max_bytes : (size_t)64 << 20};
  const long ms = (long)((o->timeout_s > 0 ? o->timeout_s : 5) * 1000);
  curl_easy_setopt(c, CURLOPT_CURLU, u);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, o->domains ? 0L : 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, ms);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* (threads: no SIGALRM for the resolver's timeout) */
  curl_easy_setopt(c, CURLOPT_USERAGENT, "mimo");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
  curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)b.max);
  const CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_cleanup(c);
  curl_url_cleanup(u);
  if (b.nomem)
    st = mimo_errf(MIMO_E_NOMEM, "%.200s: out of memory for its body", url);
  else if (b.too_big || rc == CURLE_FILESIZE_EXCEEDED)
    st = mimo_errf(MIMO_E_INVALID, "%.200s: larger than %zu bytes", url, b.max);
  else if (rc == CURLE_OPERATION_TIMEDOUT)
    st = mimo_errf(MIMO_E_INVALID, "%.200s: not fetched within %.1f s", url, ms / 1000.0);
  else if (rc != CURLE_OK)
    st = mimo_errf(MIMO_E_INVALID, "%.200s: %s", url, curl_easy_strerror(rc));
  else if (code >= 300 && code < 400)
    st = mimo_errf(MIMO_E_INVALID, "%.200s: HTTP %ld, a redirect (not followed with --allowed-media-domains)", url,
                   code);
  else if (code != 200)
    st = mimo_errf(MIMO_E_INVALID, "%.200s: HTTP %ld", url, code);
  if (st != MIMO_OK) {
    free(b.p);
    return st;
  }
  *data = b.p ? b.p : malloc(1);
  *n = b.n;
  return *data ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "%.200s: body", url);
}
