#include "core/fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

mimo_status mimo_read_file(const char *path, char **out, size_t *len, size_t max_bytes) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return mimo_errf(MIMO_E_IO, "%s: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap + 1);
  while (buf) {
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (n < cap)
      break;
    if (cap >= max_bytes) {
      free(buf);
      fclose(f);
      return mimo_errf(MIMO_E_TOO_LONG, "%s: larger than %zu bytes", path, max_bytes);
    }
    cap *= 2;
    char *nb = realloc(buf, cap + 1);
    if (!nb)
      free(buf);
    buf = nb;
  }
  int err = ferror(f);
  fclose(f);
  if (!buf)
    return mimo_errf(MIMO_E_NOMEM, "%s", path);
  if (err) {
    free(buf);
    return mimo_errf(MIMO_E_IO, "%s: read error", path);
  }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return MIMO_OK;
}

mimo_status mimo_write_file(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return mimo_errf(MIMO_E_IO, "%s: %s", path, strerror(errno));
  size_t w = fwrite(data, 1, len, f);
  if (fclose(f) != 0 || w != len)
    return mimo_errf(MIMO_E_IO, "%s: write failed", path);
  return MIMO_OK;
}

int mimo_file_exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

mimo_status mimo_mkdir_p(const char *path) {
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s", path);
  for (char *p = tmp + 1; *p; p++) {
    if (*p == '/') {
      *p = 0;
      if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return mimo_errf(MIMO_E_IO, "mkdir %s: %s", tmp, strerror(errno));
      *p = '/';
    }
  }
  if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
    return mimo_errf(MIMO_E_IO, "mkdir %s: %s", tmp, strerror(errno));
  return MIMO_OK;
}
