#include "server/parse_out.h"

#include <string.h>

#include "server/gen.h"

void mimo_parse_out_init(mimo_parse_out *p, bool parse_reasoning, bool thinking, const json_t *tools) {
  memset(p, 0, sizeof *p);
  (void)thinking;
  p->reasoning = parse_reasoning;
  p->tools = tools != NULL;
}

void mimo_parse_out_feed(mimo_parse_out *p, const char *text, size_t n, mimo_gen_delta *d) {
  (void)p;
  mimo_sbuf_put(&d->content, text, n);
}

void mimo_parse_out_finish(mimo_parse_out *p, mimo_gen_delta *d) {
  (void)p;
  (void)d;
}

void mimo_parse_out_free(mimo_parse_out *p) { (void)p; }
