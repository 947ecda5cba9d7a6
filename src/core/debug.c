/* The checking mode (MPROC_DEBUG, mp_set_debug): a log on stderr of what
 * the library does that a user debugging a program of processes wants to
 * see, Python's log_to_stderr() with levels. Off, it costs one load of
 * mp__debug_level at each place that could log. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* ---- pointers in bytes that travel to a spawned child
 * ------------------------ The ranges of this process's own memory (private
 * mappings: stack, heap, code and data of the program and its libraries), read
 * from /proc/self/maps at the first scan. The arena is a shared mapping, so
 * pointers into it (which are valid in the child) are never reported. */

#define MAX_RANGES 512

typedef struct range {
  uintptr_t start, end;
  char kind; /* 's'tack, 'h'eap, 'c'ode or data */
} range_t;

static struct {
  pthread_once_t once;
  range_t ranges[MAX_RANGES];
  int count;
} own = {PTHREAD_ONCE_INIT, {{0, 0, 0}}, 0};

static void parse_line(const char *line) {
  unsigned long start, end;
  char perms[8] = "", path[256] = "";
  if (sscanf(line, "%lx-%lx %7s %*s %*s %*s %255[^\n]", &start, &end, perms,
             path) < 3)
    return;
  bool special = path[0] == '[' && strcmp(path, "[stack]") != 0 &&
                 strcmp(path, "[heap]") != 0;
  if (perms[3] != 'p' || own.count == MAX_RANGES || special)
    return; /* shared (the arena), or [vdso], [vvar]: nobody's data */
  char kind = strcmp(path, "[stack]") == 0 ? 's'
              : perms[2] == 'x'            ? 'c'
              : path[0] == '/'             ? 'd'
                                           : 'h';
  own.ranges[own.count++] = (range_t){start, end, kind};
}

static void read_maps(void) {
  int fd = mp__fd_high(open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
  if (fd < 0)
    return;
  char buf[8192], line[512];
  size_t used = 0;
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) {
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != '\n') {
        if (used < sizeof line - 1)
          line[used++] = buf[i];
        continue;
      }
      line[used] = 0;
      parse_line(line);
      used = 0;
    }
  }
  close(fd);
}

static const char *kind_name(char kind) {
  return kind == 's'   ? "stack"
         : kind == 'c' ? "code"
         : kind == 'd' ? "data"
                       : "heap";
}

int mp__debug_scan_pointers(const void *bytes, size_t len, const char *what,
                            const char *name) {
  pthread_once(&own.once, read_maps);
  int found = 0;
  const unsigned char *p = bytes;
  for (size_t off = 0; bytes && off + 8 <= len; off += 8) {
    uint64_t word;
    memcpy(&word, p + off, sizeof word);
    for (int i = 0; i < own.count; i++) {
      if (word < own.ranges[i].start || word >= own.ranges[i].end)
        continue;
      found++;
      mp__debug_print(MP_DEBUG_INFO,
                      "warning: the %s of process %s holds at byte %zu a "
                      "pointer into this process's %s (0x%llx): the child "
                      "started with spawn or forkserver cannot use it (pass "
                      "data, or memory from the arena)",
                      what, name, off, kind_name(own.ranges[i].kind),
                      (unsigned long long)word);
      break;
    }
  }
  return found;
}
