/* Minimal `--name value` / `--flag` parsing shared by the subcommands. */
#ifndef MIMO_CLI_ARGS_H
#define MIMO_CLI_ARGS_H
#include <stdbool.h>
#include <stdint.h>

typedef struct mimo_arg {
  const char *name;  /* without the dashes */
  int takes_value;
  const char *help;
  const char *value; /* filled: the value, or "1" for a flag present */
} mimo_arg;

/* Returns 0 on success; prints a message and returns 2 on a usage error, or 3 after printing --help. */
int mimo_args_parse(int argc, char **argv, mimo_arg *args, int n, const char *usage);
const char *mimo_arg_str(const mimo_arg *args, int n, const char *name, const char *dflt);
/* Numbers: on a malformed value, print and set *bad. */
long mimo_arg_long(const mimo_arg *args, int n, const char *name, long dflt, bool *bad);
double mimo_arg_double(const mimo_arg *args, int n, const char *name, double dflt, bool *bad);
/* "1,2,3" -> ids (malloc'ed). Returns count, or -1 on a malformed list (message printed). */
int mimo_parse_ids(const char *s, int **out);
#endif
