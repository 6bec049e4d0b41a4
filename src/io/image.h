/* Images a request brings (spec §4.3 step 1): PNG, JPEG or WebP bytes decoded to 8-bit RGB, any alpha composited
 * onto white. Decoding never trusts the file: sizes are checked before memory is taken, and a broken or
 * truncated file is an error naming what is wrong, never a crash. Pixels match PIL's (Image.open, alpha composited
 * onto white, convert("RGB")); like Image.open, EXIF orientation is not applied. */
#ifndef MIMO_IO_IMAGE_H
#define MIMO_IO_IMAGE_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct mimo_image {
  int w, h;
  uint8_t *rgb; /* [h][w][3] */
} mimo_image;

/* Decoded images larger than this many pixels are refused before decoding (MIMO_E_INVALID). */
#define MIMO_IMAGE_MAX_PIXELS (64L << 20)

/* The format is recognised from the bytes' signature, not from a media type. Errors: MIMO_E_INVALID (unknown
 * format, corrupt or truncated data, zero or oversized dimensions), MIMO_E_NOMEM. */
mimo_status mimo_image_decode(const void *data, size_t n, mimo_image *out);
/* The same with the caller's pixel limit (the fuzzer uses a small one so each input stays fast). */
mimo_status mimo_image_decode_limit(const void *data, size_t n, long max_pixels, mimo_image *out);
void mimo_image_free(mimo_image *im);
#endif
