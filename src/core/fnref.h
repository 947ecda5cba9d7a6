/* Functions named so that another process of the same program finds them
 * (internal). */
#ifndef MPROC_FNREF_H
#define MPROC_FNREF_H

#include <link.h>

#include "core/internal.h"

/* A function (or static object) named so that another process of the same
 * program finds it: the path of its module (empty for the main program)
 * and its offset from the module's load base. Under spawn every library is
 * at another address (ASLR), so a raw pointer would be wrong there. Store
 * this, not a function pointer, in shared objects whose callbacks may run
 * in another process (a barrier's action, a pool's task). */
typedef struct mp__fnref {
  uint64_t offset;
  uint32_t valid;
  char module[236];
} mp__fnref_t;

/* 0, or MP_EINVAL when fn is in no loaded module. fn NULL gives an invalid
 * reference that decodes to NULL. */
int mp__fn_encode(const void *fn, mp__fnref_t *ref);
/* The address in this process, loading the module if needed; NULL if it
 * cannot be found. */
void *mp__fn_decode(const mp__fnref_t *ref);

/* dl_iterate_phdr(visit, arg), never at the same time as a fork() of the
 * process (fnref.c says why). Every walk of the loaded modules by the
 * library (and libmproc_mpi) goes through it. visit must take no lock. */
MP_API int mp__dl_iterate(int (*visit)(struct dl_phdr_info *, size_t, void *),
                          void *arg);

#endif
