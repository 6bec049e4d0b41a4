/* Image -> patch rows for the vision tower (spec §4.3 steps 2-5): smart_resize, bilinear resize on the 0..255
 * values, per-channel normalisation, patchify with the 2x2 merge blocks contiguous. */
#ifndef MIMO_MODEL_VISION_PREPROC_H
#define MIMO_MODEL_VISION_PREPROC_H
#include "core/status.h"
#include "io/config.h"
#include "io/image.h"

/* The size an h x w image is resized to: both sides multiples of factor (= patch * merge), area within
 * [min_pixels, max_pixels] (spec §4.3 step 2, Python's round-half-to-even). MIMO_E_INVALID when the aspect ratio
 * exceeds 200 or the result cannot be made to fit. */
mimo_status mimo_vision_smart_resize(int h, int w, int factor, long min_pixels, long max_pixels, int *out_h,
                                     int *out_w);

/* One image's patch rows: *patches (malloc'd) [grid_h * grid_w][in_chans * temporal_patch * patch * patch], rows
 * in (bh, bw, mh, mw) order (merge blocks contiguous, blocks in raster order), each row (c, tt, py, px) with the
 * image repeated over the temporal_patch frames; grid_h = h' / patch, grid_w = w' / patch. */
mimo_status mimo_vision_patchify(const mimo_vision_config *vc, const mimo_image *im, float **patches, int *grid_h,
                                 int *grid_w);
#endif
