/* Fixtures shared by the test programs. */
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "support.h"
#include "testing.h"

void mpt_assert_code(int expected, int actual, const char *expr,
                     const char *file, int line) {
  if (expected == actual)
    return;
  print_error("%s returned %s (%d: %s), expected %s (%d)\n", expr,
              mp_errname(actual), actual, mp_strerror(actual),
              mp_errname(expected), expected);
  _fail(file, line);
}

const char *mpt_method(void) {
  const char *m = getenv("MPROC_START_METHOD");
  return m && *m ? m : "fork";
}

bool mpt_wait_until(bool (*cond)(void *arg), void *arg, double timeout) {
  struct timespec start, now, step = {0, 1000000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    if (cond(arg))
      return true;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((double)(now.tv_sec - start.tv_sec) +
            (double)(now.tv_nsec - start.tv_nsec) / 1e9 >=
        timeout)
      return cond(arg);
    nanosleep(&step, NULL);
  }
}

bool mpt_have_pidfd(void) {
  int fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
  if (fd < 0)
    return false;
  close(fd);
  return true;
}

/* ---- fd and child accounting ------------------------------------------- */

#define MPT_MAX_FDS 1024
static unsigned char fds_before[MPT_MAX_FDS];

static void snapshot_fds(unsigned char *open_fds) {
  memset(open_fds, 0, MPT_MAX_FDS);
  DIR *dir = opendir("/proc/self/fd");
  if (!dir)
    return;
  int self = dirfd(dir);
  struct dirent *e;
  while ((e = readdir(dir))) {
    int fd = atoi(e->d_name);
    if (e->d_name[0] != '.' && fd != self && fd < MPT_MAX_FDS)
      open_fds[fd] = 1;
  }
  closedir(dir);
}

int mpt_setup(void **state) {
  (void)state;
  snapshot_fds(fds_before);
  return 0;
}

static int check_no_children(void) {
  /* The library may keep one helper child of its own (the forkserver);
   * anything else still here is a child the test did not reap. */
  siginfo_t info = {0};
  if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid != 0) {
    print_error("unreaped child %d left by the test\n", (int)info.si_pid);
    return -1;
  }
  return 0;
}

int mpt_teardown(void **state) {
  (void)state;
  unsigned char after[MPT_MAX_FDS];
  snapshot_fds(after);
  int bad = 0;
  for (int fd = 0; fd < MPT_MAX_FDS; fd++) {
    if (after[fd] && !fds_before[fd]) {
      char link[64], target[256] = "?";
      snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
      ssize_t n = readlink(link, target, sizeof target - 1);
      if (n > 0)
        target[n] = 0;
      print_error("fd %d (%s) leaked by the test\n", fd, target);
      bad = -1;
    }
  }
  return check_no_children() | bad;
}

static void warm_up_target(void *arg) {
  (void)arg;
}

/* Opens what the library keeps open for the life of the program (the
 * arena, the resource tracker's end, the forkserver) before the first fd
 * snapshot, so that only what a test opens and leaks shows up. */
static void warm_up(void) {
  void *p = mp_raw_alloc(64);
  if (p)
    mp_raw_free(p);
  /* The resource tracker's end, there from the first named resource. */
  mp_shm_t *shm = mp_shm_open(NULL, true, 64);
  if (shm) {
    mp_shm_unlink(shm);
    mp_shm_close(shm);
  }
  static const char *const methods[] = {"fork", "spawn", "forkserver"};
  for (int i = 0; i < 3; i++) {
    mp_process_opts_t opts = {.ctx = mp_get_context(methods[i])};
    mp_process_t *proc = mp_process_new(warm_up_target, NULL, 0, &opts);
    if (proc && mp_process_start(proc) == 0)
      mp_process_join(proc, MP_FOREVER);
    mp_process_free(proc);
  }
}

int mpt_run(int argc, char **argv, const char *name,
            const struct CMUnitTest *tests, size_t count) {
  int rc = mp_main(argc, argv);
  if (rc != 0) {
    fprintf(stderr, "mp_main: %s\n", mp_strerror(rc));
    return 1;
  }
  warm_up();
  char group[256];
  snprintf(group, sizeof group, "%s [%s]", name, mpt_method());
  return _cmocka_run_group_tests(group, tests, count, NULL, NULL);
}

/* ---- running helper commands ------------------------------------------- */

int mpt_run_command(char *const argv[], double timeout, char **output,
                    int *wait_status) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) < 0)
    return -errno;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return -errno;
  }
  if (pid == 0) {
    dup2(out[1], 1);
    dup2(out[1], 2);
    execv(argv[0], argv);
    _exit(127);
  }
  close(out[1]);
  size_t len = 0, cap = 4096;
  char *buf = malloc(cap);
  int rc = 0;
  struct timespec start;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double spent = (double)(now.tv_sec - start.tv_sec) +
                   (double)(now.tv_nsec - start.tv_nsec) / 1e9;
    if (spent >= timeout) {
      kill(pid, SIGKILL);
      rc = MP_ETIMEDOUT;
      break;
    }
    struct pollfd pfd = {.fd = out[0], .events = POLLIN};
    int ready = poll(&pfd, 1, (int)((timeout - spent) * 1000) + 1);
    if (ready <= 0)
      continue;
    if (len + 1024 > cap)
      buf = realloc(buf, cap *= 2);
    ssize_t n = read(out[0], buf + len, cap - len - 1);
    if (n <= 0)
      break;
    len += (size_t)n;
  }
  buf[len] = 0;
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  if (wait_status)
    *wait_status = status;
  if (output)
    *output = buf;
  else
    free(buf);
  return rc;
}

int mpt_line_index(const char *text, const char *line) {
  size_t want = strlen(line);
  int index = 0;
  for (const char *p = text; *p; index++) {
    const char *end = strchr(p, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == want && memcmp(p, line, n) == 0)
      return index;
    if (!end)
      break;
    p = end + 1;
  }
  return -1;
}

int mpt_count_lines(const char *text, const char *line) {
  size_t want = strlen(line);
  int count = 0;
  for (const char *p = text; *p;) {
    const char *end = strchr(p, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    count += n == want && memcmp(p, line, n) == 0;
    if (!end)
      break;
    p = end + 1;
  }
  return count;
}
