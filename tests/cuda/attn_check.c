/* Placeholder until the checks land (this session): reports failure so nothing passes unchecked. */
#include "cuda_common.h"

int cuda_attn_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  fprintf(stderr, "FAIL attn_check: not written yet\n");
  return 1;
}
