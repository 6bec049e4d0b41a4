#include "core/version.h"

#ifndef MIMO_VERSION
#define MIMO_VERSION "unknown"
#endif

const char *mimo_version(void) { return MIMO_VERSION; }
