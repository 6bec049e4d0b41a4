/* Images in API requests (OpenAI image_url parts, Anthropic image blocks): fetched from data: URLs (or files under
 * --allowed-local-media-path), decoded, run through the vision tower, and paired with the image placeholders of
 * the rendered prompt (spec §4.6). */
#ifndef MIMO_SERVER_API_IMAGES_H
#define MIMO_SERVER_API_IMAGES_H
#include <stdbool.h>

#include "server/api_common.h"
#include "model/vision.h"

typedef struct mimo_api_images {
  int n, cap;
  float **rows;   /* [tokens[i]][hidden]; NULL when only counted */
  int *tokens;
  mimo_embed_run *runs; /* after mimo_api_images_expand: where each image's rows go in the prompt */
  bool count_only;      /* set by the caller: images are sized, not encoded (token counts) */
} mimo_api_images;

/* Adds the image at url (data:...;base64,... or file://PATH) as the request's next image; `encode` false only
 * counts its tokens (count_tokens). A 400 naming param for anything wrong with it (or a model without a vision
 * tower). */
int mimo_api_image_add(mimo_server *s, mimo_api_images *im, const char *url, bool encode, const char *param,
                       mimo_api_err *e);
/* The same from raw bytes (Anthropic base64 sources). */
int mimo_api_image_add_bytes(mimo_server *s, mimo_api_images *im, const void *data, size_t n, bool encode,
                             const char *param, mimo_api_err *e);
/* Expands the rendered prompt's placeholders (one per image, in order) to each image's tokens, in place (*ids
 * reallocated), and sets im->runs. */
int mimo_api_images_expand(mimo_server *s, mimo_api_images *im, int **ids, int *n, mimo_api_err *e);
void mimo_api_images_free(mimo_api_images *im);
#endif
