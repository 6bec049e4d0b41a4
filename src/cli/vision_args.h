/* Image inputs of the commands that run the model (vision, logits): --image files through the vision tower. */
#ifndef MIMO_CLI_VISION_ARGS_H
#define MIMO_CLI_VISION_ARGS_H
#include <stdbool.h>

#include "io/config.h"
#include "model/vision.h"

#define MIMO_VISION_ARGS                                                                                            \
  {"vision-sink", 1, "key0 | denominator: where a window block's sink goes (spec §4.4; default key0)", 0},          \
      {"vision-merger-norm", 1, "layer | rms: the merger's norm (spec §4.4; default layer)", 0},                 \
      {"vision-backend", 1, "cpu | cuda: where the vision tower runs (default: the model's backend; docs/vision.md)", 0}
struct mimo_arg;
/* --vision-sink / --vision-merger-norm into vc, --vision-backend checked; false, with a message printed, on a bad
 * value. */
bool mimo_vision_args_parse(const struct mimo_arg *a, int n, mimo_vision_config *vc);
/* The encoder's backend for --vision-backend (default: the model's --backend, itself cuda where the build has it and
 * a GPU is present): NULL for cpu (mimo_vision_open makes one), a new CUDA backend on GPU `device` for cuda. */
mimo_status mimo_vision_args_backend(const struct mimo_arg *a, int n, int device, mimo_backend **be);
/* The first GPU of a --devices list ("2,3" -> 2), 0 without one. */
int mimo_first_device(const char *devices);
/* The encoder for a loaded model with those options (sink, norm and backend); device: its first GPU. */
mimo_status mimo_vision_args_open(const struct mimo_arg *a, int n, mimo_config *cfg, const mimo_vision_weights *w,
                                  int device, int threads, mimo_vision **out);

/* Images of a comma-separated list of files, encoded: rows[i] (malloc'd) [tokens[i]][out_hidden]. */
typedef struct mimo_cli_images {
  int n;
  float **rows;
  int *tokens;
} mimo_cli_images;
mimo_status mimo_cli_images_encode(mimo_vision *v, const char *files, mimo_cli_images *out);
void mimo_cli_images_free(mimo_cli_images *im);
#endif
