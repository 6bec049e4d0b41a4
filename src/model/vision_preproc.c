/* Vision preprocessing (model/vision_preproc.h, spec §4.3 steps 2-5): decoded RGB -> the patch rows the vision
 * tower's Conv3d patch embedding reads.
 *   2. smart_resize in Python's semantics (computed in double, round-half-to-even, int() truncation);
 *   3. bilinear resize as torch's CPU F.interpolate(mode="bilinear", align_corners=False, antialias=False) on
 *      float32 CHW values 0..255: scale = (float)in/out, src = scale*(dst + 0.5f) - 0.5f clamped at 0,
 *      i0 = min(floor(src), in-1), i1 = min(i0+1, in-1), l1 = clamp(src - i0, 0, 1), l0 = 1 - l1, all float32;
 *      rows then columns: out = (a*w0 + b*w1)*h0 + (c*w0 + d*w1)*h1, no fused multiply-adds;
 *   4. (x - mean) / std in float32;
 *   5. patch rows in (bh, bw, mh, mw) order, each (c, tt, py, px), the image repeated over temporal_patch frames.
 * Verified by tests/unit/test_image.c against tests/model/vision_preproc_ref.py (numpy, written from the spec). */
#include "model/vision_preproc.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* torch's kernel rounds every product and sum to float; GCC in ISO C mode never contracts, clang would. */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Python's round() on a double: half to even, which nearbyint gives in the default rounding mode. */
static double py_round(double x) { return nearbyint(x); }

mimo_status mimo_vision_smart_resize(int h, int w, int factor, long min_pixels, long max_pixels, int *out_h,
                                     int *out_w) {
  *out_h = *out_w = 0;
  if (h <= 0 || w <= 0 || factor <= 0 || min_pixels < 0 || max_pixels <= 0)
    return mimo_errf(MIMO_E_INVALID, "vision: cannot resize %d x %d with factor %d, pixels [%ld, %ld]", h, w, factor,
                     min_pixels, max_pixels);
  /* Sides as Python ints: the short-side fix can make the long side large (1 x 10^6 -> 32 x 3.2*10^7). */
  double H = h, W = w, F = factor;
  if ((h < w ? h : w) < factor) {
    if (h < w) {
      W = trunc(W * F / H); /* int(width * factor / height): true division, then truncation */
      H = F;
    } else {
      H = trunc(H * F / W);
      W = F;
    }
  } else if ((h > w ? H / W : W / H) > 200) {
    return mimo_errf(MIMO_E_INVALID, "vision: image of %d x %d has an aspect ratio over 200", w, h);
  }
  double hb = py_round(H / F) * F, wb = py_round(W / F) * F;
  if (hb * wb > (double)max_pixels) {
    double beta = sqrt(H * W / (double)max_pixels);
    hb = floor(H / beta / F) * F;
    wb = floor(W / beta / F) * F;
  } else if (hb * wb < (double)min_pixels) {
    double beta = sqrt((double)min_pixels / (H * W));
    hb = ceil(H * beta / F) * F;
    wb = ceil(W * beta / F) * F;
  }
  /* Python would go on with a zero side (and fail in the resize); an elongated image under a small max_pixels
   * gets here. */
  if (hb < F || wb < F || hb > INT_MAX || wb > INT_MAX)
    return mimo_errf(MIMO_E_INVALID, "vision: image of %d x %d cannot be resized to fit %ld..%ld pixels (got %.0f x "
                     "%.0f)", w, h, min_pixels, max_pixels, wb, hb);
  *out_h = (int)hb;
  *out_w = (int)wb;
  return MIMO_OK;
}

/* One axis of the bilinear resize: source indices and weights per output position. */
typedef struct {
  int i0, i1;
  float l0, l1;
} lerp_tap;

static void lerp_taps(lerp_tap *t, int in, int out) {
  float scale = (float)in / (float)out;
  for (int d = 0; d < out; d++) {
    if (in == out) { /* torch copies when the size is unchanged */
      t[d] = (lerp_tap){d, d, 1.0f, 0.0f};
      continue;
    }
    float src = scale * ((float)d + 0.5f) - 0.5f;
    if (src < 0)
      src = 0;
    int i0 = (int)floorf(src);
    if (i0 > in - 1)
      i0 = in - 1;
    float l1 = src - (float)i0;
    l1 = l1 < 0 ? 0 : l1 > 1 ? 1 : l1;
    t[d] = (lerp_tap){i0, i0 < in - 1 ? i0 + 1 : i0, 1.0f - l1, l1};
  }
}

mimo_status mimo_vision_patchify(const mimo_vision_config *vc, const mimo_image *im, float **patches, int *grid_h,
                                 int *grid_w) {
  *patches = NULL;
  *grid_h = *grid_w = 0;
  const int P = vc->patch, M = vc->merge, T = vc->temporal_patch;
  if (P <= 0 || M <= 0 || T <= 0 || P > 4096 || M > 64 || T > 64 || vc->in_chans != 3 || !(vc->std[0] != 0) ||
      !(vc->std[1] != 0) || !(vc->std[2] != 0))
    return mimo_errf(MIMO_E_CONFIG, "vision: patch %d, merge %d, temporal_patch %d, in_chans %d: need positive "
                     "sizes, 3 channels and a non-zero std", P, M, T, vc->in_chans);
  if (!im || !im->rgb || im->w <= 0 || im->h <= 0)
    return mimo_errf(MIMO_E_INVALID, "vision: empty image");
  int rh, rw;
  MIMO_TRY(mimo_vision_smart_resize(im->h, im->w, P * M, vc->min_pixels, vc->max_pixels, &rh, &rw));
  const int gh = rh / P, gw = rw / P, D = 3 * T * P * P;
  if ((double)rh * rw * 3 * T * sizeof(float) > (double)(SIZE_MAX / 2))
    return mimo_errf(MIMO_E_NOMEM, "vision: %d x %d patches of %d values do not fit in memory", gh, gw, D);
  size_t total = (size_t)rh * (size_t)rw * 3 * (size_t)T;
  float *out = malloc(total * sizeof *out);
  lerp_tap *ty = malloc((size_t)rh * sizeof *ty), *tx = malloc((size_t)rw * sizeof *tx);
  if (!out || !ty || !tx) {
    free(out);
    free(ty);
    free(tx);
    return mimo_errf(MIMO_E_NOMEM, "vision: out of memory for %d x %d patches of %d values", gh, gw, D);
  }
  lerp_taps(ty, im->h, rh);
  lerp_taps(tx, im->w, rw);
  float mean[3], sd[3]; /* divided by, not multiplied by 1/std: (x - mean) / std as the reference does */
  for (int c = 0; c < 3; c++) {
    mean[c] = (float)vc->mean[c];
    sd[c] = (float)vc->std[c];
  }
  const uint8_t *px = im->rgb;
  const size_t stride = (size_t)im->w * 3;
  for (int y = 0; y < rh; y++) {
    const lerp_tap ry = ty[y];
    const uint8_t *r0 = px + (size_t)ry.i0 * stride, *r1 = px + (size_t)ry.i1 * stride;
    /* Patch row and offset of this output row: row index ((bh*(gw/M) + bw)*M + mh)*M + mw. */
    const int gy = y / P, py = y % P, bh = gy / M, mh = gy % M;
    for (int x = 0; x < rw; x++) {
      const lerp_tap rx = tx[x];
      const int gx = x / P, pxi = x % P, bw = gx / M, mw = gx % M;
      float *row = out + ((((size_t)bh * (gw / M) + bw) * M + mh) * M + mw) * D;
      for (int c = 0; c < 3; c++) {
        float a = r0[3 * rx.i0 + c], b = r0[3 * rx.i1 + c], cc = r1[3 * rx.i0 + c], d = r1[3 * rx.i1 + c];
        float t0 = a * rx.l0 + b * rx.l1;
        float t1 = cc * rx.l0 + d * rx.l1;
        float v = t0 * ry.l0 + t1 * ry.l1;
        float n = (v - mean[c]) / sd[c];
        for (int tt = 0; tt < T; tt++)
          row[((size_t)(c * T + tt) * P + py) * P + pxi] = n;
      }
    }
  }
  free(ty);
  free(tx);
  *patches = out;
  *grid_h = gh;
  *grid_w = gw;
  return MIMO_OK;
}
