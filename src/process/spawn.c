/* The spawn start method: a child is a fresh exec of the running program
 * (/proc/self/exe), the C counterpart of Python's spawn_main. What it
 * needs comes as its start data (start_data.c); mp_main() runs it
 * (main.c). */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testing.h"
#include "process/start.h"

extern char **environ;

/* The program a spawned child runs: always this one; tests replace it to
 * check that an exec failure comes back as an error code. */
const char *mp__spawn_path = "/proc/self/exe";

/* The parent's own command line is passed on unchanged, so that argv[0]
 * and the arguments are the same in the child (as in Python's spawn). */
/* The whole of /proc/self/cmdline (malloc'd, NUL-terminated; its length
 * in *length), or NULL. */
static char *read_cmdline(size_t *length) {
  int fd = mp__fd_high(open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC));
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap + 1);
  while (fd >= 0 && buf) {
    if (len == cap) {
      char *bigger = realloc(buf, (cap *= 2) + 1);
      if (!bigger) {
        free(buf);
        buf = NULL;
        break;
      }
      buf = bigger;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  if (fd >= 0)
    close(fd);
  if (buf)
    buf[len] = 0;
  *length = len;
  return buf;
}

/* The command line is read once and kept: opening a /proc file costs more
 * than the rest of a start's own system calls together, and a program's
 * arguments stay what they were (a fork child has the same). Published
 * with one compare-and-swap, without a lock that a fork could catch held;
 * a thread that loses the race frees its own copy. Never freed. */
static struct {
  _Atomic(char *) args;  /* NULL until read */
  _Atomic size_t length; /* stored before args is published */
} cmdline;

/* The cached command line and its length, or NULL without memory. */
static const char *command_line(size_t *length) {
  char *args = atomic_load(&cmdline.args);
  if (!args) {
    size_t len;
    char *mine = read_cmdline(&len);
    if (!mine)
      return NULL;
    char *expected = NULL;
    atomic_store(&cmdline.length, len);
    if (atomic_compare_exchange_strong(&cmdline.args, &expected, mine))
      args = mine;
    else {
      free(mine); /* another thread published the same first */
      args = expected;
    }
  }
  *length = atomic_load(&cmdline.length);
  return args;
}

static int build_argv_env(const char *marker_value, char ***argv_out,
                          char ***envp_out) {
  /* argv: /proc/self/cmdline, NUL-separated, read whole. */
  size_t len;
  const char *args = command_line(&len);
  if (!args)
    return -ENOMEM;
  size_t argc = 0;
  for (size_t i = 0; i < len; i++)
    argc += args[i] == 0;
  size_t envc = 0;
  while (environ[envc])
    envc++;
  char **argv = calloc(argc + 2, sizeof *argv);
  char **envp = calloc(envc + 2, sizeof *envp);
  size_t marker_size = sizeof MP__START_ENV + strlen(marker_value) + 1;
  char *marker = malloc(marker_size);
  if (!argv || !envp || !marker) {
    free(argv), free(envp), free(marker);
    return -ENOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < len; i += strlen(args + i) + 1)
    argv[k++] = (char *)args + i;
  if (k == 0)
    argv[k++] = (char *)args; /* an empty argv[0] */
  size_t e = 0;
  for (size_t i = 0; i < envc; i++)
    if (strncmp(environ[i], MP__START_ENV "=", sizeof MP__START_ENV) != 0)
      envp[e++] = environ[i];
  snprintf(marker, marker_size, MP__START_ENV "=%s", marker_value);
  envp[e++] = marker;
  *argv_out = argv;
  *envp_out = envp;
  return 0;
}

static void free_argv_env(char **argv, char **envp) {
  for (size_t i = 0; envp[i]; i++)
    if (strncmp(envp[i], MP__START_ENV "=", sizeof MP__START_ENV) == 0)
      free(envp[i]);
  free(argv);
  free(envp);
}

/* posix_spawn of this program with MP__START_ENV=marker_value and fds[]
 * (start_fd too, unless -1) at the same numbers. */
static int exec_with_marker(const char *marker_value, int start_fd,
                            const int *fds, int n, pid_t *pid_out) {
  char **argv, **envp;
  int rc = build_argv_env(marker_value, &argv, &envp);
  if (rc < 0)
    return rc;
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  /* dup2 of an fd onto itself clears its FD_CLOEXEC in the child only. */
  if (start_fd >= 0)
    posix_spawn_file_actions_adddup2(&actions, start_fd, start_fd);
  for (int i = 0; i < n; i++)
    if (fds[i] >= 0)
      posix_spawn_file_actions_adddup2(&actions, fds[i], fds[i]);
  /* The child starts with no signal blocked and default dispositions for
   * whatever the parent catches, as a fresh program should. */
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid;
  int err = posix_spawn(&pid, mp__spawn_path, &actions, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  free_argv_env(argv, envp);
  if (err)
    return -err;
  *pid_out = pid;
  return 0;
}

int mp__exec_self(char mode, int start_fd, const int *fds, int n,
                  pid_t *pid_out) {
  char marker[32];
  snprintf(marker, sizeof marker, "%c:%d", mode, start_fd);
  return exec_with_marker(marker, start_fd, fds, n, pid_out);
}

/* A child whose start data is too big for the arena gets it in a memfd. */
static int start_spawn_memfd(mp_process_t *p, const mp_process_t *self) {
  int *fds, n;
  int start_fd = mp__start_data_write(p, self, -1, &fds, &n);
  if (start_fd < 0)
    return start_fd;
  pid_t pid;
  int rc = mp__exec_self('c', start_fd, fds, n, &pid);
  free(fds);
  close(start_fd);
  if (rc < 0)
    return rc;
  p->pid = pid;
  return mp__watch_child(p);
}

/* The child's start data goes in a block of the arena, which it maps
 * anyway: a memfd would cost its making, writing, reading and freeing in
 * every start. */
int mp__start_spawn(mp_process_t *p, const mp_process_t *self) {
  int *fds, n;
  char marker[96];
  void *block;
  int rc = mp__start_data_put(p, self, &block, marker, sizeof marker, &fds, &n);
  if (rc == -E2BIG)
    return start_spawn_memfd(p, self);
  if (rc < 0)
    return rc;
  pid_t pid;
  rc = exec_with_marker(marker, -1, fds, n, &pid);
  free(fds);
  if (rc == 0) {
    p->pid = pid;
    rc = mp__watch_child(p); /* on failure the child is reaped there */
  }
  if (rc < 0)
    mp__shm_free(block);
  else
    p->start_block = block;
  return rc;
}
