/* The whole input is a safetensors file image. Whatever mimo_st_parse accepts
 * must describe bytes inside the image: every tensor's bytes are read (ASan
 * catches any extent outside the buffer), and lookups by name must find it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* a private copy sized exactly, so reads past the end are caught */
  uint8_t *buf = malloc(size ? size : 1);
  if (!buf)
    return 0;
  memcpy(buf, data, size);
  mimo_st_file f;
  if (mimo_st_parse(buf, size, "fuzz.safetensors", &f) == MIMO_OK) {
    volatile uint8_t sink = 0;
    uint64_t covered = 0;
    for (size_t i = 0; i < f.n_tensors; i++) {
      const mimo_st_tensor *t = &f.tensors[i];
      const uint8_t *p = t->data;
      for (uint64_t j = 0; j < t->end - t->begin; j++)
        sink ^= p[j];
      covered += t->end - t->begin;
      if ((uint64_t)mimo_st_numel(t) * mimo_dtype_size(t->dtype) != t->end - t->begin)
        abort();
      if (mimo_st_find(&f, t->name) == NULL)
        abort();
    }
    if (covered > size)
      abort();
    (void)sink;
    mimo_st_close(&f);
  } else if (f.tensors != NULL || f.n_tensors != 0 || mimo_errmsg()[0] == 0) {
    abort(); /* failures leave nothing allocated and say why */
  }
  free(buf);
  return 0;
}
