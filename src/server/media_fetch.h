/* Image URLs that requests name (OpenAI image_url, Anthropic {type: url}): http:// and https:// fetched as vLLM does,
 * within a size and time limit, optionally only from listed hosts (vLLM's --allowed-media-domains). A server that
 * fetches what its clients name can be pointed at hosts only it reaches; --allowed-media-domains is how to stop that. */
#ifndef MIMO_SERVER_MEDIA_FETCH_H
#define MIMO_SERVER_MEDIA_FETCH_H
#include <stdbool.h>
#include <stddef.h>

#include "core/status.h"

typedef struct mimo_media_fetch {
  bool off;                 /* no fetching at all (--no-media-fetch) */
  double timeout_s;         /* whole transfer (default 5: vLLM's VLLM_IMAGE_FETCH_TIMEOUT) */
  const char *domains;      /* comma-separated host names, matched exactly (NULL: any); redirects are then not
                             * followed, since one could leave them */
  size_t max_bytes;         /* largest body (default 64 MiB) */
} mimo_media_fetch;

/* Once per process, before any thread fetches (curl_global_init). */
mimo_status mimo_media_fetch_global_init(void);
/* The body of url into *data (malloc'ed, *n bytes). Errors name the URL and what went wrong: MIMO_E_INVALID for
 * what the client can fix (not http(s), a host not allowed, an HTTP error status, too large, unreachable, too
 * slow), MIMO_E_NOMEM. */
mimo_status mimo_media_fetch_url(const mimo_media_fetch *o, const char *url, char **data, size_t *n);
#endif
