/* The image decoder (io/image.h) and the vision preprocessing behind it over any bytes: never a crash, a leak or an
 * over-read (ASan), an error is MIMO_E_INVALID (or out of memory) with an "image: " message and no pixels, a success
 * is an image within the pixel limit whose every byte can be read and whose patches are finite. The limit is small
 * (4 M pixels) so that a header promising a large image stays quick. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "model/vision_preproc.h"

#define MAX_PIXELS (4L << 20)

static volatile unsigned sink; /* keeps the reads of every pixel byte */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mimo_image im;
  mimo_status st = mimo_image_decode_limit(data, size, MAX_PIXELS, &im);
  if (st != MIMO_OK) {
    if ((st != MIMO_E_INVALID && st != MIMO_E_NOMEM) || im.rgb || strncmp(mimo_errmsg(), "image: ", 7) != 0)
      abort();
    return 0;
  }
  if (im.w <= 0 || im.h <= 0 || (long)im.w * im.h > MAX_PIXELS || !im.rgb)
    abort();
  unsigned sum = 0;
  for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++)
    sum += im.rgb[i];
  /* Small grid sizes keep this cheap; any shape of image reaches smart_resize's branches. */
  mimo_vision_config vc = {.patch = 4, .merge = 2, .temporal_patch = 1, .in_chans = 3, .min_pixels = 64,
                           .max_pixels = 4096, .mean = {123.675, 116.28, 103.53}, .std = {58.395, 57.12, 57.375}};
  float *p;
  int gh, gw;
  if (mimo_vision_patchify(&vc, &im, &p, &gh, &gw) == MIMO_OK) {
    if (gh <= 0 || gw <= 0 || gh % 2 || gw % 2 || (long)gh * gw * 16 > 4096)
      abort();
    for (size_t i = 0; i < (size_t)gh * gw * 3 * 16; i++)
      if (!isfinite(p[i]) || fabsf(p[i]) > 5)
        abort();
    free(p);
  } else if (p) {
    abort();
  }
  sink = sum;
  mimo_image_free(&im);
  return 0;
}
