/* Images in requests: base64 and data: URLs (RFC 4648 vectors, a round trip against an encoder written here, every
 * kind of malformed input), the image decoder's refusals (unknown formats, truncation at every cut point, corrupt
 * headers, dimension bombs refused before allocation), and, against tests/model/vision_preproc_ref.py (PIL and
 * numpy written from the spec): decoded RGB bytes equal to PIL's for PNG/JPEG/WebP of every kind, smart_resize equal
 * to Python's, and patches within 1e-4 of the numpy reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/base64.h"
#include "io/image.h"
#include "model/vision_preproc.h"

/* ---- helpers ---- */

static uint8_t *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long len = ftell(f);
  fseek(f, 0, SEEK_SET);
  uint8_t *p = malloc(len > 0 ? (size_t)len : 1);
  *n = p ? fread(p, 1, (size_t)len, f) : 0;
  fclose(f);
  return p;
}

static uint8_t *seed(const char *name, size_t *n) {
  const char *src = getenv("MIMO_SRC");
  if (!src)
    fail_msg("MIMO_SRC is not set (ctest sets it to the repository root)");
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/fuzz/corpus/fuzz_image/%s", src, name);
  uint8_t *p = slurp(path, n);
  if (!p)
    fail_msg("cannot read %s", path);
  return p;
}

static int has(const char *s) { return strstr(mimo_errmsg(), s) != NULL; }

/* ---- base64 ---- */

static void expect_b64(const char *in, const char *want) {
  uint8_t *out;
  size_t n;
  if (mimo_base64_decode(in, strlen(in), &out, &n) != MIMO_OK)
    fail_msg("'%s': %s", in, mimo_errmsg());
  assert_int_equal(n, strlen(want));
  assert_memory_equal(out, want, n);
  free(out);
}

static void expect_b64_error(const char *in, const char *msg) {
  uint8_t *out = (uint8_t *)1;
  size_t n = 7;
  assert_int_equal(mimo_base64_decode(in, strlen(in), &out, &n), MIMO_E_INVALID);
  assert_null(out);
  assert_int_equal(n, 0);
  if (!has(msg))
    fail_msg("'%s': message '%s' lacks '%s'", in, mimo_errmsg(), msg);
}

static void test_base64_rfc4648(void **state) {
  (void)state;
  /* RFC 4648 §10, padded and unpadded */
  static const char *v[][3] = {
      {"", "", ""},           {"Zg==", "Zg", "f"},           {"Zm8=", "Zm8", "fo"},
      {"Zm9v", "Zm9v", "foo"}, {"Zm9vYg==", "Zm9vYg", "foob"}, {"Zm9vYmE=", "Zm9vYmE", "fooba"},
      {"Zm9vYmFy", "Zm9vYmFy", "foobar"},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    expect_b64(v[i][0], v[i][2]);
    expect_b64(v[i][1], v[i][2]);
  }
  expect_b64("+/+/", "\xfb\xff\xbf");
  expect_b64("Zm9v\nYmFy\n", "foobar");
  expect_b64(" Z m 9 v\r\n\tYm E = \n", "fooba");
  expect_b64("Zg= =", "f"); /* whitespace inside the padding */
  expect_b64("Zh==", "f");  /* leftover bits set: accepted (RFC 4648 §3.5 leaves it to the decoder) */
}

static void test_base64_errors(void **state) {
  (void)state;
  expect_b64_error("Zm9v*mFy", "'*' at offset 4");
  expect_b64_error("Zm9v-_", "'-' at offset 4"); /* base64url is not the standard alphabet */
  expect_b64_error("Zm9v\x01", "byte 0x01 at offset 4");
  expect_b64_error("Zm9v\xc3\xa9", "byte 0xc3 at offset 4");
  expect_b64_error("Zm9vY", "lone character at offset 4");
  expect_b64_error("Z", "lone character at offset 0");
  expect_b64_error("Zg=", "padding must fill");
  expect_b64_error("Zg===", "padding must fill");
  expect_b64_error("Zm9=v", "data after the '=' padding at offset 3");
  expect_b64_error("Zg==Zg==", "data after the '=' padding at offset 2");
  expect_b64_error("Zm9v=", "padding must fill");
  expect_b64_error("==", "padding must fill");
  expect_b64_error("=Zg", "data after");
  /* the length is honoured: a NUL inside the range is a bad byte, bytes past it are not read */
  uint8_t *out;
  size_t n;
  assert_int_equal(mimo_base64_decode("Zg\0=", 4, &out, &n), MIMO_E_INVALID);
  assert_true(has("byte 0x00 at offset 2"));
  assert_int_equal(mimo_base64_decode("Zm9v!!!", 4, &out, &n), MIMO_OK);
  assert_int_equal(n, 3);
  free(out);
}

/* An encoder written from RFC 4648 §4's table, independent of the decoder's code. */
static size_t encode(const uint8_t *p, size_t n, char *o, int pad) {
  static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t k = 0;
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    size_t chars = n - i >= 3 ? 4 : n - i + 1;
    for (size_t c = 0; c < 4; c++)
      if (c < chars)
        o[k++] = A[(v >> (18 - 6 * c)) & 63];
      else if (pad)
        o[k++] = '=';
  }
  o[k] = 0;
  return k;
}

static void test_base64_round_trip(void **state) {
  (void)state;
  uint8_t in[300];
  char enc[500], spaced[1000];
  srand(1234);
  for (size_t n = 0; n < sizeof in; n++) {
    for (size_t i = 0; i < n; i++)
      in[i] = (uint8_t)rand();
    size_t k = encode(in, n, enc, (int)(n & 1));
    size_t m = 0; /* sprinkle whitespace as MIME line breaks would */
    for (size_t i = 0; i < k; i++) {
      if (rand() % 16 == 0)
        spaced[m++] = " \n\r\t"[rand() % 4];
      spaced[m++] = enc[i];
    }
    uint8_t *out;
    size_t got;
    assert_int_equal(mimo_base64_decode(spaced, m, &out, &got), MIMO_OK);
    assert_non_null(out);
    assert_int_equal(got, n);
    assert_memory_equal(out, in, n);
    free(out);
  }
}

static void test_data_url(void **state) {
  (void)state;
  uint8_t *b;
  size_t n;
  char mt[32];
  assert_int_equal(mimo_data_url_parse("data:image/png;base64,iVBORw0KGgo=", &b, &n, mt, sizeof mt), MIMO_OK);
  assert_string_equal(mt, "image/png");
  assert_int_equal(n, 8);
  assert_memory_equal(b, "\x89PNG\r\n\x1a\n", 8);
  free(b);
  assert_int_equal(mimo_data_url_parse("DATA:Image/JPEG;BASE64,Zm9v", &b, &n, mt, sizeof mt), MIMO_OK);
  assert_string_equal(mt, "image/jpeg");
  free(b);
  assert_int_equal(mimo_data_url_parse("data:;base64,Zm9v", &b, &n, mt, sizeof mt), MIMO_OK);
  assert_string_equal(mt, "text/plain"); /* RFC 2397's default */
  free(b);
  assert_int_equal(mimo_data_url_parse("data:image/webp;name=a.webp;base64,\nZm9v\n", &b, &n, NULL, 0), MIMO_OK);
  assert_int_equal(n, 3);
  free(b);
  assert_int_equal(mimo_data_url_parse("data:image/png;base64,", &b, &n, mt, sizeof mt), MIMO_OK);
  assert_int_equal(n, 0);
  free(b);

  static const char *bad[][2] = {
      {"http://example.com/a.png", "does not start with 'data:'"},
      {"data:image/png;base64", "no ','"},
      {"data:image/png,%89PNG", "not base64"},
      {"data:image/png;charset=utf-8,abc", "not base64"},
      {"data:image/png;base64;x=1,Zm9v", "';base64' at offset 14 must come last"},
      {"data:image/png;foo;base64,Zm9v", "parameter 'foo' at offset 15"},
      {"data:image/png;;base64,Zm9v", "parameter ''"},
      {"data:imagepng;base64,Zm9v", "not type/subtype"},
      {"data:image/;base64,Zm9v", "not type/subtype"},
      {"data:image /png;base64,Zm9v", "invalid character at offset 10"},
      {"data:image/png;base64,Zm9v%3D", "data starts at offset 22): base64: invalid character '%' at offset 4"},
      {"data:image/png;base64,Zm9vY", "lone character"},
      {"data:image/x-a-very-long-media-type-name;base64,Zm9v", "longer than 31 bytes"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    b = (uint8_t *)1;
    assert_int_equal(mimo_data_url_parse(bad[i][0], &b, &n, mt, sizeof mt), MIMO_E_INVALID);
    assert_null(b);
    if (!has(bad[i][1]))
      fail_msg("'%s': message '%s' lacks '%s'", bad[i][0], mimo_errmsg(), bad[i][1]);
  }
  assert_int_equal(mimo_data_url_parse(NULL, &b, &n, mt, sizeof mt), MIMO_E_INVALID);
}

/* ---- decoder refusals ---- */

static void expect_image_error(const void *d, size_t n, const char *msg) {
  mimo_image im = {.w = 5, .rgb = (uint8_t *)1};
  mimo_status st = mimo_image_decode(d, n, &im);
  if (st != MIMO_E_INVALID)
    fail_msg("status %d (%s), wanted an invalid-input error with '%s'", st, mimo_errmsg(), msg);
  assert_null(im.rgb);
  assert_int_equal(im.w, 0);
  if (!has(msg) || strncmp(mimo_errmsg(), "image: ", 7) != 0)
    fail_msg("message '%s' lacks '%s'", mimo_errmsg(), msg);
}

static void test_image_unknown(void **state) {
  (void)state;
  expect_image_error(NULL, 0, "no data");
  expect_image_error("", 0, "no data");
  expect_image_error("GIF89a\x01\x00\x01\x00", 10, "unknown format (first bytes 47 49 46 38 39 61 01 00: GIF is "
                                                  "not supported)");
  expect_image_error("BM\x10\x00", 4, "BMP is not supported");
  expect_image_error("\0\0\0\x1c" "ftypavif", 12, "AVIF is not supported");
  expect_image_error("RIFF\x10\0\0\0WAVEfmt ", 16, "RIFF without WEBP is not supported");
  expect_image_error("hello", 5, "unknown format (first bytes 68 65 6c 6c 6f; PNG, JPEG and WebP are supported)");
  expect_image_error("\x89PNG\r", 5, "PNG data truncated");
  expect_image_error("\xff\xd8", 2, "JPEG data truncated");
  expect_image_error("RIFF\x10\0\0\0WE", 10, "truncated");
  expect_image_error("\xff", 1, "JPEG data truncated");
}

static uint32_t crc32_png(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++) {
    c ^= p[i];
    for (int k = 0; k < 8; k++)
      c = c >> 1 ^ (0xedb88320u & (0u - (c & 1)));
  }
  return ~c;
}

static size_t put_chunk(uint8_t *o, const char *type, const uint8_t *data, uint32_t len) {
  o[0] = (uint8_t)(len >> 24), o[1] = (uint8_t)(len >> 16), o[2] = (uint8_t)(len >> 8), o[3] = (uint8_t)len;
  memcpy(o + 4, type, 4);
  if (len)
    memcpy(o + 8, data, len);
  uint32_t c = crc32_png(o + 4, len + 4);
  o[8 + len] = (uint8_t)(c >> 24), o[9 + len] = (uint8_t)(c >> 16), o[10 + len] = (uint8_t)(c >> 8);
  o[11 + len] = (uint8_t)c;
  return 12 + len;
}

/* A PNG with the given IHDR and, as IDAT, a stored (uncompressed) zlib block of two zero bytes: filter 0 and one
 * 8-bit grey pixel 0. */
static size_t make_png(uint8_t *o, uint32_t w, uint32_t h, uint8_t depth, uint8_t ct) {
  static const uint8_t idat[] = {0x78, 0x01, 0x01, 0x02, 0x00, 0xfd, 0xff, 0, 0, 0x00, 0x02, 0x00, 0x01};
  uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8), (uint8_t)w, (uint8_t)(h >> 24),
                      (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h, depth, ct, 0, 0, 0};
  size_t n = 8;
  memcpy(o, "\x89PNG\r\n\x1a\n", 8);
  n += put_chunk(o + n, "IHDR", ihdr, 13);
  n += put_chunk(o + n, "IDAT", idat, sizeof idat);
  n += put_chunk(o + n, "IEND", NULL, 0);
  return n;
}

static void test_image_png_headers(void **state) {
  (void)state;
  uint8_t p[128];
  size_t n = make_png(p, 1, 1, 8, 0); /* a valid 1x1 grey pixel 0 */
  mimo_image im;
  assert_int_equal(mimo_image_decode(p, n, &im), MIMO_OK);
  assert_int_equal(im.w * im.h, 1);
  assert_int_equal(im.rgb[0] + im.rgb[1] + im.rgb[2], 0);
  mimo_image_free(&im);
  mimo_image_free(&im); /* twice is harmless; so is NULL */
  mimo_image_free(NULL);

  n = make_png(p, 0, 5, 8, 0);
  expect_image_error(p, n, "Image width is zero in IHDR");
  n = make_png(p, 5, 0, 8, 0);
  expect_image_error(p, n, "Image height is zero in IHDR");
  n = make_png(p, 1, 1, 3, 0);
  expect_image_error(p, n, "IHDR");
  n = make_png(p, 1, 1, 8, 7);
  expect_image_error(p, n, "IHDR");
  /* 100000 x 100000 RGBA would take 40 GB: refused from the header, before anything is allocated */
  n = make_png(p, 100000, 100000, 8, 6);
  expect_image_error(p, n, "PNG of 100000 x 100000 pixels is over the limit of 67108864 pixels");
  n = make_png(p, 3000000, 30, 8, 0); /* over libpng's default 10^6 per side: still named as a size problem */
  expect_image_error(p, n, "PNG of 3000000 x 30 pixels is over the limit");
  n = make_png(p, 1, 1, 8, 0);
  p[20] ^= 0x40; /* IHDR data changed, CRC not */
  expect_image_error(p, n, "IHDR: CRC error");
  n = make_png(p, 3, 3, 8, 2); /* two bytes of data for 3 rows of 10 */
  expect_image_error(p, n, "PNG corrupt: Not enough image data");
  /* IHDR then IEND, no image data */
  n = make_png(p, 2, 2, 8, 0);
  memmove(p + 33, p + n - 12, 12);
  expect_image_error(p, 45, "PNG corrupt");
}

static const char *SEEDS[] = {"rgb.png",  "rgba.png",  "pal4_trns_adam7.png", "gray1.png",          "gray16_key.png",
                              "rgb16_key.png", "la16_adam7.png", "rgb.jpg", "progressive.jpg", "gray.jpg",
                              "cmyk.jpg", "lossless_rgba.webp", "lossy_rgba.webp", "lossy_rgb.webp", "anim.webp"};

/* Every prefix of every seed: an error naming the format, or (only for cuts inside what follows the image: IEND,
 * EOI) the same image. Then single bit flips: any outcome but a crash or leak (ASan watches). */
static void test_image_truncation(void **state) {
  (void)state;
  int n_truncated_msgs = 0;
  for (size_t s = 0; s < sizeof SEEDS / sizeof SEEDS[0]; s++) {
    size_t n;
    uint8_t *d = seed(SEEDS[s], &n);
    mimo_image full, im;
    if (mimo_image_decode(d, n, &full) != MIMO_OK)
      fail_msg("%s: %s", SEEDS[s], mimo_errmsg());
    size_t trailer = strstr(SEEDS[s], ".png") ? 12 : strstr(SEEDS[s], ".jpg") ? 2 : 0;
    for (size_t cut = 0; cut < n; cut++) {
      uint8_t *c = malloc(cut ? cut : 1); /* exact size, so ASan sees any over-read */
      memcpy(c, d, cut);
      mimo_status st = mimo_image_decode(c, cut, &im);
      if (st == MIMO_OK) {
        if (cut < n - trailer)
          fail_msg("%s cut at %zu of %zu decoded", SEEDS[s], cut, n);
        assert_int_equal(im.w, full.w);
        assert_int_equal(im.h, full.h);
        mimo_image_free(&im);
      } else {
        assert_int_equal(st, MIMO_E_INVALID);
        assert_null(im.rgb);
        assert_true(strncmp(mimo_errmsg(), "image: ", 7) == 0);
        n_truncated_msgs += has("truncated");
      }
      free(c);
    }
    srand(99);
    for (int k = 0; k < 300; k++) {
      uint8_t *c = malloc(n);
      memcpy(c, d, n);
      c[rand() % n] ^= (uint8_t)(1u << (rand() % 8));
      mimo_status st = mimo_image_decode(c, n, &im);
      assert_true(st == MIMO_OK || st == MIMO_E_INVALID);
      if (st == MIMO_OK)
        assert_true(im.w > 0 && im.h > 0 && im.rgb);
      mimo_image_free(&im);
      free(c);
    }
    mimo_image_free(&full);
    free(d);
  }
  print_message("truncation: %d prefixes said 'truncated'\n", n_truncated_msgs);
  assert_true(n_truncated_msgs > 1000);
}

static void test_image_bombs(void **state) {
  (void)state;
  size_t n;
  uint8_t *d = seed("rgb.jpg", &n);
  size_t sof = 2;
  while (sof + 9 < n && !(d[sof] == 0xff && d[sof + 1] == 0xc0))
    sof++;
  assert_true(sof + 9 < n);
  d[sof + 5] = 0xea, d[sof + 6] = 0x60, d[sof + 7] = 0xea, d[sof + 8] = 0x60; /* 60000 x 60000 */
  expect_image_error(d, n, "JPEG of 60000 x 60000 pixels is over the limit");
  free(d);
  d = seed("anim.webp", &n);
  assert_memory_equal(d + 12, "VP8X", 4);
  memset(d + 24, 0xff, 6); /* canvas 16777216 x 16777216 */
  expect_image_error(d, n, "WebP");
  d[24] = d[27] = 0xff, d[25] = d[28] = 0x3f, d[26] = d[29] = 0; /* 16384 x 16384: legal, 268 M pixels */
  expect_image_error(d, n, "WebP of 16384 x 16384 pixels is over the limit");
  free(d);
  mimo_image im;
  d = seed("rgb.png", &n);
  assert_int_equal(mimo_image_decode_limit(d, n, 47, &im), MIMO_E_INVALID);
  assert_true(has("PNG of 8 x 6 pixels is over the limit of 47 pixels"));
  assert_int_equal(mimo_image_decode_limit(d, n, 48, &im), MIMO_OK);
  mimo_image_free(&im);
  free(d);
}

/* ---- against the PIL / numpy reference ---- */

static char ref_dir[64];
static int ref_status = -1; /* the reference script's exit status */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb, (void)flag, (void)ftw;
  return remove(path);
}

static int ref_setup(void **state) {
  (void)state;
  const char *src = getenv("MIMO_SRC");
  snprintf(ref_dir, sizeof ref_dir, "/tmp/mimo_test_image_XXXXXX");
  if (!src || !mkdtemp(ref_dir))
    return 0; /* the tests report it */
  const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "%s '%s/tests/model/vision_preproc_ref.py' --make '%s'", py, src, ref_dir);
  ref_status = system(cmd);
  return 0;
}

static int ref_teardown(void **state) {
  (void)state;
  if (ref_dir[0] && strncmp(ref_dir, "/tmp/mimo_test_image_", 21) == 0)
    nftw(ref_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  return 0;
}

static FILE *open_manifest(void) {
  if (ref_status != 0)
    fail_msg("tests/model/vision_preproc_ref.py --make failed (status %d; MIMO_SRC %s): it needs python3-numpy and "
             "python3-pil, which scripts/deps.sh installs", ref_status, getenv("MIMO_SRC") ? "set" : "not set");
  char path[256];
  snprintf(path, sizeof path, "%s/manifest.txt", ref_dir);
  FILE *f = fopen(path, "r");
  if (!f)
    fail_msg("no %s", path);
  return f;
}

static uint8_t *ref_file(const char *name, const char *ext, size_t *n) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s%s", ref_dir, name, ext);
  uint8_t *p = slurp(path, n);
  if (!p)
    fail_msg("cannot read %s", path);
  return p;
}

static void test_decode_vs_pil(void **state) {
  (void)state;
  FILE *f = open_manifest();
  char line[1024], name[256];
  int w, h, count = 0;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "decode %255s %d %d", name, &w, &h) != 3)
      continue;
    size_t n, rn;
    uint8_t *d = ref_file(name, ".img", &n), *want = ref_file(name, ".rgb", &rn);
    mimo_image im;
    if (mimo_image_decode(d, n, &im) != MIMO_OK)
      fail_msg("%s: %s", name, mimo_errmsg());
    if (im.w != w || im.h != h || rn != (size_t)w * h * 3)
      fail_msg("%s: %d x %d, PIL %d x %d", name, im.w, im.h, w, h);
    for (size_t i = 0; i < rn; i++)
      if (im.rgb[i] != want[i])
        fail_msg("%s: pixel (x %zu, y %zu) channel %zu is %d, PIL %d", name, i / 3 % (size_t)w, i / 3 / (size_t)w,
                 i % 3, im.rgb[i], want[i]);
    mimo_image_free(&im);
    free(d);
    free(want);
    count++;
  }
  fclose(f);
  print_message("decode: %d images equal to PIL's, byte for byte\n", count);
  assert_true(count >= 40);
}

static void test_smart_resize_vs_python(void **state) {
  (void)state;
  FILE *f = open_manifest();
  char line[1024];
  int h, w, fac, oh, ow, count = 0, refused = 0;
  long mn, mx;
  while (fgets(line, sizeof line, f)) {
    if (sscanf(line, "resize %d %d %d %ld %ld %d %d", &h, &w, &fac, &mn, &mx, &oh, &ow) != 7)
      continue;
    int gh, gw;
    mimo_status st = mimo_vision_smart_resize(h, w, fac, mn, mx, &gh, &gw);
    if (oh == 0) {
      if (st != MIMO_E_INVALID)
        fail_msg("smart_resize(%d, %d, %d, %ld, %ld) gave %d x %d, Python refuses", h, w, fac, mn, mx, gh, gw);
      refused++;
    } else if (st != MIMO_OK || gh != oh || gw != ow) {
      fail_msg("smart_resize(%d, %d, %d, %ld, %ld) = %d x %d (%s), Python %d x %d", h, w, fac, mn, mx, gh, gw,
               st ? mimo_errmsg() : "ok", oh, ow);
    }
    count++;
  }
  fclose(f);
  print_message("smart_resize: %d cases equal to Python's (%d refused)\n", count, refused);
  assert_true(count > 3000 && refused > 10);
}

static void test_preproc_vs_numpy(void **state) {
  (void)state;
  FILE *f = open_manifest();
  char line[1024], name[64], img[256];
  int count = 0;
  double worst = 0;
  while (fgets(line, sizeof line, f)) {
    mimo_vision_config vc = {.in_chans = 3};
    int oh, ow;
    if (sscanf(line, "preproc %63s %255s %d %d %d %ld %ld %lf %lf %lf %lf %lf %lf %d %d", name, img, &vc.patch,
               &vc.merge, &vc.temporal_patch, &vc.min_pixels, &vc.max_pixels, &vc.mean[0], &vc.mean[1], &vc.mean[2],
               &vc.std[0], &vc.std[1], &vc.std[2], &oh, &ow) != 15)
      continue;
    size_t n;
    uint8_t *d = ref_file(img, "", &n);
    mimo_image im;
    if (mimo_image_decode(d, n, &im) != MIMO_OK)
      fail_msg("%s: %s", img, mimo_errmsg());
    float *p;
    int gh, gw;
    mimo_status st = mimo_vision_patchify(&vc, &im, &p, &gh, &gw);
    if (oh == 0) {
      if (st != MIMO_E_INVALID)
        fail_msg("%s (%d x %d): not refused", name, im.w, im.h);
      assert_null(p);
    } else {
      if (st != MIMO_OK)
        fail_msg("%s: %s", name, mimo_errmsg());
      assert_int_equal(gh, oh / vc.patch);
      assert_int_equal(gw, ow / vc.patch);
      size_t rn, cnt = (size_t)gh * gw * 3 * vc.temporal_patch * vc.patch * vc.patch;
      float *want = (float *)ref_file(name, ".f32", &rn);
      assert_int_equal(rn, cnt * sizeof(float));
      double md = 0;
      size_t at = 0;
      for (size_t i = 0; i < cnt; i++) {
        double e = fabs((double)p[i] - want[i]);
        if (!(e <= md)) /* NaN counts as worst */
          md = e, at = i;
      }
      if (!(md <= 1e-4))
        fail_msg("%s: patch value %zu is %g, numpy %g (diff %g)", name, at, p[at], want[at], md);
      worst = md > worst ? md : worst;
      free(want);
      free(p);
    }
    mimo_image_free(&im);
    free(d);
    count++;
  }
  fclose(f);
  print_message("preprocess: %d cases, max |C - numpy| = %g\n", count, worst);
  assert_true(count >= 20);
}

static void test_patchify_args(void **state) {
  (void)state;
  uint8_t px[8 * 8 * 3] = {0};
  mimo_image im = {.w = 8, .h = 8, .rgb = px};
  mimo_vision_config vc = {.patch = 4, .merge = 2, .temporal_patch = 2, .in_chans = 3, .min_pixels = 0,
                           .max_pixels = 1 << 20, .mean = {0, 0, 0}, .std = {1, 1, 1}};
  float *p;
  int gh, gw;
  assert_int_equal(mimo_vision_patchify(&vc, &im, &p, &gh, &gw), MIMO_OK);
  assert_int_equal(gh * gw, 4);
  free(p);
  vc.in_chans = 4;
  assert_int_equal(mimo_vision_patchify(&vc, &im, &p, &gh, &gw), MIMO_E_CONFIG);
  vc.in_chans = 3, vc.std[1] = 0;
  assert_int_equal(mimo_vision_patchify(&vc, &im, &p, &gh, &gw), MIMO_E_CONFIG);
  vc.std[1] = 1, vc.patch = 0;
  assert_int_equal(mimo_vision_patchify(&vc, &im, &p, &gh, &gw), MIMO_E_CONFIG);
  int oh, ow;
  assert_int_equal(mimo_vision_smart_resize(0, 5, 32, 0, 100, &oh, &ow), MIMO_E_INVALID);
  assert_int_equal(mimo_vision_smart_resize(64, 64, 32, 0, 0, &oh, &ow), MIMO_E_INVALID);
  /* spec §4.3's example: 1024 x 1024 -> 1024 x 1024 (grid 64 x 64) */
  assert_int_equal(mimo_vision_smart_resize(1024, 1024, 32, 8192, 8388608, &oh, &ow), MIMO_OK);
  assert_int_equal(oh, 1024);
  assert_int_equal(ow, 1024);
}

int main(void) {
  const struct CMUnitTest unit[] = {
      cmocka_unit_test(test_base64_rfc4648),  cmocka_unit_test(test_base64_errors),
      cmocka_unit_test(test_base64_round_trip), cmocka_unit_test(test_data_url),
      cmocka_unit_test(test_image_unknown),   cmocka_unit_test(test_image_png_headers),
      cmocka_unit_test(test_image_truncation), cmocka_unit_test(test_image_bombs),
      cmocka_unit_test(test_patchify_args),
  };
  const struct CMUnitTest ref[] = {
      cmocka_unit_test(test_decode_vs_pil),
      cmocka_unit_test(test_smart_resize_vs_python),
      cmocka_unit_test(test_preproc_vs_numpy),
  };
  int fails = cmocka_run_group_tests_name("image", unit, NULL, NULL);
  return fails + cmocka_run_group_tests_name("image_reference", ref, ref_setup, ref_teardown);
}
