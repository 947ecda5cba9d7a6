/* Every fd mproc opens passes through here: it is moved above 2.
 *
 * A daemon, a service with stdin closed or a program started with `<&-`
 * has some of fds 0-2 closed, and the kernel gives the lowest free number
 * to the next fd opened. An mproc fd that took number 1 would receive the
 * program's printf output, and one that took number 0 would be closed or
 * replaced by a child's stdin redirection. So no fd of the library is ever
 * a number 0-2. */
#include <fcntl.h>
#include <unistd.h>

#include "core/internal.h"

int mp__fd_high(int fd) {
  if (fd < 0 || fd > STDERR_FILENO)
    return fd;
  int high = fcntl(fd, F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  int err = errno;
  close(fd);
  errno = err;
  return high;
}

int mp__fd_pair_high(int rc, int fds[2]) {
  if (rc < 0)
    return rc;
  fds[0] = mp__fd_high(fds[0]);
  fds[1] = mp__fd_high(fds[1]);
  if (fds[0] >= 0 && fds[1] >= 0)
    return 0;
  int err = errno;
  if (fds[0] >= 0)
    close(fds[0]);
  if (fds[1] >= 0)
    close(fds[1]);
  errno = err;
  return -1;
}
