/* RawValue / RawArray: shared memory without a lock, straight from the
 * arena. */
#include <errno.h>

#include "core/internal.h"

void *mp_raw_alloc(size_t size) {
  mp__check_bootstrapped();
  if (size == 0) {
    errno = EINVAL;
    return NULL;
  }
  return mp__shm_alloc(size);
}

void mp_raw_free(void *ptr) {
  mp__shm_free(ptr);
}
