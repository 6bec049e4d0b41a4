/* MiMo-V2.5's vision tower (spec §4): patch embedding, 28 (config: depth) pre-norm blocks with 2-D RoPE, full and
 * windowed bidirectional attention with sinks, SwiGLU, then the 2x2 merger into text embeddings. Written over
 * backend ops like the text model. */
#ifndef MIMO_MODEL_VISION_H
#define MIMO_MODEL_VISION_H
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "io/checkpoint.h"
#include "io/config.h"
#include "io/image.h"

/* Rows of input embeddings given directly instead of looked up by token (an image's placeholders take the vision
 * tower's output): tokens [at, at + n) get rows[0..n) ([n][hidden], host memory; with on_backend, memory of the
 * model's backend, as the MTP layer's input is: no round trip through the host, one rank only). */
typedef struct mimo_embed_run {
  int at, n;
  const float *rows;
  bool on_backend;
} mimo_embed_run;

/* The part of runs[0..n) (at = positions of a token sequence) that falls in positions [from, from + count), moved
 * to start at position `at` (a step's batch offset), appended to out (room for n more); returns how many. */
int mimo_embed_runs_slice(const mimo_embed_run *runs, int n, int from, int count, int at, int hidden,
                          mimo_embed_run *out);

typedef struct mimo_vit_block {
  mimo_vec norm1, norm2;
  mimo_linear qkv;            /* [Q | K | V] rows, not chunked */
  mimo_vec qkv_bias;
  mimo_linear proj;
  mimo_vec proj_bias;
  mimo_vec sinks;             /* [n_heads] on window blocks with use_sink, else n = 0 */
  mimo_linear gate, up, down;
  mimo_vec gate_bias, up_bias, down_bias;
} mimo_vit_block;

typedef struct mimo_vision_weights {
  bool present;
  mimo_linear patch_embed;    /* Conv3d [hidden, C, tp, p, p] viewed as [hidden, C*tp*p*p] */
  mimo_vit_block *blocks;     /* [depth] */
  mimo_vec merger_norm;       /* ln_q [hidden] */
  mimo_linear merger_fc1;     /* [4*hidden, 4*hidden] (merge² tokens concatenated) */
  mimo_linear merger_fc2;     /* [out_hidden, 4*hidden] */
  uint64_t bytes;
} mimo_vision_weights;

/* Binds visual.* when cfg->vision.present (else leaves w empty); refuses missing or misshapen tensors, naming
 * them, and sinks on blocks the config gives none. */
mimo_status mimo_vision_bind(const mimo_config *cfg, const mimo_ckpt *ck, mimo_vision_weights *w);
void mimo_vision_weights_free(mimo_vision_weights *w);

/* One image's place in an encode call. */
typedef struct mimo_vision_item {
  const float *patches;       /* [grid_h * grid_w][patch row] (vision_preproc.h) */
  int grid_h, grid_w;
} mimo_vision_item;

/* Text tokens (image placeholders) an image of this grid becomes. */
static inline int mimo_vision_tokens(const mimo_vision_config *vc, int grid_h, int grid_w) {
  return grid_h * grid_w / (vc->merge * vc->merge);
}

/* Runs the tower over n images at once (each its own attention sequence) on be, which must have the vision ops;
 * out gets their embeddings one after another, [sum of tokens][out_hidden] host floats. */
mimo_status mimo_vision_forward(mimo_backend *be, const mimo_vision_config *vc, const mimo_vision_weights *w,
                                const mimo_vision_item *items, int n, float *out);

/* ids with each image's one placeholder (image_token_id; n_images of them, in order) repeated tokens[i] times:
 * *out (malloc'd, *n_out ids) and runs[i].at/.n where image i's rows go (.rows left NULL). MIMO_E_INVALID when the
 * placeholders and images do not pair up. */
mimo_status mimo_vision_expand(const mimo_vision_config *vc, const int *ids, int n_ids, const int *tokens,
                               int n_images, int **out, int *n_out, mimo_embed_run *runs);

/* An encoder a server or command keeps: the tower's weights on a backend of its own, be (taken, also on failure:
 * a GPU backend gets its own copy of the weights) or, with be NULL, a CPU backend of `threads` threads. Calls from
 * several threads take turns. */
typedef struct mimo_vision mimo_vision;
mimo_status mimo_vision_open(const mimo_config *cfg, const mimo_vision_weights *w, mimo_backend *be, int threads,
                             mimo_vision **out);
void mimo_vision_close(mimo_vision *v);
const mimo_vision_config *mimo_vision_cfg(const mimo_vision *v);
/* The tower over n images' patch rows (mimo_vision_forward on the encoder's backend). */
mimo_status mimo_vision_encode(mimo_vision *v, const mimo_vision_item *items, int n, float *out);
const char *mimo_vision_backend_name(const mimo_vision *v);
/* Keeps up to `bytes` of tower outputs by image for mimo_vision_encode_image (model/vision_cache.h; 0: none, the
 * default). */
mimo_status mimo_vision_set_cache(mimo_vision *v, size_t bytes);
void mimo_vision_cache_stats(mimo_vision *v, long *hits, long *misses, size_t *bytes);
/* Decoded image -> its placeholder embeddings: *embeds (malloc'd) [*n_tokens][out_hidden]. */
mimo_status mimo_vision_encode_image(mimo_vision *v, const mimo_image *im, float **embeds, int *n_tokens);
#endif
