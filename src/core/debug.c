/* The checking mode (MPROC_DEBUG, mp_set_debug): a log on stderr of what
 * the library does that a user debugging a program of processes wants to
 * see, Python's log_to_stderr() with levels. Off, it costs one load of
 * mp__debug_level at each place that could log. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/internal.h"

_Atomic int mp__debug_level;

/* Read once before main(); a call can change it afterwards. */
__attribute__((constructor)) static void debug_from_environment(void) {
  const char *env = getenv("MPROC_DEBUG");
  if (env && *env)
    atomic_store(&mp__debug_level, atoi(env) > 0 ? atoi(env) : 0);
}

int mp_set_debug(int level) {
  int old = atomic_exchange(&mp__debug_level, level > 0 ? level : 0);
  return old;
}

void mp__debug_print(int level, const char *format, ...) {
  /* One write per line, so that lines of several processes do not mix. */
  char line[512];
  int n = snprintf(line, sizeof line, "[mproc %s/%d] ",
                   level <= MP_DEBUG_INFO ? "INFO" : "DEBUG", (int)getpid());
  va_list ap;
  va_start(ap, format);
  int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, format, ap);
  va_end(ap);
  n += m < 0 ? 0 : m;
  if (n > (int)sizeof line - 2)
    n = (int)sizeof line - 2;
  line[n++] = '\n';
  if (write(STDERR_FILENO, line, (size_t)n) < 0) {
    /* stderr is closed: nobody to tell. */
  }
}
