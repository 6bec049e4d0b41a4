/* mimo's version: git's description of the source tree it was configured from ("unknown" outside a checkout). */
#ifndef MIMO_CORE_VERSION_H
#define MIMO_CORE_VERSION_H
const char *mimo_version(void);
#endif
