#include "cli/args.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_usage(FILE *f, const char *cmd, mimo_arg *args, int n, const char *usage) {
  fprintf(f, "usage: mimo %s %s\n\noptions:\n", cmd, usage);
  for (int i = 0; i < n; i++)
    fprintf(f, "  --%-18s %s\n", args[i].name, args[i].help);
}

int mimo_args_parse(int argc, char **argv, mimo_arg *args, int n, const char *usage) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      print_usage(stdout, argv[0], args, n, usage);
      return 3;
    }
    /* vLLM's short forms */
    static const char *const shorts[][2] = {{"-tp", "tensor-parallel-size"}, {"-pp", "pipeline-parallel-size"},
                                            {"-dp", "data-parallel-size"}, {"-q", "quantization"}};
    const char *alias = NULL;
    for (size_t k = 0; k < sizeof shorts / sizeof shorts[0]; k++)
      if (!strcmp(a, shorts[k][0]))
        alias = shorts[k][1];
    if (!alias && strncmp(a, "--", 2) != 0) {
      fprintf(stderr, "mimo %s: unexpected argument '%s'\n", argv[0], a);
      return 2;
    }
    const char *name = alias ? alias : a + 2, *eq = alias ? NULL : strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    int found = -1;
    for (int k = 0; k < n; k++)
      if (strlen(args[k].name) == len && strncmp(args[k].name, name, len) == 0)
        found = k;
    if (found < 0) {
      fprintf(stderr, "mimo %s: unknown option '%s' (see --help)\n", argv[0], a);
      return 2;
    }
    if (!args[found].takes_value) {
      args[found].value = "1";
    } else if (eq) {
      args[found].value = eq + 1;
    } else if (i + 1 < argc) {
      args[found].value = argv[++i];
    } else {
      fprintf(stderr, "mimo %s: option --%s needs a value\n", argv[0], args[found].name);
      return 2;
    }
  }
  return 0;
}

const char *mimo_arg_str(const mimo_arg *args, int n, const char *name, const char *dflt) {
  for (int i = 0; i < n; i++)
    if (strcmp(args[i].name, name) == 0)
      return args[i].value ? args[i].value : dflt;
  return dflt;
}

long mimo_arg_long(const mimo_arg *args, int n, const char *name, long dflt, bool *bad) {
  const char *s = mimo_arg_str(args, n, name, NULL);
  if (!s)
    return dflt;
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end) {
    fprintf(stderr, "mimo: --%s expects an integer, got '%s'\n", name, s);
    *bad = true;
  }
  return v;
}

double mimo_arg_double(const mimo_arg *args, int n, const char *name, double dflt, bool *bad) {
  const char *s = mimo_arg_str(args, n, name, NULL);
  if (!s)
    return dflt;
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (errno || end == s || *end) {
    fprintf(stderr, "mimo: --%s expects a number, got '%s'\n", name, s);
    *bad = true;
  }
  return v;
}

int mimo_parse_ids(const char *s, int **out) {
  int n = 0, cap = 16;
  int *ids = malloc((size_t)cap * sizeof *ids);
  if (!ids)
    return -1;
  const char *p = s;
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
    p++;
  while (*p) {
    char *end;
    errno = 0;
    long v = strtol(p, &end, 10);
    if (end == p || errno || v < 0 || v > INT_MAX) {
      fprintf(stderr, "mimo: malformed token id list near '%.20s'\n", p);
      free(ids);
      return -1;
    }
    if (n == cap) {
      cap *= 2;
      int *nids = realloc(ids, (size_t)cap * sizeof *ids);
      if (!nids) {
        free(ids);
        return -1;
      }
      ids = nids;
    }
    ids[n++] = (int)v;
    p = end;
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
      p++;
    if (*p == ',') {
      p++;
      while (*p == ' ')
        p++;
      if (!*p || *p == ',') {
        fprintf(stderr, "mimo: malformed token id list (empty entry)\n");
        free(ids);
        return -1;
      }
    } else if (*p) {
      fprintf(stderr, "mimo: malformed token id list near '%.20s'\n", p);
      free(ids);
      return -1;
    }
  }
  *out = ids;
  return n;
}
