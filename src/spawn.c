/* The spawn and forkserver start methods. */
#include "internal.h"

int mp__start_spawn(mp_process_t *p) {
  (void)p;
  return -ENOSYS;
}

int mp__start_forkserver(mp_process_t *p) {
  (void)p;
  return -ENOSYS;
}
