#include "cli/vision_args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/model_open.h"
#include "core/fileio.h"
#include "io/image.h"
#ifdef MIMO_HAVE_CUDA
#include "backend/cuda/cuda_backend.h"
#endif

/* --vision-backend, by default the model's backend: the tower on the GPU where the model is (checked against the CPU
 * tower on an H200: relative error 1e-5, a 448² image in 0.07 s against 27 s on 16 CPU cores; docs/vision.md) */
static const char *vision_backend(const mimo_arg *a, int n) {
  return mimo_arg_str(a, n, "vision-backend", mimo_open_backend_name(mimo_arg_str(a, n, "backend", NULL)));
}

bool mimo_vision_args_parse(const mimo_arg *a, int n, mimo_vision_config *vc) {
  const char *sink = mimo_arg_str(a, n, "vision-sink", "key0"), *norm = mimo_arg_str(a, n, "vision-merger-norm", "layer");
  if (strcmp(sink, "key0") && strcmp(sink, "denominator")) {
    fprintf(stderr, "--vision-sink: '%s' is not key0 or denominator\n", sink);
    return false;
  }
  if (strcmp(norm, "layer") && strcmp(norm, "rms")) {
    fprintf(stderr, "--vision-merger-norm: '%s' is not layer or rms\n", norm);
    return false;
  }
  const char *vb = vision_backend(a, n);
  if (strcmp(vb, "cpu") && strcmp(vb, "cuda")) {
    fprintf(stderr, "--vision-backend: '%s' is not cpu or cuda\n", vb);
    return false;
  }
  vc->sink_mode = strcmp(sink, "key0") == 0 ? MIMO_VIT_SINK_KEY0 : MIMO_VIT_SINK_DENOM;
  vc->merger_norm = strcmp(norm, "layer") == 0 ? MIMO_VIT_NORM_LAYER : MIMO_VIT_NORM_RMS;
  return true;
}

int mimo_first_device(const char *devices) {
  const long d = devices ? strtol(devices, NULL, 10) : 0;
  return d >= 0 && d < 1024 ? (int)d : 0;
}

mimo_status mimo_vision_args_backend(const mimo_arg *a, int n, int device, mimo_backend **be) {
  *be = NULL;
  if (strcmp(vision_backend(a, n), "cuda") != 0) /* (checked by mimo_vision_args_parse) */
    return MIMO_OK;
#ifdef MIMO_HAVE_CUDA
  return mimo_backend_cuda_init(be, device);
#else
  (void)device;
  return mimo_errf(MIMO_E_INVALID, "--vision-backend cuda: this build has no CUDA backend (cmake -DMIMO_CUDA=ON)");
#endif
}

mimo_status mimo_vision_args_open(const mimo_arg *a, int n, mimo_config *cfg, const mimo_vision_weights *w,
                                  int device, int threads, mimo_vision **out) {
  *out = NULL;
  if (!mimo_vision_args_parse(a, n, &cfg->vision))
    return mimo_errf(MIMO_E_INVALID, "bad vision option");
  mimo_backend *be = NULL;
  MIMO_TRY(mimo_vision_args_backend(a, n, device, &be));
  return mimo_vision_open(cfg, w, be, threads, out);
}

void mimo_cli_images_free(mimo_cli_images *im) {
  for (int i = 0; i < im->n; i++)
    free(im->rows[i]);
  free(im->rows);
  free(im->tokens);
  memset(im, 0, sizeof *im);
}

/* One file: read, decode, encode. */
static mimo_status encode_file(mimo_vision *v, const char *path, float **rows, int *tokens) {
  char *data = NULL;
  size_t len = 0;
  MIMO_TRY(mimo_read_file(path, &data, &len, (size_t)256 << 20));
  mimo_image im = {0};
  mimo_status st = mimo_image_decode(data, len, &im);
  free(data);
  if (st == MIMO_OK)
    st = mimo_vision_encode_image(v, &im, rows, tokens);
  mimo_image_free(&im);
  return st == MIMO_OK ? MIMO_OK : mimo_err_prefix(st, "%s", path);
}

mimo_status mimo_cli_images_encode(mimo_vision *v, const char *files, mimo_cli_images *out) {
  memset(out, 0, sizeof *out);
  int cap = 1;
  for (const char *p = files; *p; p++)
    cap += *p == ',';
  out->rows = calloc((size_t)cap, sizeof *out->rows);
  out->tokens = calloc((size_t)cap, sizeof *out->tokens);
  char *list = strdup(files);
  mimo_status st = out->rows && out->tokens && list ? MIMO_OK : mimo_errf(MIMO_E_NOMEM, "images");
  char *save = NULL;
  for (char *f = list ? strtok_r(list, ",", &save) : NULL; st == MIMO_OK && f; f = strtok_r(NULL, ",", &save)) {
    st = encode_file(v, f, &out->rows[out->n], &out->tokens[out->n]);
    if (st == MIMO_OK)
      out->n++;
  }
  free(list);
  if (st != MIMO_OK)
    mimo_cli_images_free(out);
  return st;
}
