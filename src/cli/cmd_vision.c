/* mimo vision: images through the vision tower alone (spec §4): what each becomes (size, grid, placeholder
 * tokens) and, optionally, its patch rows and embeddings as float32 files for references to compare. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "cli/vision_args.h"
#include "core/fileio.h"
#include "core/log.h"
#include "io/checkpoint.h"
#include "io/image.h"
#include "model/vision.h"
#include "model/vision_preproc.h"

static mimo_status append_floats(FILE *f, const char *path, const float *p, size_t n) {
  return fwrite(p, sizeof *p, n, f) == n ? MIMO_OK : mimo_errf(MIMO_E_IO, "%s: write failed", path);
}

/* --patches FILE --grid HxW: patch rows made elsewhere (a reference's preprocessing) straight into the tower. */
static mimo_status run_patches(const mimo_vision_config *vc, const mimo_vision_weights *w, mimo_vision *v,
                               const char *path, const char *grid, FILE *fo, const char *out) {
  mimo_vision_item it = {0};
  if (sscanf(grid, "%dx%d", &it.grid_h, &it.grid_w) != 2 || it.grid_h <= 0 || it.grid_w <= 0 ||
      it.grid_h > 1 << 14 || it.grid_w > 1 << 14)
    return mimo_errf(MIMO_E_INVALID, "--grid '%s' is not HxW", grid);
  char *data = NULL;
  size_t len = 0;
  const size_t want = (size_t)it.grid_h * it.grid_w * w->patch_embed.in * sizeof(float);
  MIMO_TRY(mimo_read_file(path, &data, &len, want + 1));
  if (len != want) {
    free(data);
    return mimo_errf(MIMO_E_INVALID, "%s: %zu bytes; a %s grid of %d-float rows needs %zu", path, len, grid,
                     w->patch_embed.in, want);
  }
  it.patches = (const float *)data;
  const int tokens = mimo_vision_tokens(vc, it.grid_h, it.grid_w);
  float *emb = malloc((size_t)tokens * vc->out_hidden * sizeof *emb);
  mimo_status st = emb ? mimo_vision_encode(v, &it, 1, emb) : mimo_errf(MIMO_E_NOMEM, "embeddings");
  if (st == MIMO_OK && fo)
    st = append_floats(fo, out, emb, (size_t)tokens * vc->out_hidden);
  if (st == MIMO_OK)
    printf("{\"grid_h\": %d, \"grid_w\": %d, \"patches\": %d, \"tokens\": %d}\n", it.grid_h, it.grid_w,
           it.grid_h * it.grid_w, tokens);
  free(emb);
  free(data);
  return st;
}

static mimo_status run(const char *dir, const char *files, const char *out, const char *patches_out, int threads,
                       const mimo_arg *a, int n) {
  mimo_config cfg;
  mimo_ckpt ck = {0};
  mimo_vision_weights w = {0};
  FILE *fo = NULL, *fp = NULL;
  char *list = NULL;
  mimo_status st = mimo_config_load(dir, &cfg);
  if (st == MIMO_OK && !cfg.vision.present)
    st = mimo_errf(MIMO_E_INVALID, "%s: the model has no vision tower (config.json has no vision_config)", dir);
  if (st == MIMO_OK)
    st = mimo_ckpt_open(dir, &ck);
  if (st == MIMO_OK)
    st = mimo_vision_bind(&cfg, &ck, &w);
  mimo_vision *v = NULL;
  if (st == MIMO_OK)
    st = mimo_vision_args_open(a, n, &cfg, &w, mimo_first_device(mimo_arg_str(a, n, "devices", NULL)), threads, &v);
  if (st == MIMO_OK && out && !(fo = fopen(out, "wb")))
    st = mimo_errf(MIMO_E_IO, "%s: cannot create", out);
  if (st == MIMO_OK && patches_out && !(fp = fopen(patches_out, "wb")))
    st = mimo_errf(MIMO_E_IO, "%s: cannot create", patches_out);
  const char *patches_in = mimo_arg_str(a, n, "patches", NULL);
  if (st == MIMO_OK && patches_in)
    st = run_patches(&cfg.vision, &w, v, patches_in, mimo_arg_str(a, n, "grid", ""), fo, out);
  if (st == MIMO_OK && files && !(list = strdup(files)))
    st = mimo_errf(MIMO_E_NOMEM, "file list");
  const mimo_vision_config *vc = &cfg.vision;
  char *save = NULL;
  for (char *f = list ? strtok_r(list, ",", &save) : NULL; st == MIMO_OK && f; f = strtok_r(NULL, ",", &save)) {
    char *data = NULL;
    size_t len = 0;
    mimo_image im = {0};
    float *patches = NULL, *emb = NULL;
    mimo_vision_item it = {0};
    const double t0 = mimo_now();
    st = mimo_read_file(f, &data, &len, (size_t)256 << 20);
    if (st == MIMO_OK)
      st = mimo_image_decode(data, len, &im);
    if (st == MIMO_OK)
      st = mimo_vision_patchify(vc, &im, &patches, &it.grid_h, &it.grid_w);
    it.patches = patches;
    const int tokens = st == MIMO_OK ? mimo_vision_tokens(vc, it.grid_h, it.grid_w) : 0;
    if (st == MIMO_OK && !(emb = malloc((size_t)tokens * vc->out_hidden * sizeof *emb)))
      st = mimo_errf(MIMO_E_NOMEM, "embeddings");
    if (st == MIMO_OK)
      st = mimo_vision_encode(v, &it, 1, emb);
    if (st == MIMO_OK && fp)
      st = append_floats(fp, patches_out, patches, (size_t)it.grid_h * it.grid_w * w.patch_embed.in);
    if (st == MIMO_OK && fo)
      st = append_floats(fo, out, emb, (size_t)tokens * vc->out_hidden);
    if (st == MIMO_OK)
      printf("{\"image\": \"%s\", \"height\": %d, \"width\": %d, \"resized_height\": %d, \"resized_width\": %d, "
             "\"grid_h\": %d, \"grid_w\": %d, \"patches\": %d, \"tokens\": %d, \"seconds\": %.3f, \"backend\": \"%s\"}\n",
             f, im.h, im.w, it.grid_h * vc->patch, it.grid_w * vc->patch, it.grid_h, it.grid_w, it.grid_h * it.grid_w,
             tokens, mimo_now() - t0, mimo_vision_backend_name(v));
    else
      st = mimo_err_prefix(st, "%s", f);
    free(data);
    free(patches);
    free(emb);
    mimo_image_free(&im);
  }
  free(list);
  if (fo && fclose(fo) != 0 && st == MIMO_OK)
    st = mimo_errf(MIMO_E_IO, "%s: write failed", out);
  if (fp && fclose(fp) != 0 && st == MIMO_OK)
    st = mimo_errf(MIMO_E_IO, "%s: write failed", patches_out);
  mimo_vision_close(v);
  mimo_vision_weights_free(&w);
  mimo_ckpt_close(&ck);
  return st;
}

int mimo_cmd_vision(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "checkpoint directory", 0},
                  {"image", 1, "image file(s), comma-separated (PNG, JPEG, WebP)", 0},
                  {"out", 1, "write the embeddings: float32 LE [tokens][hidden_size], the images one after another", 0},
                  {"patches-out", 1, "write the patch rows: float32 LE [patches][3 * temporal * patch²]", 0},
                  {"patches", 1, "instead of images: patch rows, float32 LE [H*W][3 * temporal * patch²] (with --grid)", 0},
                  {"grid", 1, "the --patches grid, HxW patches", 0},
                  {"threads", 1, "CPU threads (default: all cores)", 0},
                  {"devices", 1, "GPU for --vision-backend cuda (default 0)", 0},
                  MIMO_VISION_ARGS};
  int n = sizeof a / sizeof *a, rc = mimo_args_parse(argc, argv, a, n, "--model DIR --image FILE[,FILE...] [--out FILE]");
  if (rc)
    return rc == 3 ? 0 : rc;
  bool bad = false;
  const char *dir = mimo_arg_str(a, n, "model", NULL), *files = mimo_arg_str(a, n, "image", NULL);
  const long threads = mimo_arg_long(a, n, "threads", 0, &bad);
  if (!dir || !(files || mimo_arg_str(a, n, "patches", NULL)) || bad || threads < 0) {
    fprintf(stderr, "mimo vision: need --model and --image or --patches (see --help)\n");
    return 2;
  }
  const mimo_status st = run(dir, files, mimo_arg_str(a, n, "out", NULL), mimo_arg_str(a, n, "patches-out", NULL),
                             (int)threads, a, n);
  if (st != MIMO_OK) {
    fprintf(stderr, "mimo vision: %s\n", mimo_errmsg());
    return 1;
  }
  return 0;
}
