/* Errors are values: every fallible function returns a mimo_status and leaves a
 * thread-local message naming what is wrong (file, tensor, field, line). */
#ifndef MIMO_CORE_STATUS_H
#define MIMO_CORE_STATUS_H

typedef enum mimo_status {
  MIMO_OK = 0,
  MIMO_E_IO,        /* open/read/mmap failed */
  MIMO_E_FORMAT,    /* a file's bytes are malformed */
  MIMO_E_CONFIG,    /* config.json is missing a field or asks for what we do not implement */
  MIMO_E_INVALID,   /* bad argument or request */
  MIMO_E_TOO_LONG,  /* context or input over a limit */
  MIMO_E_NOMEM,
  MIMO_E_BUSY,
  MIMO_E_CUDA,
  MIMO_E_NCCL,
  MIMO_E_CANCELLED,
  MIMO_E_INTERNAL,
} mimo_status;

const char *mimo_status_str(mimo_status s);

/* Records a message for the calling thread and returns code. */
mimo_status mimo_errf(mimo_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with context ("loading layer 3: ..."); returns code. */
mimo_status mimo_err_prefix(mimo_status code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *mimo_errmsg(void);
void mimo_err_clear(void);

#define MIMO_TRY(expr)                 \
  do {                                 \
    mimo_status mimo_try_s_ = (expr);  \
    if (mimo_try_s_ != MIMO_OK)        \
      return mimo_try_s_;              \
  } while (0)

/* Invariants only: a failed assert is a bug in mimo, never bad input. */
#define MIMO_ASSERT(c)                                                   \
  do {                                                                   \
    if (!(c))                                                            \
      mimo_assert_fail(#c, __FILE__, __LINE__);                          \
  } while (0)
_Noreturn void mimo_assert_fail(const char *expr, const char *file, int line);

#endif
