/* config.json: the MiMo-V2.5 config (spec §1.1, with the int4 repo's
 * compressed-tensors quantization_config, §6.4) parses to the spec's numbers,
 * and each unsupported or malformed field is refused by name. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"

#define PATH "ckpt/config.json"

static const char *V25 =
    "{\"architectures\": [\"MiMoV2ForCausalLM\"], \"model_type\": \"mimo_v2\", \"dtype\": \"bfloat16\","
    " \"vocab_size\": 152576, \"hidden_size\": 4096, \"num_hidden_layers\": 48,"
    " \"num_attention_heads\": 64, \"num_key_value_heads\": 4, \"head_dim\": 192, \"v_head_dim\": 128,"
    " \"swa_num_attention_heads\": 64, \"swa_num_key_value_heads\": 8, \"swa_head_dim\": 192, \"swa_v_head_dim\": 128,"
    " \"hybrid_layer_pattern\": [0,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,0,"
    "                          1,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,0],"
    " \"sliding_window\": 128, \"sliding_window_size\": 128, \"attention_chunk_size\": 128, \"hybrid_block_size\": null,"
    " \"partial_rotary_factor\": 0.334, \"rope_theta\": 10000000, \"swa_rope_theta\": 10000,"
    " \"rope_scaling\": {\"rope_type\": \"default\", \"type\": \"default\"},"
    " \"max_position_embeddings\": 1048576,"
    " \"attention_value_scale\": 0.707, \"attention_bias\": false,"
    " \"add_swa_attention_sink_bias\": true, \"add_full_attention_sink_bias\": false,"
    " \"attention_projection_layout\": \"fused_qkv\","
    " \"layernorm_epsilon\": 1e-05, \"hidden_act\": \"silu\", \"tie_word_embeddings\": false,"
    " \"intermediate_size\": 16384, \"moe_intermediate_size\": 2048,"
    " \"moe_layer_freq\": [0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],"
    " \"n_routed_experts\": 256, \"num_experts_per_tok\": 8, \"n_shared_experts\": null,"
    " \"scoring_func\": \"sigmoid\", \"topk_method\": \"noaux_tc\", \"n_group\": 1, \"topk_group\": 1,"
    " \"norm_topk_prob\": true, \"routed_scaling_factor\": null,"
    " \"eos_token_id\": 151645, \"pad_token_id\": 151643,"
    " \"image_token_id\": 151655, \"video_token_id\": 151656,"
    " \"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\","
    "   \"quantization_status\": \"compressed\","
    "   \"config_groups\": {\"group_0\": {\"targets\": [\"re:.*mlp\\\\.experts.*\"],"
    "     \"weights\": {\"num_bits\": 4, \"type\": \"int\", \"symmetric\": false, \"strategy\": \"group\","
    "                 \"group_size\": 128, \"dynamic\": false, \"actorder\": null, \"observer\": \"minmax\"},"
    "     \"input_activations\": null, \"output_activations\": null, \"format\": \"pack-quantized\"}},"
    "   \"ignore\": [\"lm_head\"], \"kv_cache_scheme\": null}}";

/* The V2.5 config with `patch` merged at the top level (an object; a key with
 * value "DELETE" is removed), parsed. */
static mimo_status parse_patched(const char *patch, mimo_config *c) {
  json_t *base = json_loads(V25, 0, NULL);
  assert_non_null(base);
  if (patch) {
    json_error_t e;
    json_t *p = json_loads(patch, 0, &e);
    if (!p)
      fail_msg("bad patch %s: %s", patch, e.text);
    const char *k;
    json_t *v;
    json_object_foreach(p, k, v) {
      if (json_is_string(v) && strcmp(json_string_value(v), "DELETE") == 0)
        json_object_del(base, k);
      else
        json_object_set(base, k, v);
    }
    json_decref(p);
  }
  char *text = json_dumps(base, JSON_COMPACT);
  json_decref(base);
  mimo_status st = mimo_config_parse(text, strlen(text), PATH, c);
  free(text);
  return st;
}

/* A patched config must fail with MIMO_E_CONFIG naming the file and `what`. */
static void refuse(const char *patch, const char *what, const char *what2) {
  mimo_config c;
  mimo_status st = parse_patched(patch, &c);
  if (st != MIMO_E_CONFIG || !strstr(mimo_errmsg(), PATH) || !strstr(mimo_errmsg(), what) ||
      (what2 && !strstr(mimo_errmsg(), what2)))
    fail_msg("patch %s: status %d, message \"%s\"; wanted \"%s\"", patch, st, mimo_errmsg(), what);
}

static const char *QUANT_FMT =
    "{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"pack-quantized\","
    " \"config_groups\": {\"group_0\": {\"weights\": {\"num_bits\": %d, \"type\": \"int\", %s \"strategy\": \"group\","
    " \"group_size\": %d, \"actorder\": %s}, \"input_activations\": %s}}}}";

static mimo_status parse_quant(int bits, const char *sym, int group, const char *actorder, const char *ia,
                               mimo_config *c) {
  char patch[1024];
  snprintf(patch, sizeof patch, QUANT_FMT, bits, sym, group, actorder, ia);
  return parse_patched(patch, c);
}

static void test_v25(void **state) {
  (void)state;
  mimo_config c;
  assert_int_equal(parse_patched(NULL, &c), MIMO_OK);
  assert_int_equal(c.vocab_size, 152576);
  assert_int_equal(c.hidden_size, 4096);
  assert_int_equal(c.num_hidden_layers, 48);
  assert_int_equal(c.intermediate_size, 16384);
  assert_int_equal(c.moe_intermediate_size, 2048);
  assert_int_equal(c.n_routed_experts, 256);
  assert_int_equal(c.num_experts_per_tok, 8);
  assert_int_equal(c.n_group, 1);
  assert_int_equal(c.topk_group, 1);
  assert_true(c.norm_topk_prob);
  assert_true(c.routed_scaling_factor == 1.0); /* null -> 1.0 */
  assert_true(c.layernorm_epsilon == 1e-5);
  assert_true(c.attention_value_scale == 0.707);
  assert_true(c.partial_rotary_factor == 0.334);
  assert_false(c.tie_word_embeddings);
  assert_int_equal(c.qkv_layout, MIMO_QKV_FUSED);
  assert_int_equal(c.qkv_chunks, 4);
  assert_int_equal(c.max_position_embeddings, 1048576);
  /* geometry of both attention types */
  assert_int_equal(c.full.n_heads, 64);
  assert_int_equal(c.full.n_kv_heads, 4);
  assert_int_equal(c.full.head_dim, 192);
  assert_int_equal(c.full.v_head_dim, 128);
  assert_int_equal(c.full.rotary_dim, 64); /* int(192 * 0.334) = int(64.128) */
  assert_true(c.full.rope_theta == 1e7);
  assert_int_equal(c.full.window, 0);
  assert_false(c.full.has_sink);
  assert_int_equal(c.swa.n_heads, 64);
  assert_int_equal(c.swa.n_kv_heads, 8);
  assert_int_equal(c.swa.head_dim, 192);
  assert_int_equal(c.swa.v_head_dim, 128);
  assert_int_equal(c.swa.rotary_dim, 64);
  assert_true(c.swa.rope_theta == 1e4);
  assert_int_equal(c.swa.window, 128);
  assert_true(c.swa.has_sink);
  /* layer types: full at 0, 5, 11, ..., 47 (spec §0); MoE everywhere but layer 0 */
  int nfull = 0;
  for (int l = 0; l < 48; l++) {
    int full = l == 0 || (l >= 5 && (l - 5) % 6 == 0);
    assert_int_equal(c.layer_type[l], full ? MIMO_ATTN_FULL : MIMO_ATTN_SWA);
    assert_ptr_equal(mimo_config_geom(&c, l), full ? &c.full : &c.swa);
    assert_int_equal(c.layer_moe[l], l != 0);
    nfull += full;
  }
  assert_int_equal(nfull, 9);
  assert_int_equal(c.n_eos, 1);
  assert_int_equal(c.eos_token_id[0], 151645);
  assert_int_equal(c.pad_token_id, 151643);
  assert_true(c.quant.present);
  assert_int_equal(c.quant.num_bits, 4);
  assert_false(c.quant.symmetric);
  assert_int_equal(c.quant.group_size, 128);
  assert_string_equal(c.quant.format, "pack-quantized");
}

static void test_defaults(void **state) {
  (void)state;
  mimo_config c;
  assert_int_equal(parse_patched("{\"swa_v_head_dim\": \"DELETE\"}", &c), MIMO_OK);
  assert_int_equal(c.swa.v_head_dim, 192);
  assert_int_equal(c.full.v_head_dim, 128);
  /* swa_* absent altogether: copies of the full geometry; routed_scaling_factor explicit */
  assert_int_equal(parse_patched("{\"swa_num_attention_heads\": \"DELETE\", \"swa_num_key_value_heads\": \"DELETE\","
                                 " \"swa_head_dim\": \"DELETE\", \"swa_rope_theta\": \"DELETE\","
                                 " \"routed_scaling_factor\": 2.5, \"eos_token_id\": [151645, 151643, 151672],"
                                 " \"pad_token_id\": \"DELETE\", \"attention_value_scale\": \"DELETE\","
                                 " \"quantization_config\": \"DELETE\", \"rope_scaling\": null}",
                                 &c),
                   MIMO_OK);
  assert_int_equal(c.swa.n_heads, 64);
  assert_int_equal(c.swa.n_kv_heads, 4);
  assert_int_equal(c.swa.head_dim, 192);
  assert_true(c.swa.rope_theta == 1e7);
  assert_true(c.routed_scaling_factor == 2.5);
  assert_int_equal(c.n_eos, 3);
  assert_int_equal(c.eos_token_id[2], 151672);
  assert_int_equal(c.pad_token_id, -1);
  assert_true(c.attention_value_scale == 1.0);
  assert_false(c.quant.present);
  /* no pattern: every layer full; rms_norm_eps as the epsilon's other name */
  assert_int_equal(parse_patched("{\"hybrid_layer_pattern\": \"DELETE\", \"layernorm_epsilon\": \"DELETE\","
                                 " \"rms_norm_eps\": 1e-6, \"attention_projection_layout\": \"DELETE\"}",
                                 &c),
                   MIMO_OK);
  for (int l = 0; l < 48; l++)
    assert_int_equal(c.layer_type[l], MIMO_ATTN_FULL);
  assert_true(c.layernorm_epsilon == 1e-6);
  assert_int_equal(c.qkv_layout, MIMO_QKV_SPLIT);
  /* symmetric quantization, other group size; symmetric absent means symmetric */
  assert_int_equal(parse_quant(4, "\"symmetric\": true,", 64, "null", "null", &c), MIMO_OK);
  assert_true(c.quant.symmetric);
  assert_int_equal(c.quant.group_size, 64);
  assert_int_equal(parse_quant(4, "", 32, "null", "null", &c), MIMO_OK);
  assert_true(c.quant.symmetric);
  assert_int_equal(c.quant.group_size, 32);
}

static void test_tiny(void **state) {
  (void)state;
  /* the smallest config the parser accepts: one dense full-attention layer */
  const char *tiny = "{\"model_type\": \"mimo_v2\", \"vocab_size\": 300, \"hidden_size\": 64,"
                     " \"num_hidden_layers\": 1, \"intermediate_size\": 128, \"num_attention_heads\": 4,"
                     " \"head_dim\": 16}";
  mimo_config c;
  assert_int_equal(mimo_config_parse(tiny, strlen(tiny), PATH, &c), MIMO_OK);
  assert_int_equal(c.full.n_kv_heads, 4);
  assert_int_equal(c.full.v_head_dim, 16);
  assert_int_equal(c.full.rotary_dim, 16);
  assert_true(c.full.rope_theta == 10000.0);
  assert_true(c.layernorm_epsilon == 1e-6);
  assert_false(c.layer_moe[0]);
  assert_int_equal(c.n_eos, 0);
}

static void test_errors(void **state) {
  (void)state;
  refuse("{\"hidden_size\": \"DELETE\"}", "missing required field 'hidden_size'", NULL);
  refuse("{\"vocab_size\": null}", "missing required field 'vocab_size'", NULL);
  refuse("{\"num_attention_heads\": \"DELETE\"}", "'num_attention_heads'", NULL);
  refuse("{\"model_type\": \"DELETE\"}", "'model_type'", NULL);
  refuse("{\"model_type\": \"qwen2\"}", "model_type \"qwen2\"", "not a MiMo");
  refuse("{\"hidden_size\": 4096.5}", "'hidden_size' must be an integer", NULL);
  refuse("{\"hidden_size\": -1}", "'hidden_size'", NULL);
  refuse("{\"num_hidden_layers\": 1000}", "'num_hidden_layers'", NULL);
  /* quantization */
  mimo_config c;
  assert_int_equal(parse_quant(8, "", 128, "null", "null", &c), MIMO_E_CONFIG);
  assert_non_null(strstr(mimo_errmsg(), "num_bits"));
  assert_non_null(strstr(mimo_errmsg(), PATH));
  assert_int_equal(parse_quant(4, "", 128, "\"group\"", "null", &c), MIMO_E_CONFIG);
  assert_non_null(strstr(mimo_errmsg(), "actorder"));
  assert_int_equal(parse_quant(4, "", 128, "\"weight\"", "null", &c), MIMO_E_CONFIG);
  assert_non_null(strstr(mimo_errmsg(), "actorder"));
  assert_int_equal(parse_quant(4, "", 128, "null", "{\"num_bits\": 8}", &c), MIMO_E_CONFIG);
  assert_non_null(strstr(mimo_errmsg(), "input_activations"));
  assert_int_equal(parse_quant(4, "", 0, "null", "null", &c), MIMO_E_CONFIG);
  assert_non_null(strstr(mimo_errmsg(), "group_size"));
  refuse("{\"quantization_config\": {\"quant_method\": \"fp8\", \"weight_block_size\": [128, 128]}}",
         "quant_method \"fp8\"", NULL);
  refuse("{\"quantization_config\": {\"quant_method\": \"compressed-tensors\", \"format\": \"float-quantized\","
         " \"config_groups\": {}}}",
         "float-quantized", NULL);
  refuse("{\"quantization_config\": [1]}", "quantization_config", NULL);
  /* rope */
  refuse("{\"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4.0}}", "rope_scaling", "yarn");
  refuse("{\"rope_scaling\": {\"type\": \"linear\", \"factor\": 2.0}}", "rope_scaling", "linear");
  refuse("{\"partial_rotary_factor\": 0}", "partial_rotary_factor", NULL);
  refuse("{\"partial_rotary_factor\": 0.3}", "rotary dim", NULL); /* int(192*0.3) = 57: odd */
  refuse("{\"rope_theta\": 1}", "rope_theta", NULL);
  /* router */
  refuse("{\"n_group\": 2}", "'n_group'", NULL);
  refuse("{\"topk_group\": 2}", "'topk_group'", NULL);
  refuse("{\"scoring_func\": \"softmax\"}", "'scoring_func'", "softmax");
  refuse("{\"topk_method\": \"greedy\"}", "'topk_method'", NULL);
  refuse("{\"n_shared_experts\": 1}", "'n_shared_experts'", NULL);
  refuse("{\"num_experts_per_tok\": 300}", "'num_experts_per_tok'", NULL);
  refuse("{\"n_routed_experts\": \"DELETE\"}", "'n_routed_experts'", NULL);
  /* layer patterns */
  refuse("{\"hybrid_layer_pattern\": [0, 1, 1]}", "hybrid_layer_pattern", "48");
  refuse("{\"hybrid_layer_pattern\": 1}", "hybrid_layer_pattern", NULL);
  refuse("{\"hybrid_layer_pattern\": [0,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,0,"
         "1,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,0, 1,1,1,1,1,2]}",
         "hybrid_layer_pattern[47]", NULL);
  refuse("{\"moe_layer_freq\": [0, 1]}", "moe_layer_freq", NULL);
  refuse("{\"sliding_window\": \"DELETE\", \"sliding_window_size\": \"DELETE\"}", "sliding_window", NULL);
  /* head counts */
  refuse("{\"num_key_value_heads\": 5}", "num_attention_heads (64) is not a multiple of num_key_value_heads (5)",
         NULL);
  refuse("{\"swa_num_key_value_heads\": 7}", "swa_num_attention_heads", "swa_num_key_value_heads (7)");
  refuse("{\"num_key_value_heads\": 128}", "not a multiple", NULL);
  /* misc */
  refuse("{\"hidden_act\": \"gelu\"}", "'hidden_act'", "gelu");
  refuse("{\"attention_bias\": true}", "attention_bias", NULL);
  refuse("{\"tie_word_embeddings\": 1}", "'tie_word_embeddings'", NULL);
  refuse("{\"attention_projection_layout\": \"qkv_interleaved\"}", "attention_projection_layout", NULL);
  refuse("{\"layernorm_epsilon\": 0}", "layernorm_epsilon", NULL);
  refuse("{\"eos_token_id\": -3}", "eos_token_id", NULL);
  refuse("{\"eos_token_id\": [151645, 999999999]}", "eos_token_id", NULL);
  /* not JSON / not an object */
  assert_int_equal(mimo_config_parse("{\"a\": ", 6, PATH, &c), MIMO_E_CONFIG);
  assert_non_null(strstr(mimo_errmsg(), PATH));
  assert_int_equal(mimo_config_parse("[]", 2, PATH, &c), MIMO_E_CONFIG);
  assert_non_null(strstr(mimo_errmsg(), "not a JSON object"));
  assert_int_equal(mimo_config_load("/nonexistent-dir", &c), MIMO_E_IO);
  assert_non_null(strstr(mimo_errmsg(), "/nonexistent-dir/config.json"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_v25),  cmocka_unit_test(test_defaults), cmocka_unit_test(test_tiny),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
