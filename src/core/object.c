/* The check every call makes of a shared object's handle (see
 * mp__object_check in internal.h), and the retirement of a freed one. */
#include <stdio.h>
#include <stdlib.h>

#include "core/internal.h"

void mp__object_retire(void *obj, uint32_t magic, const char *kind) {
  _Atomic uint32_t *word = obj;
  uint32_t seen = magic;
  /* One thread retires it: a second free, even a concurrent one, sees the
   * freed mark. */
  if (mp__arena_contains(obj) &&
      atomic_compare_exchange_strong(word, &seen, MP__FREED(magic)))
    return;
  if (mp__arena_contains(obj) && seen == MP__FREED(magic))
    fprintf(stderr, "mproc: mp_%s_free: this %s was already freed\n", kind,
            kind);
  else
    fprintf(stderr, "mproc: mp_%s_free: %p is not a %s\n", kind, obj, kind);
  abort();
}
