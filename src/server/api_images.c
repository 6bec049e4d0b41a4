#include "server/api_images.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base64.h"
#include "core/fileio.h"
#include "io/image.h"
#include "model/vision_preproc.h"

/* Bytes a request may bring for one image (the HTTP body limit bounds data: URLs anyway). */
enum { MAX_IMAGE_BYTES = 64 << 20 };

void mimo_api_images_free(mimo_api_images *im) {
  for (int i = 0; i < im->n; i++)
    free(im->rows ? im->rows[i] : NULL);
  free(im->rows);
  free(im->tokens);
  free(im->runs);
  memset(im, 0, sizeof *im);
}

int mimo_api_image_add_bytes(mimo_server *s, mimo_api_images *im, const void *data, size_t n, bool encode,
                             const char *param, mimo_api_err *e) {
  if (!s->vision)
    return mimo_api_fail(e, 400, param, "%s: this model takes text only (its checkpoint has no vision tower)", param);
  if (s->image_limit > 0 && im->n >= s->image_limit)
    return mimo_api_fail(e, 400, param, "%s: at most %d image%s per request (--limit-mm-per-prompt)", param,
                         s->image_limit, s->image_limit == 1 ? "" : "s");
  if (im->n == im->cap) {
    const int cap = im->cap ? 2 * im->cap : 4;
    float **r = realloc(im->rows, (size_t)cap * sizeof *r);
    if (r)
      im->rows = r;
    int *t = realloc(im->tokens, (size_t)cap * sizeof *t);
    if (t)
      im->tokens = t;
    if (!r || !t)
      return mimo_api_fail(e, 500, NULL, "out of memory");
    im->cap = cap;
  }
  mimo_image img = {0};
  mimo_status st = mimo_image_decode(data, n, &img);
  if (st != MIMO_OK)
    return mimo_api_fail(e, 400, param, "%s: %s", param, mimo_errmsg());
  const mimo_vision_config *vc = mimo_vision_cfg(s->vision);
  float *rows = NULL;
  int tokens = 0, h = 0, w = 0;
  if (encode) {
    st = mimo_vision_encode_image(s->vision, &img, &rows, &tokens);
  } else {
    st = mimo_vision_smart_resize(img.h, img.w, vc->patch * vc->merge, vc->min_pixels, vc->max_pixels, &h, &w);
    tokens = st == MIMO_OK ? mimo_vision_tokens(vc, h / vc->patch, w / vc->patch) : 0;
  }
  mimo_image_free(&img);
  if (st != MIMO_OK)
    return mimo_api_fail(e, st == MIMO_E_NOMEM ? 500 : 400, param, "%s: %s", param, mimo_errmsg());
  im->rows[im->n] = rows;
  im->tokens[im->n++] = tokens;
  return 0;
}

/* file://PATH under the allowed directory (vLLM's --allowed-local-media-path): resolved, so no ../ or link leads
 * out of it. */
static int read_local(mimo_server *s, const char *path, char **data, size_t *n, const char *param, mimo_api_err *e) {
  if (!s->media_path)
    return mimo_api_fail(e, 400, param, "%s: file:// URLs need the server started with --allowed-local-media-path",
                         param);
  char real[PATH_MAX];
  if (!realpath(path, real))
    return mimo_api_fail(e, 400, param, "%s: %s: no such file", param, path);
  const size_t m = strlen(s->media_path);
  if (strncmp(real, s->media_path, m) != 0 || (real[m] != '/' && real[m] != 0))
    return mimo_api_fail(e, 400, param, "%s: %s is outside --allowed-local-media-path", param, path);
  if (mimo_read_file(real, data, n, MAX_IMAGE_BYTES) != MIMO_OK)
    return mimo_api_fail(e, 400, param, "%s: %s", param, mimo_errmsg());
  return 0;
}

int mimo_api_image_add(mimo_server *s, mimo_api_images *im, const char *url, bool encode, const char *param,
                       mimo_api_err *e) {
  if (!s->vision)
    return mimo_api_fail(e, 400, param, "%s: this model takes text only (its checkpoint has no vision tower)", param);
  if (strncasecmp(url, "data:", 5) == 0) {
    uint8_t *bytes = NULL;
    size_t n = 0;
    char mt[64];
    if (mimo_data_url_parse(url, &bytes, &n, mt, sizeof mt) != MIMO_OK)
      return mimo_api_fail(e, 400, param, "%s: %s", param, mimo_errmsg());
    int rc = strncmp(mt, "image/", 6) != 0
                 ? mimo_api_fail(e, 400, param, "%s: media type '%s' is not an image", param, mt)
                 : mimo_api_image_add_bytes(s, im, bytes, n, encode, param, e);
    free(bytes);
    return rc;
  }
  if (strncasecmp(url, "file://", 7) == 0) {
    char *data = NULL;
    size_t n = 0;
    if (read_local(s, url + 7, &data, &n, param, e))
      return -1;
    int rc = mimo_api_image_add_bytes(s, im, data, n, encode, param, e);
    free(data);
    return rc;
  }
  if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
    char *data = NULL;
    size_t n = 0;
    mimo_status st = mimo_media_fetch_url(&s->fetch, url, &data, &n);
    if (st != MIMO_OK)
      return mimo_api_fail(e, st == MIMO_E_NOMEM ? 500 : 400, param, "%s: %s", param, mimo_errmsg());
    int rc = mimo_api_image_add_bytes(s, im, data, n, encode, param, e);
    free(data);
    return rc;
  }
  return mimo_api_fail(e, 400, param, "%s: an image URL must be http(s)://, data:image/...;base64,... or file://",
                       param);
}

int mimo_api_images_expand(mimo_server *s, mimo_api_images *im, int **ids, int *n, mimo_api_err *e) {
  if (!im->n)
    return 0;
  free(im->runs);
  if (!(im->runs = calloc((size_t)im->n, sizeof *im->runs)))
    return mimo_api_fail(e, 500, NULL, "out of memory");
  int *out = NULL, n_out = 0;
  mimo_status st = mimo_vision_expand(mimo_vision_cfg(s->vision), *ids, *n, im->tokens, im->n, &out, &n_out, im->runs);
  if (st != MIMO_OK)
    return mimo_api_fail(e, 400, "messages", "%s", mimo_errmsg());
  for (int i = 0; i < im->n; i++)
    im->runs[i].rows = im->rows ? im->rows[i] : NULL;
  free(*ids);
  *ids = out;
  *n = n_out;
  return 0;
}
