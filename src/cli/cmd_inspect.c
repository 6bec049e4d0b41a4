/* mimo inspect: validate a checkpoint directory against its config and summarise it. */
#include <stdio.h>
#include <string.h>

#include "cli/args.h"
#include "cli/commands.h"
#include "model/mimo_v2.h"


static double vec_bytes(const mimo_vec *v) { return (double)v->n * mimo_dtype_size(v->dt); }

int mimo_cmd_inspect(int argc, char **argv) {
  mimo_arg a[] = {{"model", 1, "checkpoint directory", 0}};
  int n = 1, rc = mimo_args_parse(argc, argv, a, n, "--model DIR");
  if (rc)
    return rc == 3 ? 0 : rc;
  const char *dir = mimo_arg_str(a, n, "model", NULL);
  if (!dir) {
    fprintf(stderr, "mimo inspect: need --model DIR\n");
    return 2;
  }
  mimo_model *m;
  if (mimo_model_load(dir, NULL, &m) != MIMO_OK) {
    fprintf(stderr, "mimo inspect: %s\n", mimo_errmsg());
    return 1;
  }
  const mimo_config *c = &m->cfg;
  printf("checkpoint %s: %d shard(s), %zu tensors, %.3f GB\n", dir, m->ck.n_files, m->ck.n_tensors,
         m->ck.total_bytes / 1e9);
  printf("config: hidden %d, layers %d, vocab %d, experts %d (top-%d, width %d), dense width %d\n", c->hidden_size,
         c->num_hidden_layers, c->vocab_size, c->n_routed_experts, c->num_experts_per_tok, c->moe_intermediate_size,
         c->intermediate_size);
  for (int t = 0; t < 2; t++) {
    const mimo_attn_geom *g = t ? &c->swa : &c->full;
    printf("%s attention: %d q / %d kv heads, qk %d / v %d, rotary %d, theta %g, window %d, sink %s\n",
           t ? "sliding" : "full", g->n_heads, g->n_kv_heads, g->head_dim, g->v_head_dim, g->rotary_dim, g->rope_theta,
           g->window, g->has_sink ? "yes" : "no");
  }
  double b_embed = mimo_linear_bytes(&m->w.embed), b_head = m->w.lm_head.w == m->w.embed.w ? 0 : mimo_linear_bytes(&m->w.lm_head);
  double b_attn = 0, b_dense = 0, b_router = 0, b_int4 = 0, b_bf16x = 0, b_norm = vec_bytes(&m->w.final_norm);
  printf("layers:\n");
  for (int L = 0; L < c->num_hidden_layers; L++) {
    const mimo_layer_weights *lw = &m->w.layers[L];
    b_norm += vec_bytes(&lw->input_norm) + vec_bytes(&lw->post_norm);
    b_attn += lw->fused_qkv ? mimo_linear_bytes(&lw->qkv) : mimo_linear_bytes(&lw->q) + mimo_linear_bytes(&lw->k) + mimo_linear_bytes(&lw->v);
    b_attn += mimo_linear_bytes(&lw->o) + vec_bytes(&lw->sink);
    char ffn[96];
    if (!lw->moe) {
      b_dense += mimo_linear_bytes(&lw->gate) + mimo_linear_bytes(&lw->up) + mimo_linear_bytes(&lw->down);
      snprintf(ffn, sizeof ffn, "dense MLP");
    } else {
      double e = 0;
      for (int i = 0; i < 3 * c->n_routed_experts; i++)
        e += mimo_linear_bytes(&lw->experts[i]);
      b_router += mimo_linear_bytes(&lw->router) + vec_bytes(&lw->router_bias);
      if (lw->expert_fmt == MIMO_WF_INT4) {
        b_int4 += e;
        snprintf(ffn, sizeof ffn, "MoE experts int4 %s group %d", lw->expert_asym ? "asym" : "sym", lw->expert_group);
      } else {
        b_bf16x += e;
        snprintf(ffn, sizeof ffn, "MoE experts %s", mimo_dtype_name(lw->expert_dt));
      }
    }
    printf("  %3d  %-7s %-5s qkv  %s\n", L, c->layer_type[L] == MIMO_ATTN_SWA ? "sliding" : "full",
           lw->fused_qkv ? "fused" : "split", ffn);
  }
  double used = b_embed + b_head + b_attn + b_dense + b_router + b_int4 + b_bf16x + b_norm;
  printf("bytes: embed %.3f MB, lm_head %.3f MB, attention %.3f MB, dense MLP %.3f MB, routers %.3f MB,\n"
         "       experts int4 %.3f MB, experts dense %.3f MB, norms %.3f MB\n",
         b_embed / 1e6, b_head / 1e6, b_attn / 1e6, b_dense / 1e6, b_router / 1e6, b_int4 / 1e6, b_bf16x / 1e6,
         b_norm / 1e6);
  (void)used;
  if (m->w.n_mtp)
    printf("mtp: %d layer%s (model.mtp.layers.*: sliding attention with sink, dense MLP; speculative decoding drafts)\n",
           m->w.n_mtp, m->w.n_mtp == 1 ? "" : "s");
  else
    printf("mtp: none\n");
  const mimo_vision_config *vc = &m->cfg.vision;
  if (m->vw.present) {
    int windows = 0;
    for (int i = 0; i < vc->depth; i++)
      windows += vc->attn[i] != MIMO_VIT_FULL;
    printf("vision: %d blocks (%d windowed, |i-j| <= %d%s), width %d, %d q / %d kv heads x %d, patch %d, merge %d, "
           "images %ld..%ld pixels; %.6f GB\n",
           vc->depth, windows, vc->window, vc->use_sink ? ", sinks" : "", vc->hidden, vc->n_heads, vc->n_kv_heads,
           vc->head_dim, vc->patch, vc->merge, vc->min_pixels, vc->max_pixels, m->vw.bytes / 1e9);
  } else {
    printf("vision: none (text only)\n");
  }
  printf("total: %.6f GB bound by the text model, %.6f GB by the vision tower; %.6f GB in other tensors (audio, "
         "...)\n", m->w.bytes / 1e9, m->vw.bytes / 1e9, (double)(m->ck.total_bytes - m->w.bytes - m->vw.bytes) / 1e9);
  printf("ok\n");
  mimo_model_free(m);
  return 0;
}
