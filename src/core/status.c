#include "core/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char err_msg[2048];

const char *mimo_status_str(mimo_status s) {
  switch (s) {
  case MIMO_OK: return "ok";
  case MIMO_E_IO: return "i/o error";
  case MIMO_E_FORMAT: return "format error";
  case MIMO_E_CONFIG: return "config error";
  case MIMO_E_INVALID: return "invalid argument";
  case MIMO_E_TOO_LONG: return "too long";
  case MIMO_E_NOMEM: return "out of memory";
  case MIMO_E_BUSY: return "busy";
  case MIMO_E_CUDA: return "cuda error";
  case MIMO_E_NCCL: return "nccl error";
  case MIMO_E_CANCELLED: return "cancelled";
  case MIMO_E_INTERNAL: return "internal error";
  }
  return "unknown error";
}

mimo_status mimo_errf(mimo_status code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err_msg, sizeof err_msg, fmt, ap);
  va_end(ap);
  return code;
}

mimo_status mimo_err_prefix(mimo_status code, const char *fmt, ...) {
  char prefix[512], old[sizeof err_msg];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, err_msg, sizeof old);
  size_t n = strlen(prefix);
  if (n > sizeof err_msg - 3)
    n = sizeof err_msg - 3;
  memcpy(err_msg, prefix, n);
  memcpy(err_msg + n, ": ", 2);
  size_t rest = sizeof err_msg - n - 3, m = strlen(old);
  if (m > rest)
    m = rest;
  memcpy(err_msg + n + 2, old, m);
  err_msg[n + 2 + m] = 0;
  return code;
}

const char *mimo_errmsg(void) { return err_msg[0] ? err_msg : "no error message"; }
void mimo_err_clear(void) { err_msg[0] = 0; }

void mimo_assert_fail(const char *expr, const char *file, int line) {
  fprintf(stderr, "mimo: internal assertion failed: %s (%s:%d)\n", expr, file, line);
  abort();
}
