/* config.json text of any shape: mimo_config_parse either refuses it with a
 * message or yields a config whose sizes are usable. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "core/status.h"
#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  mimo_config c;
  if (mimo_config_parse((const char *)data, size, "fuzz/config.json", &c) != MIMO_OK) {
    if (mimo_errmsg()[0] == 0)
      abort();
    return 0;
  }
  if (c.num_hidden_layers < 1 || c.num_hidden_layers > MIMO_MAX_LAYERS || c.vocab_size < 1 || c.hidden_size < 1)
    abort();
  for (int l = 0; l < c.num_hidden_layers; l++) {
    const mimo_attn_geom *g = mimo_config_geom(&c, l);
    if (g->n_heads < 1 || g->n_kv_heads < 1 || g->n_heads % g->n_kv_heads || g->rotary_dim < 2 ||
        g->rotary_dim > g->head_dim || g->rotary_dim % 2 || (g == &c.swa && l && c.layer_type[l] == MIMO_ATTN_SWA &&
                                                               g->window < 1))
      abort();
  }
  for (int i = 0; i < c.n_eos; i++)
    if (c.eos_token_id[i] < 0 || c.eos_token_id[i] >= c.vocab_size)
      abort();
  return 0;
}
