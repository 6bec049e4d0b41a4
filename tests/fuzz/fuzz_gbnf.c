/* GBNF grammars of any bytes (text/gbnf.c). Property: never crashes, leaks or loops; a refusal has a message and
 * returns no regex; an accepted grammar's regex is refused by the regex compiler only for its size (so the converter
 * writes nothing the regex syntax reads differently) or for matching nothing, and otherwise becomes a DFA with every
 * edge in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "text/gbnf.h"
#include "text/regex_dfa.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 2048)
    return 0;
  char *rx = NULL;
  if (mimo_gbnf_to_regex((const char *)data, size, &rx) != MIMO_OK) {
    if (rx || !mimo_errmsg()[0])
      abort();
    return 0;
  }
  if (!rx)
    abort();
  mimo_re *re = NULL;
  long budget = 2000000;
  if (mimo_re_compile_budget(rx, strlen(rx), 2000, &budget, &re) != MIMO_OK) {
    const char *m = mimo_errmsg();
    if (!strstr(m, "too large") && !strstr(m, "DFA states") && !strstr(m, "too complex") && !strstr(m, "regex DFA") &&
        !strstr(m, "matches no string"))
      abort(); /* a syntax error in what the converter wrote */
    free(rx);
    return 0;
  }
  const int n = mimo_re_states(re);
  for (int s = 0; s < n; s++)
    for (int b = 0; b < 256; b++) {
      const int t = mimo_re_next(re, s, (unsigned char)b);
      if (t < -1 || t >= n)
        abort();
    }
  mimo_re_free(re);
  free(rx);
  return 0;
}
