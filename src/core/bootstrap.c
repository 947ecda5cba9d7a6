/* Whether this process is a spawned child still waiting for mp_main(). */
#include <unistd.h>

#include "core/internal.h"

/* Set once by a constructor before main(), read afterwards: no locking. */
static struct {
  enum mp__boot_role role;
  bool taken; /* mp_main took over */
} boot;

void mp__boot_set_role(enum mp__boot_role role) {
  boot.role = role;
  boot.taken = false;
}

enum mp__boot_role mp__boot_take(void) {
  if (boot.taken)
    return MP__BOOT_NONE;
  boot.taken = true;
  return boot.role;
}

bool mp__boot_main_called(void) {
  return boot.taken;
}

void mp__check_bootstrapped(void) {
  if (boot.role == MP__BOOT_NONE || boot.taken)
    return;
  static const char message[] =
      "mproc: this program was started as a child process (spawn or "
      "forkserver start method), but main() did not call mp_main(argc, argv) "
      "before using mproc. Call it first thing in main(): it is the C form "
      "of Python's `if __name__ == \"__main__\":` guard.\n";
  if (write(STDERR_FILENO, message, sizeof message - 1) < 0) {
    /* Nothing more can be done. */
  }
  _exit(MP__EXIT_START_FAILED);
}
