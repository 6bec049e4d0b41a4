#ifndef MIMO_CORE_FILEIO_H
#define MIMO_CORE_FILEIO_H
#include <stddef.h>

#include "core/status.h"
/* Reads a whole file (NUL-terminated copy); refuses files over max_bytes. */
mimo_status mimo_read_file(const char *path, char **out, size_t *len, size_t max_bytes);
mimo_status mimo_write_file(const char *path, const void *data, size_t len);
int mimo_file_exists(const char *path);
mimo_status mimo_mkdir_p(const char *path);
#endif
