#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static mimo_log_level current = MIMO_LOG_WARN;

void mimo_log_set_level(mimo_log_level l) { current = l; }

void mimo_log(mimo_log_level l, const char *fmt, ...) {
  if (l > current)
    return;
  static const char *names[] = {"error", "warn", "info", "debug"};
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "mimo %s: ", names[l]);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

double mimo_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
