/* Image decoding for requests (io/image.h, spec §4.3 step 1): PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp)
 * bytes to 8-bit RGB, matching what the reference pipeline gets from PIL (9.4, the Debian build, which links the
 * same libjpeg-turbo and libwebp):
 *   im = Image.open(f); if it has alpha (RGBA/LA/PA, or a tRNS entry): im = alpha_composite(white, im.convert("RGBA"))
 *   im = im.convert("RGB")
 * PIL's quirks are reproduced on purpose, each noted where it is done: 16-bit samples keep their high byte, except
 * 16-bit grey, which PIL opens as mode "I" and clips to 255; a tRNS colour key is compared with the 8-bit value PIL
 * holds (after scaling 1/2/4-bit grey, after dropping the low byte of 16-bit RGB); CMYK JPEGs are always taken as
 * Adobe-inverted. EXIF orientation is not applied (Image.open does not apply it either), nor gamma or ICC profiles.
 * Every size is checked against the pixel limit before memory is taken; libpng and libjpeg report errors by
 * longjmp, so each decoder keeps its state in a struct owned by the caller, which frees it on every path.
 * Verified by tests/unit/test_image.c against PIL (every byte) and tests/fuzz/fuzz_image.c. */
#include "io/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>
#include <webp/demux.h>

/* PIL's Image.alpha_composite(dst, src) blends with 7 extra bits of precision and divides by 255 as
 * (x + (x >> 8)) >> 8: coef1 = src_a*255*255*128 / out_a255 and coef2 = 255*128 - coef1, where
 * out_a255 = src_a*255 + dst_a*(255 - src_a); out = div255(c*coef1 + dst_c*coef2 + 128*128) >> 7. With dst opaque
 * white, out_a255 = 255*255, so coef1 = 128*a exactly and out = div255(128*(c*a + 255*(255-a)) + 128*128) >> 7.
 * Equal to PIL for all 65536 (c, a) pairs (the test images include every alpha value). */
static inline uint8_t over_white(unsigned c, unsigned a) {
  uint32_t t = 128u * (c * a + 255u * (255u - a)) + 128u * 128u;
  return (uint8_t)((((t >> 8) + t) >> 8) >> 7);
}

static mimo_status check_size(const char *fmt, unsigned long w, unsigned long h, long max_pixels) {
  if (w == 0 || h == 0)
    return mimo_errf(MIMO_E_INVALID, "image: %s has a zero dimension (%lu x %lu)", fmt, w, h);
  if ((unsigned long long)w * h > (unsigned long long)max_pixels)
    return mimo_errf(MIMO_E_INVALID, "image: %s of %lu x %lu pixels is over the limit of %ld pixels", fmt, w, h,
                     max_pixels);
  return MIMO_OK;
}

static mimo_status alloc_rgb(mimo_image *out, int w, int h) {
  out->rgb = malloc((size_t)w * (size_t)h * 3);
  if (!out->rgb)
    return mimo_errf(MIMO_E_NOMEM, "image: out of memory for %d x %d pixels", w, h);
  out->w = w;
  out->h = h;
  return MIMO_OK;
}

/* ---- PNG ---- */

enum { ROW_GRAY8, ROW_GRAY16, ROW_GA, ROW_RGB, ROW_RGBA };

typedef struct png_job {
  const uint8_t *data;
  size_t n, off;
  long max_pixels;
  mimo_image *out;
  png_structp png;
  png_infop info;
  uint8_t *rows; /* raw rows after libpng's transforms: one row, or every row when interlaced */
  int kind;      /* ROW_* */
  int has_key;   /* a tRNS colour key for a grey or RGB image */
  unsigned key[3];
  int truncated;
  char msg[160], warn[160];
} png_job;

static void png_read_cb(png_structp png, png_bytep dst, size_t len) {
  png_job *j = png_get_io_ptr(png);
  if (len > j->n - j->off) {
    j->truncated = 1;
    png_error(png, "data truncated");
  }
  memcpy(dst, j->data + j->off, len);
  j->off += len;
}

static void png_error_cb(png_structp png, png_const_charp msg) {
  png_job *j = png_get_error_ptr(png);
  snprintf(j->msg, sizeof j->msg, "%s", msg);
  png_longjmp(png, 1);
}

/* Warnings do not stop decoding (PIL ignores the same chunks), but the last one often explains a later error
 * ("Image width is zero in IHDR" precedes "Invalid IHDR data"). */
static void png_warn_cb(png_structp png, png_const_charp msg) {
  png_job *j = png_get_error_ptr(png);
  snprintf(j->warn, sizeof j->warn, "%s", msg);
}

/* One row, as libpng delivers it after png_run's transforms, to RGB. */
static void png_row_to_rgb(const png_job *j, const uint8_t *s, uint8_t *d, int w) {
  for (int x = 0; x < w; x++, d += 3) {
    unsigned r, g, b, a = 255;
    switch (j->kind) {
    case ROW_GRAY8:
      r = g = b = s[x];
      a = j->has_key && r == j->key[0] ? 0 : 255;
      break;
    case ROW_GRAY16: { /* PIL mode "I": the key is compared with the 16-bit value, which then clips to 255 */
      unsigned v = (unsigned)s[2 * x] << 8 | s[2 * x + 1];
      r = g = b = v > 255 ? 255 : v;
      a = j->has_key && v == j->key[0] ? 0 : 255;
      break;
    }
    case ROW_GA:
      r = g = b = s[2 * x];
      a = s[2 * x + 1];
      break;
    case ROW_RGB:
      r = s[3 * x], g = s[3 * x + 1], b = s[3 * x + 2];
      a = j->has_key && r == j->key[0] && g == j->key[1] && b == j->key[2] ? 0 : 255;
      break;
    default:
      r = s[4 * x], g = s[4 * x + 1], b = s[4 * x + 2], a = s[4 * x + 3];
      break;
    }
    d[0] = over_white(r, a);
    d[1] = over_white(g, a);
    d[2] = over_white(b, a);
  }
}

/* Everything that may longjmp; png_decode holds the setjmp. */
static mimo_status png_run(png_job *j) {
  png_set_read_fn(j->png, j, png_read_cb);
  /* libpng's own cap (10^6 per side) would make a mere size read as "Invalid IHDR data": lift it to the format's
   * and let check_size name the problem. */
  png_set_user_limits(j->png, PNG_UINT_31_MAX, PNG_UINT_31_MAX);
  png_read_info(j->png, j->info);
  png_uint_32 w = png_get_image_width(j->png, j->info), h = png_get_image_height(j->png, j->info);
  MIMO_TRY(check_size("PNG", w, h, j->max_pixels));
  int ct = png_get_color_type(j->png, j->info), depth = png_get_bit_depth(j->png, j->info);
  png_color_16p tc = NULL;
  /* Read the key before png_read_update_info, which clears info's tRNS when it expands. */
  if ((ct == PNG_COLOR_TYPE_GRAY || ct == PNG_COLOR_TYPE_RGB) &&
      png_get_tRNS(j->png, j->info, NULL, NULL, &tc) && tc) {
    j->has_key = 1;
    j->key[0] = ct == PNG_COLOR_TYPE_GRAY ? tc->gray : tc->red;
    j->key[1] = tc->green;
    j->key[2] = tc->blue;
  }
  if (ct == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb(j->png); /* with tRNS this gives RGBA, the per-index alpha PIL applies */
  if (ct == PNG_COLOR_TYPE_GRAY && depth < 8)
    png_set_expand_gray_1_2_4_to_8(j->png); /* x255, x85, x17: PIL's scaling of modes "1", "L;2", "L;4" */
  if (depth == 16 && ct != PNG_COLOR_TYPE_GRAY)
    png_set_strip_16(j->png); /* PIL's "RGB;16B"-style unpackers keep the high byte (no rounding) */
  int passes = png_set_interlace_handling(j->png);
  png_read_update_info(j->png, j->info);
  int ch = png_get_channels(j->png, j->info), bd = png_get_bit_depth(j->png, j->info);
  size_t rowbytes = png_get_rowbytes(j->png, j->info);
  j->kind = ch == 1 ? (bd == 16 ? ROW_GRAY16 : ROW_GRAY8) : ch == 2 ? ROW_GA : ch == 3 ? ROW_RGB : ROW_RGBA;
  if (ch < 1 || ch > 4 || (bd == 16) != (j->kind == ROW_GRAY16) || bd < 8 ||
      rowbytes != (size_t)w * (size_t)ch * (size_t)(bd / 8))
    return mimo_errf(MIMO_E_INTERNAL, "image: PNG: unexpected row layout (%d channels of %d bits)", ch, bd);
  size_t nrows = passes > 1 ? h : 1;
  j->rows = calloc(nrows, rowbytes);
  if (!j->rows)
    return mimo_errf(MIMO_E_NOMEM, "image: out of memory for PNG rows (%u x %u)", (unsigned)w, (unsigned)h);
  MIMO_TRY(alloc_rgb(j->out, (int)w, (int)h));
  for (int p = 0; p < passes; p++)
    for (png_uint_32 y = 0; y < h; y++) {
      png_read_row(j->png, j->rows + (nrows > 1 ? y : 0) * rowbytes, NULL);
      if (nrows == 1)
        png_row_to_rgb(j, j->rows, j->out->rgb + (size_t)y * w * 3, (int)w);
    }
  if (nrows > 1)
    for (png_uint_32 y = 0; y < h; y++)
      png_row_to_rgb(j, j->rows + y * rowbytes, j->out->rgb + (size_t)y * w * 3, (int)w);
  /* Chunks after the image (and IEND) are not read: PIL does not insist on them either. */
  return MIMO_OK;
}

static mimo_status png_decode(png_job *j) {
  if (setjmp(png_jmpbuf(j->png))) {
    if (j->truncated)
      return mimo_errf(MIMO_E_INVALID, "image: PNG data truncated (%zu bytes)", j->n);
    if (j->warn[0])
      return mimo_errf(MIMO_E_INVALID, "image: PNG corrupt: %s (%s)", j->msg, j->warn);
    return mimo_errf(MIMO_E_INVALID, "image: PNG corrupt: %s", j->msg);
  }
  return png_run(j);
}

static mimo_status decode_png(const uint8_t *data, size_t n, long max_pixels, mimo_image *out) {
  png_job j = {.data = data, .n = n, .max_pixels = max_pixels, .out = out};
  mimo_status st = MIMO_E_NOMEM;
  j.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &j, png_error_cb, png_warn_cb);
  if (j.png)
    j.info = png_create_info_struct(j.png);
  if (j.info)
    st = png_decode(&j);
  else
    mimo_errf(st, "image: out of memory for the PNG decoder");
  png_destroy_read_struct(&j.png, &j.info, NULL);
  free(j.rows);
  return st;
}

/* ---- JPEG ---- */

/* Progressive files can ask for unbounded scans over the whole image (a known libjpeg-turbo time sink); real
 * encoders write about 10. */
#define JPEG_MAX_SCANS 500

typedef struct jpeg_job {
  struct jpeg_decompress_struct cinfo;
  struct jpeg_error_mgr err;
  struct jpeg_progress_mgr progress;
  jmp_buf jb;
  const uint8_t *data;
  size_t n;
  long max_pixels;
  mimo_image *out;
  uint8_t *row; /* one CMYK scanline */
  int truncated;
  char msg[JMSG_LENGTH_MAX + 64];
} jpeg_job;

static void jpeg_error_cb(j_common_ptr c) {
  jpeg_job *j = c->client_data;
  (*c->err->format_message)(c, j->msg);
  longjmp(j->jb, 1);
}

/* libjpeg only warns when the data ends early (and decodes grey from there on); PIL refuses a truncated file, so
 * do we. Other warnings (corrupt entropy data) are ignored, as PIL ignores them. */
static void jpeg_message_cb(j_common_ptr c, int level) {
  jpeg_job *j = c->client_data;
  if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) {
    j->truncated = 1;
    longjmp(j->jb, 1);
  }
}

static void jpeg_progress_cb(j_common_ptr c) {
  jpeg_job *j = c->client_data;
  int scans = ((j_decompress_ptr)c)->input_scan_number;
  if (scans > JPEG_MAX_SCANS) {
    snprintf(j->msg, sizeof j->msg, "more than %d progressive scans", JPEG_MAX_SCANS);
    longjmp(j->jb, 1);
  }
}

/* PIL's CMYK -> RGB: r = clip(255 - k - div255(c * (255 - k))), div255(x) = (x + 128 + ((x + 128) >> 8)) >> 8. */
static inline uint8_t cmyk_channel(unsigned c, unsigned k) {
  unsigned nk = 255 - k, t = c * nk + 128, m = ((t >> 8) + t) >> 8;
  return (uint8_t)(nk > m ? nk - m : 0);
}

static mimo_status jpeg_run(jpeg_job *j) {
  struct jpeg_decompress_struct *ci = &j->cinfo;
  jpeg_create_decompress(ci);
  ci->progress = &j->progress;
  jpeg_mem_src(ci, j->data, (unsigned long)j->n);
  if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK)
    return mimo_errf(MIMO_E_INVALID, "image: JPEG holds only tables, no image");
  MIMO_TRY(check_size("JPEG", ci->image_width, ci->image_height, j->max_pixels));
  int cmyk = 0;
  switch (ci->jpeg_color_space) {
  case JCS_GRAYSCALE:
  case JCS_YCbCr:
  case JCS_RGB:
    ci->out_color_space = JCS_RGB;
    break;
  case JCS_CMYK:
  case JCS_YCCK:
    ci->out_color_space = JCS_CMYK;
    cmyk = 1;
    break;
  default:
    return mimo_errf(MIMO_E_INVALID, "image: JPEG with %d components in an unknown colour space is not supported",
                     ci->num_components);
  }
  /* libjpeg's defaults (islow IDCT, fancy upsampling) are what PIL uses too. */
  jpeg_start_decompress(ci);
  int w = (int)ci->output_width, h = (int)ci->output_height;
  if (ci->output_components != (cmyk ? 4 : 3) || w != (int)ci->image_width || h != (int)ci->image_height)
    return mimo_errf(MIMO_E_INTERNAL, "image: JPEG: unexpected output layout (%d components)",
                     ci->output_components);
  MIMO_TRY(alloc_rgb(j->out, w, h));
  if (cmyk && !(j->row = malloc((size_t)w * 4)))
    return mimo_errf(MIMO_E_NOMEM, "image: out of memory for a JPEG row");
  while (ci->output_scanline < ci->output_height) {
    uint8_t *d = j->out->rgb + (size_t)ci->output_scanline * w * 3;
    JSAMPROW r = cmyk ? j->row : d;
    if (jpeg_read_scanlines(ci, &r, 1) != 1)
      return mimo_errf(MIMO_E_INVALID, "image: JPEG data truncated (%zu bytes)", j->n);
    /* PIL reads every 4-component JPEG as "CMYK;I" (inverted, the Adobe convention), marker or not. */
    for (int x = 0; cmyk && x < w; x++) {
      const uint8_t *s = j->row + 4 * x;
      unsigned k = 255u - s[3];
      d[3 * x] = cmyk_channel(255u - s[0], k);
      d[3 * x + 1] = cmyk_channel(255u - s[1], k);
      d[3 * x + 2] = cmyk_channel(255u - s[2], k);
    }
  }
  /* Not jpeg_finish_decompress: what follows the last scanline does not change the pixels. */
  return MIMO_OK;
}

static mimo_status jpeg_decode(jpeg_job *j) {
  if (setjmp(j->jb)) {
    if (j->truncated)
      return mimo_errf(MIMO_E_INVALID, "image: JPEG data truncated (%zu bytes)", j->n);
    return mimo_errf(MIMO_E_INVALID, "image: JPEG: %s", j->msg); /* libjpeg says "Corrupt JPEG data: ..." itself */
  }
  return jpeg_run(j);
}

static mimo_status decode_jpeg(const uint8_t *data, size_t n, long max_pixels, mimo_image *out) {
  jpeg_job *j = calloc(1, sizeof *j); /* large (jmp_buf, libjpeg structs): off the stack */
  if (!j)
    return mimo_errf(MIMO_E_NOMEM, "image: out of memory for the JPEG decoder");
  j->data = data;
  j->n = n;
  j->max_pixels = max_pixels;
  j->out = out;
  j->cinfo.err = jpeg_std_error(&j->err);
  j->err.error_exit = jpeg_error_cb;
  j->err.emit_message = jpeg_message_cb;
  j->progress.progress_monitor = jpeg_progress_cb;
  j->cinfo.client_data = j;
  mimo_status st = jpeg_decode(j);
  jpeg_destroy_decompress(&j->cinfo); /* safe on a never-created struct: mem is NULL */
  free(j->row);
  free(j);
  return st;
}

/* ---- WebP ---- */

static mimo_status webp_error(VP8StatusCode s, size_t n) {
  switch (s) {
  case VP8_STATUS_NOT_ENOUGH_DATA:
    return mimo_errf(MIMO_E_INVALID, "image: WebP data truncated (%zu bytes)", n);
  case VP8_STATUS_OUT_OF_MEMORY:
    return mimo_errf(MIMO_E_NOMEM, "image: out of memory decoding WebP");
  case VP8_STATUS_UNSUPPORTED_FEATURE:
    return mimo_errf(MIMO_E_INVALID, "image: WebP uses an unsupported feature");
  case VP8_STATUS_INVALID_PARAM:
  case VP8_STATUS_BITSTREAM_ERROR:
  default:
    return mimo_errf(MIMO_E_INVALID, "image: WebP corrupt (bitstream error %d)", (int)s);
  }
}

/* RGBA -> out: composited onto white when the file declares alpha; otherwise the alpha bytes are dropped, as PIL's
 * "RGBX" raw mode does (so an animation's transparent canvas border is black then, as in PIL). */
static void rgba_to_rgb(const uint8_t *s, uint8_t *d, size_t npix, int alpha) {
  for (size_t i = 0; i < npix; i++, s += 4, d += 3) {
    unsigned a = alpha ? s[3] : 255;
    d[0] = over_white(s[0], a);
    d[1] = over_white(s[1], a);
    d[2] = over_white(s[2], a);
  }
}

/* The first frame of an animation, composed on the canvas as PIL's WebPAnimDecoder-based reader shows it. */
static mimo_status webp_first_frame(const uint8_t *data, size_t n, const WebPBitstreamFeatures *f, mimo_image *out) {
  WebPAnimDecoderOptions o;
  if (!WebPAnimDecoderOptionsInit(&o))
    return mimo_errf(MIMO_E_INTERNAL, "image: libwebp version mismatch");
  o.color_mode = MODE_RGBA;
  o.use_threads = 0;
  WebPData wd = {data, n};
  WebPAnimDecoder *dec = WebPAnimDecoderNew(&wd, &o);
  if (!dec)
    return mimo_errf(MIMO_E_INVALID, "image: WebP animation corrupt or truncated (%zu bytes)", n);
  WebPAnimInfo info;
  uint8_t *buf = NULL;
  int ts = 0;
  mimo_status st = MIMO_OK;
  if (!WebPAnimDecoderGetInfo(dec, &info) || (int)info.canvas_width != f->width ||
      (int)info.canvas_height != f->height)
    st = mimo_errf(MIMO_E_INVALID, "image: WebP animation canvas does not match its header");
  else if (!WebPAnimDecoderGetNext(dec, &buf, &ts))
    st = mimo_errf(MIMO_E_INVALID, "image: WebP animation's first frame corrupt or truncated (%zu bytes)", n);
  else if ((st = alloc_rgb(out, f->width, f->height)) == MIMO_OK)
    rgba_to_rgb(buf, out->rgb, (size_t)f->width * f->height, f->has_alpha);
  WebPAnimDecoderDelete(dec);
  return st;
}

static mimo_status decode_webp(const uint8_t *data, size_t n, long max_pixels, mimo_image *out) {
  WebPBitstreamFeatures f;
  VP8StatusCode s = WebPGetFeatures(data, n, &f);
  if (s != VP8_STATUS_OK)
    return webp_error(s, n);
  MIMO_TRY(check_size("WebP", (unsigned long)(f.width > 0 ? f.width : 0), (unsigned long)(f.height > 0 ? f.height : 0),
                      max_pixels));
  if (f.has_animation)
    return webp_first_frame(data, n, &f, out);
  WebPDecoderConfig cfg;
  if (!WebPInitDecoderConfig(&cfg))
    return mimo_errf(MIMO_E_INTERNAL, "image: libwebp version mismatch");
  MIMO_TRY(alloc_rgb(out, f.width, f.height));
  size_t npix = (size_t)f.width * f.height, ch = f.has_alpha ? 4 : 3;
  uint8_t *buf = f.has_alpha ? malloc(npix * 4) : out->rgb;
  if (!buf)
    return mimo_errf(MIMO_E_NOMEM, "image: out of memory for %d x %d WebP pixels", f.width, f.height);
  cfg.output.colorspace = f.has_alpha ? MODE_RGBA : MODE_RGB;
  cfg.output.is_external_memory = 1;
  cfg.output.u.RGBA.rgba = buf;
  cfg.output.u.RGBA.stride = (int)(f.width * ch);
  cfg.output.u.RGBA.size = npix * ch;
  s = WebPDecode(data, n, &cfg);
  WebPFreeDecBuffer(&cfg.output);
  if (s == VP8_STATUS_OK && f.has_alpha)
    rgba_to_rgb(buf, out->rgb, npix, 1);
  if (buf != out->rgb)
    free(buf);
  return s == VP8_STATUS_OK ? MIMO_OK : webp_error(s, n);
}

/* ---- format sniffing ---- */

static const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static int prefix_of(const uint8_t *d, size_t n, const void *sig, size_t len) {
  return n > 0 && memcmp(d, sig, n < len ? n : len) == 0;
}

/* Names the formats people send most that mimo does not decode, for the error message. */
#define SIG(off, s, name) {off, sizeof(s) - 1, s, name}
static const char *unsupported_name(const uint8_t *d, size_t n) {
  static const struct {
    size_t off, len;
    const char *sig, *name;
  } known[] = {
      SIG(0, "GIF8", "GIF"),           SIG(0, "BM", "BMP"),          SIG(0, "II*\0", "TIFF"),
      SIG(0, "MM\0*", "TIFF"),         SIG(4, "ftypavi", "AVIF"),    SIG(4, "ftyphei", "HEIF"),
      SIG(4, "ftypmif1", "HEIF"),      SIG(0, "\0\0\1\0", "ICO"),   SIG(0, "8BPS", "PSD"),
      SIG(0, "qoif", "QOI"),           SIG(0, "%PDF", "PDF"),        SIG(0, "\0\0\0\x0cjP  ", "JPEG 2000"),
      SIG(0, "\xff\x4f\xff\x51", "JPEG 2000"), SIG(0, "\xff\x0a", "JPEG XL"), SIG(0, "\0\0\0\x0cJXL ", "JPEG XL"),
      SIG(0, "<svg", "SVG"),           SIG(0, "<?xml", "XML/SVG"),   SIG(0, "RIFF", "RIFF without WEBP"),
  };
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (n >= known[i].off + known[i].len && memcmp(d + known[i].off, known[i].sig, known[i].len) == 0)
      return known[i].name;
  return NULL;
}
#undef SIG

static mimo_status unknown_format(const uint8_t *d, size_t n) {
  char hex[3 * 8 + 1] = "";
  size_t m = n < 8 ? n : 8, o = 0;
  for (size_t i = 0; i < m; i++)
    o += (size_t)snprintf(hex + o, sizeof hex - o, i ? " %02x" : "%02x", d[i]);
  const char *name = unsupported_name(d, n);
  if (name)
    return mimo_errf(MIMO_E_INVALID, "image: unknown format (first bytes %s: %s is not supported)", hex, name);
  return mimo_errf(MIMO_E_INVALID, "image: unknown format (first bytes %s; PNG, JPEG and WebP are supported)", hex);
}

mimo_status mimo_image_decode_limit(const void *data, size_t n, long max_pixels, mimo_image *out) {
  *out = (mimo_image){0};
  const uint8_t *d = data;
  if (!d || n == 0)
    return mimo_errf(MIMO_E_INVALID, "image: no data");
  mimo_status st;
  if (n >= 8 && memcmp(d, PNG_SIG, 8) == 0)
    st = decode_png(d, n, max_pixels, out);
  else if (n >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff)
    st = decode_jpeg(d, n, max_pixels, out);
  else if (n >= 12 && memcmp(d, "RIFF", 4) == 0 && memcmp(d + 8, "WEBP", 4) == 0)
    st = decode_webp(d, n, max_pixels, out);
  else if (n < 8 && prefix_of(d, n, PNG_SIG, 8))
    return mimo_errf(MIMO_E_INVALID, "image: PNG data truncated (%zu bytes)", n);
  else if (n < 3 && prefix_of(d, n, "\xff\xd8\xff", 3))
    return mimo_errf(MIMO_E_INVALID, "image: JPEG data truncated (%zu bytes)", n);
  else if (n < 12 && n >= 4 && memcmp(d, "RIFF", 4) == 0)
    return mimo_errf(MIMO_E_INVALID, "image: RIFF (WebP?) data truncated (%zu bytes)", n);
  else
    return unknown_format(d, n);
  if (st != MIMO_OK)
    mimo_image_free(out);
  return st;
}

mimo_status mimo_image_decode(const void *data, size_t n, mimo_image *out) {
  return mimo_image_decode_limit(data, n, MIMO_IMAGE_MAX_PIXELS, out);
}

void mimo_image_free(mimo_image *im) {
  if (!im)
    return;
  free(im->rgb);
  *im = (mimo_image){0};
}
