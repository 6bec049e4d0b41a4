/* Image inputs of the commands that run the model (vision, logits): --image files through the vision tower. */
#ifndef MIMO_CLI_VISION_ARGS_H
#define MIMO_CLI_VISION_ARGS_H
#include <stdbool.h>

#include "io/config.h"
#include "model/vision.h"

#define MIMO_VISION_ARGS                                                                                            \
  {"vision-sink", 1, "key0 | denominator: where a window block's sink goes (spec §4.4; default key0)", 0},          \
      {"vision-merger-norm", 1, "layer | rms: the merger's norm (spec §4.4; default layer)", 0}
struct mimo_arg;
/* --vision-sink / --vision-merger-norm into vc; false, with a message printed, on a bad value. */
bool mimo_vision_args_parse(const struct mimo_arg *a, int n, mimo_vision_config *vc);

/* Images of a comma-separated list of files, encoded: rows[i] (malloc'd) [tokens[i]][out_hidden]. */
typedef struct mimo_cli_images {
  int n;
  float **rows;
  int *tokens;
  int *grid_h, *grid_w;
} mimo_cli_images;
mimo_status mimo_cli_images_encode(mimo_vision *v, const char *files, mimo_cli_images *out);
void mimo_cli_images_free(mimo_cli_images *im);
#endif
