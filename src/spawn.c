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

int mp__inherit_fd_add(int fd) {
  (void)fd;
  return 0;
}

void mp__inherit_fd_remove(int fd) {
  (void)fd;
}
