/* Regex patterns of any bytes (text/regex_dfa.c). Property: never crashes, leaks or loops; a refusal has a message;
 * an accepted pattern's DFA has every edge in range, and a walk from the start along live edges never meets a state
 * that neither accepts nor leads on (the dead-end cut). */
#include <stdint.h>
#include <stdlib.h>

#include "core/status.h"
#include "text/regex_dfa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 512)
    return 0;
  mimo_re *re = NULL;
  if (mimo_re_compile((const char *)data, size, 2000, &re) != MIMO_OK) {
    if (re || !mimo_errmsg()[0])
      abort();
    return 0;
  }
  const int n = mimo_re_states(re);
  if (mimo_re_start(re) < 0 || mimo_re_start(re) >= n)
    abort();
  for (int s = 0; s < n; s++) /* every edge in range */
    for (int b = 0; b < 256; b++) {
      const int t = mimo_re_next(re, s, (unsigned char)b);
      if (t < -1 || t >= n)
        abort();
    }
  /* from the start, following the lowest live byte: a match within n steps */
  int s = mimo_re_start(re);
  for (int k = 0; k <= n && !mimo_re_accepts(re, s); k++) {
    int t = -1;
    for (int b = 0; b < 256 && t < 0; b++)
      t = mimo_re_next(re, s, (unsigned char)b);
    if (t < 0)
      abort(); /* a live state without a way on */
    s = t;
  }
  mimo_re_free(re);
  return 0;
}
