/* safetensors: writer -> reader round trip, and every malformed header the reader
 * must refuse (MIMO_E_FORMAT, message naming the file and the tensor). File
 * images are built by hand here, independent of the writer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/safetensors.h"

static char tmpdir[256];

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/mimo_test_st_XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void fill_bytes(uint8_t *p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    p[i] = (uint8_t)(seed >> 24);
  }
}

static mimo_status fill_cb(void *ctx, void *dst, size_t bytes) {
  fill_bytes(dst, bytes, *(uint32_t *)ctx);
  return MIMO_OK;
}

static void test_round_trip(void **state) {
  (void)state;
  struct {
    const char *name;
    mimo_dtype dt;
    int ndim;
    int64_t shape[4];
  } spec[] = {
      {"model.embed.weight", MIMO_DT_BF16, 2, {7, 5}},
      {"scalar", MIMO_DT_F32, 0, {0}},
      {"f64.cube", MIMO_DT_F64, 3, {2, 3, 4}},
      {"empty", MIMO_DT_F16, 2, {0, 9}},
      {"packed", MIMO_DT_I32, 2, {3, 2}},
      {"shape", MIMO_DT_I64, 1, {2}},
      {"bytes", MIMO_DT_U8, 1, {13}}, /* odd size: the next tensor is unaligned */
      {"flag", MIMO_DT_BOOL, 1, {3}},
      {"f8", MIMO_DT_F8_E4M3, 4, {1, 2, 1, 3}},
  };
  enum { N = sizeof spec / sizeof spec[0] };
  uint8_t *data[N];
  size_t bytes[N];
  mimo_st_writer *w;
  assert_int_equal(mimo_st_writer_init(&w), MIMO_OK);
  size_t total = 0;
  for (int i = 0; i < N; i++) {
    size_t n = mimo_dtype_size(spec[i].dt);
    for (int d = 0; d < spec[i].ndim; d++)
      n *= (size_t)spec[i].shape[d];
    bytes[i] = n;
    total += n;
    data[i] = malloc(n ? n : 1);
    fill_bytes(data[i], n, (uint32_t)i + 1);
    assert_int_equal(mimo_st_writer_add(w, spec[i].name, spec[i].dt, spec[i].ndim, spec[i].shape, data[i]), MIMO_OK);
  }
  /* one streamed tensor as well */
  uint32_t seed = 99;
  int64_t fshape[2] = {4, 6};
  assert_int_equal(mimo_st_writer_add_fill(w, "filled", MIMO_DT_U16, 2, fshape, fill_cb, &seed), MIMO_OK);
  assert_int_equal(mimo_st_writer_bytes(w), total + 48);
  char path[300];
  snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
  assert_int_equal(mimo_st_writer_save(w, path), MIMO_OK);
  mimo_st_writer_free(w);

  mimo_st_file f;
  assert_int_equal(mimo_st_open(path, &f), MIMO_OK);
  assert_int_equal(f.n_tensors, N + 1);
  for (int i = 0; i < N; i++) {
    const mimo_st_tensor *t = mimo_st_find(&f, spec[i].name);
    assert_non_null(t);
    assert_int_equal(t->dtype, spec[i].dt);
    assert_int_equal(t->ndim, spec[i].ndim);
    for (int d = 0; d < t->ndim; d++)
      assert_int_equal(t->shape[d], spec[i].shape[d]);
    assert_int_equal(t->end - t->begin, bytes[i]);
    assert_int_equal((size_t)mimo_st_numel(t) * mimo_dtype_size(t->dtype), bytes[i]);
    if (bytes[i])
      assert_memory_equal(t->data, data[i], bytes[i]);
    free(data[i]);
  }
  const mimo_st_tensor *t = mimo_st_find(&f, "filled");
  assert_non_null(t);
  uint8_t want[48];
  fill_bytes(want, 48, 99);
  assert_memory_equal(t->data, want, 48);
  assert_null(mimo_st_find(&f, "missing"));
  assert_null(mimo_st_find(&f, "__metadata__"));
  /* tensors come sorted by offset and tile the data area */
  for (size_t i = 1; i < f.n_tensors; i++)
    assert_int_equal(f.tensors[i].begin, f.tensors[i - 1].end);
  /* the data area starts 8-byte aligned, as the writer pads the header */
  assert_int_equal(((const uint8_t *)f.tensors[0].data - (const uint8_t *)f.map) % 8, 0);
  mimo_st_close(&f);
  mimo_st_close(NULL);

  /* a file with no tensors at all */
  assert_int_equal(mimo_st_writer_init(&w), MIMO_OK);
  snprintf(path, sizeof path, "%s/empty.safetensors", tmpdir);
  assert_int_equal(mimo_st_writer_save(w, path), MIMO_OK);
  mimo_st_writer_free(w);
  assert_int_equal(mimo_st_open(path, &f), MIMO_OK);
  assert_int_equal(f.n_tensors, 0);
  mimo_st_close(&f);
}

static void test_dtypes(void **state) {
  (void)state;
  for (int i = 0; i < MIMO_DT_COUNT; i++) {
    mimo_dtype d;
    assert_true(mimo_dtype_parse(mimo_dtype_name((mimo_dtype)i), &d));
    assert_int_equal(d, i);
    assert_true(mimo_dtype_size(d) >= 1 && mimo_dtype_size(d) <= 8);
  }
  mimo_dtype d;
  assert_false(mimo_dtype_parse("bf16", &d)); /* spelling is case-sensitive */
  assert_false(mimo_dtype_parse("", &d));
}

/* File image: u64 LE header length, the header, then `data` zero bytes. */
static uint8_t *image(const char *hdr, size_t data, size_t *size) {
  size_t n = strlen(hdr);
  *size = 8 + n + data;
  uint8_t *b = calloc(1, *size);
  for (int i = 0; i < 8; i++)
    b[i] = (uint8_t)((uint64_t)n >> (8 * i));
  memcpy(b + 8, hdr, n);
  return b;
}

#define FILE_NAME "shard-00007.safetensors"

/* Parses the image; expects MIMO_E_FORMAT and a message naming the file and
 * containing each of the given substrings. */
static void reject(const uint8_t *buf, size_t size, const char *s1, const char *s2) {
  mimo_st_file f;
  mimo_status st = mimo_st_parse(buf, size, FILE_NAME, &f);
  if (st != MIMO_E_FORMAT || !strstr(mimo_errmsg(), FILE_NAME) || (s1 && !strstr(mimo_errmsg(), s1)) ||
      (s2 && !strstr(mimo_errmsg(), s2)))
    fail_msg("status %d, message \"%s\"; wanted \"%s\" and \"%s\"", st, mimo_errmsg(), s1 ? s1 : "",
             s2 ? s2 : "");
  assert_int_equal(f.n_tensors, 0);
  assert_null(f.tensors);
}

static void reject_hdr(const char *hdr, size_t data, const char *s1, const char *s2) {
  size_t size;
  uint8_t *b = image(hdr, data, &size);
  reject(b, size, s1, s2);
  free(b);
}

static void test_accept_minimal(void **state) {
  (void)state;
  size_t size;
  uint8_t *b = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                     "\"__metadata__\":{\"format\":\"pt\"}}",
                     8, &size);
  b[size - 8] = 0x11;
  mimo_st_file f;
  assert_int_equal(mimo_st_parse(b, size, FILE_NAME, &f), MIMO_OK);
  assert_int_equal(f.n_tensors, 1);
  assert_ptr_equal(f.tensors[0].data, b + size - 8);
  mimo_st_close(&f); /* does not own the buffer */
  free(b);
}

static void test_reject_framing(void **state) {
  (void)state;
  uint8_t small[7] = {0};
  reject(small, 7, "too short", NULL);
  reject(small, 0, "too short", NULL);
  /* header length past the end of the file */
  size_t size;
  uint8_t *b = image("{}", 4, &size);
  b[0] = 200;
  reject(b, size, "header length 200", "past the end");
  /* absurd length (top byte set): must not overflow 8 + n */
  b[7] = 0xff;
  reject(b, size, "header length", NULL);
  free(b);
  reject_hdr("{\"a\":", 0, "not valid JSON", NULL);
  reject_hdr("", 0, "not valid JSON", NULL);
  reject_hdr("{\"a\":1,\"a\":2}", 0, "not valid JSON", NULL); /* duplicate key */
  reject_hdr("[1,2]", 0, "not a JSON object", NULL);
  reject_hdr("\"str\"", 0, NULL, NULL);
  reject_hdr("{\"__metadata__\":[]}", 0, "__metadata__", NULL);
}

static void test_reject_entry(void **state) {
  (void)state;
  reject_hdr("{\"w.0\":7}", 4, "'w.0'", "not an object");
  reject_hdr("{\"w.0\":{\"dtype\":\"F12\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w.0'", "unknown dtype 'F12'");
  reject_hdr("{\"w.0\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w.0'", "dtype");
  reject_hdr("{\"w.0\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'w.0'", "dtype");
  /* shape */
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "'w.0'", "shape[0]");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1,1.5],\"data_offsets\":[0,4]}}", 4, "'w.0'", "shape[1]");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "'w.0'", "shape[0]");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,4]}}", 4, "'w.0'", "shape");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "'w.0'", "shape");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "'w.0'",
             "at most 8 dims");
  reject_hdr("{\"w.0\":{\"dtype\":\"F64\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8, "'w.0'",
             "overflows");
  /* data_offsets */
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "'w.0'", "data_offsets");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "'w.0'", "data_offsets");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4, "'w.0'", "data_offsets");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4, "'w.0'", "data_offsets");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4, "'w.0'", "data_offsets");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "'w.0'", "not an interval");
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,0]}}", 4, "'w.0'", "not an interval");
  /* extent must equal shape x dtype size */
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "'w.0'",
             "extent is 4 bytes but shape x F32 needs 8");
  reject_hdr("{\"w.0\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,16]}}", 16, "'w.0'", "needs 12");
  /* extent past the end of the file (truncated) */
  reject_hdr("{\"w.0\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12, "'w.0'", "truncated");
  reject_hdr("{\"w.0\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[9223372036854775806,9223372036854775807]}}",
             1, "'w.0'", "truncated");
}

static void test_reject_layout(void **state) {
  (void)state;
  /* overlapping extents */
  reject_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
             12, "'b'", "overlaps 'a'");
  /* the same extent twice */
  reject_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"b\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
             8, "overlaps", NULL);
  /* an empty tensor inside another one's bytes */
  reject_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
             "\"e\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
             8, "'e'", "overlaps");
  /* hole between extents */
  reject_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
             "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
             12, "4 unused bytes before tensor 'b'", NULL);
  /* hole before the first */
  reject_hdr("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "unused bytes before tensor 'b'",
             NULL);
  /* trailing bytes after the last tensor */
  reject_hdr("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
             "data area is 8 bytes but the tensors cover 4", NULL);
  reject_hdr("{}", 3, "data area is 3 bytes", NULL);
  /* empty tensors at the boundary are fine */
  size_t size;
  uint8_t *b = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                     "\"e\":{\"dtype\":\"F32\",\"shape\":[3,0],\"data_offsets\":[4,4]}}",
                     4, &size);
  mimo_st_file f;
  assert_int_equal(mimo_st_parse(b, size, FILE_NAME, &f), MIMO_OK);
  assert_int_equal(mimo_st_numel(mimo_st_find(&f, "e")), 0);
  mimo_st_close(&f);
  free(b);
}

static void test_open_errors(void **state) {
  (void)state;
  mimo_st_file f;
  char path[300];
  snprintf(path, sizeof path, "%s/nonexistent.safetensors", tmpdir);
  assert_int_equal(mimo_st_open(path, &f), MIMO_E_IO);
  assert_non_null(strstr(mimo_errmsg(), "nonexistent.safetensors"));
  assert_int_equal(mimo_st_open(tmpdir, &f), MIMO_E_IO); /* a directory */
  /* empty file, and a truncated copy of a valid one */
  snprintf(path, sizeof path, "%s/zero.safetensors", tmpdir);
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  fclose(fp);
  assert_int_equal(mimo_st_open(path, &f), MIMO_E_FORMAT);
  assert_non_null(strstr(mimo_errmsg(), "zero.safetensors"));
  size_t size;
  uint8_t *b = image("{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 16, &size);
  snprintf(path, sizeof path, "%s/trunc.safetensors", tmpdir);
  fp = fopen(path, "wb");
  assert_int_equal(fwrite(b, 1, size - 5, fp), size - 5);
  fclose(fp);
  free(b);
  assert_int_equal(mimo_st_open(path, &f), MIMO_E_FORMAT);
  assert_non_null(strstr(mimo_errmsg(), "trunc.safetensors"));
  assert_non_null(strstr(mimo_errmsg(), "'w'"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_dtypes),
      cmocka_unit_test(test_accept_minimal), cmocka_unit_test(test_reject_framing),
      cmocka_unit_test(test_reject_entry),   cmocka_unit_test(test_reject_layout),
      cmocka_unit_test(test_open_errors),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
