#ifndef MIMO_CORE_LOG_H
#define MIMO_CORE_LOG_H
/* Diagnostics go to stderr; stdout is reserved for command results. */
typedef enum { MIMO_LOG_ERROR, MIMO_LOG_WARN, MIMO_LOG_INFO, MIMO_LOG_DEBUG } mimo_log_level;
void mimo_log_set_level(mimo_log_level l);
void mimo_log(mimo_log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define mimo_info(...) mimo_log(MIMO_LOG_INFO, __VA_ARGS__)
#define mimo_warn(...) mimo_log(MIMO_LOG_WARN, __VA_ARGS__)
double mimo_now(void); /* monotonic seconds */
#endif
