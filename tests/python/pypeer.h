/* Running Python peers from the C tests: finding an interpreter of a given
 * version, starting a script with some of the test's fds inherited (at the
 * same numbers), reading what it prints, and reaping it. Header-only
 * (static inline), shared by test_conn.c and test_listener.c. */
#ifndef MPROC_TEST_PYPEER_H
#define MPROC_TEST_PYPEER_H

#include <fcntl.h>
#include <glob.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support.h"

#define PYPEER_SCRIPT(name) MPROC_SOURCE_DIR "/tests/python/" name

/* The bytes both sides agree on (pattern() in conn_peer.py and
 * listener_peer.py): byte i is (j * 7 + j / 256) & 0xff with j = i mod 65536.
 * Returns n malloc'ed bytes. */
static inline uint8_t *pypeer_pattern(size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  size_t block = n < 65536 ? n : 65536;
  for (size_t i = 0; i < block; i++)
    p[i] = (uint8_t)((i * 7 + i / 256) & 0xff);
  for (size_t at = block; at < n; at += block)
    memcpy(p + at, p, n - at < block ? n - at : block);
  return p;
}

static inline bool pypeer_pattern_ok(const uint8_t *p, size_t n) {
  uint8_t *want = pypeer_pattern(n);
  bool ok = memcmp(p, want, n) == 0;
  free(want);
  return ok;
}

/* True if `exe` runs and reports version `want` ("3.12"; "3" accepts any
 * Python 3). Shims that exist but do not run (pyenv without that version
 * selected) fail here. */
static inline bool pypeer_check(const char *exe, const char *want) {
  char *const argv[] = {(char *)exe, "-c",
                        "import sys; print('%d.%d' % sys.version_info[:2])",
                        NULL};
  char *out = NULL;
  int status = 0;
  if (access(exe, X_OK) != 0 ||
      mpt_run_command(argv, 20.0, &out, &status) != 0) {
    free(out);
    return false;
  }
  bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 &&
            strncmp(out, want, strlen(want)) == 0 &&
            (strcmp(want, "3") == 0 || out[strlen(want)] == '\n');
  free(out);
  return ok;
}

/* Finds an interpreter: "python<version>" on PATH, then pyenv's versions
 * directory ($PYENV_ROOT or ~/.pyenv), then /usr/local/bin and /usr/bin.
 * version is "3" (the default python3) or "3.12". Returns true and the path
 * in out. */
static inline bool pypeer_find(const char *version, char *out, size_t cap) {
  char name[32];
  snprintf(name, sizeof name, "python%s", version);
  const char *path = getenv("PATH");
  char *dirs = strdup(path ? path : "");
  for (char *save = NULL, *dir = strtok_r(dirs, ":", &save); dir;
       dir = strtok_r(NULL, ":", &save)) {
    snprintf(out, cap, "%s/%s", dir, name);
    if (pypeer_check(out, version)) {
      free(dirs);
      return true;
    }
  }
  free(dirs);
  const char *root = getenv("PYENV_ROOT"), *home = getenv("HOME");
  char pattern[512];
  for (int i = 0; i < 4; i++) {
    if (i == 0 && root)
      snprintf(pattern, sizeof pattern, "%s/versions/%s*/bin/%s", root, version,
               name);
    else if (i == 1 && home)
      snprintf(pattern, sizeof pattern, "%s/.pyenv/versions/%s*/bin/%s", home,
               version, name);
    else if (i >= 2)
      snprintf(pattern, sizeof pattern, "/usr%s/bin/%s", i == 2 ? "/local" : "",
               name);
    else
      continue;
    glob_t g;
    if (glob(pattern, 0, NULL, &g) != 0)
      continue;
    for (size_t k = g.gl_pathc; k-- > 0;) { /* the newest first */
      if (pypeer_check(g.gl_pathv[k], version)) {
        snprintf(out, cap, "%s", g.gl_pathv[k]);
        globfree(&g);
        return true;
      }
    }
    globfree(&g);
  }
  return false;
}

/* pypeer_find for a test of one version: when there is no such Python,
 * says that its interop is not tested and returns false (the test then
 * skips). */
static inline bool pypeer_find_for_test(const char *version, char *out,
                                        size_t cap) {
  if (pypeer_find(version, out, cap))
    return true;
  print_message("[  SKIPPED ] python%s not found: its interop is not "
                "tested\n",
                version);
  return false;
}

/* A started Python process. */
typedef struct pypeer {
  pid_t pid;
  int out; /* read end of its stdout, or -1 */
} pypeer_t;

/* Starts argv (argv[0] the interpreter) with the fds in keep inherited at
 * their numbers (their close-on-exec flag is cleared in the child only).
 * With capture, its stdout comes to peer->out; stderr stays the test's, so
 * a traceback shows in the test's output. Returns 0 or -errno. */
static inline int pypeer_start(pypeer_t *peer, char *const argv[],
                               const int *keep, int nkeep, bool capture) {
  int out[2] = {-1, -1};
  peer->pid = -1;
  peer->out = -1;
  if (capture && pipe2(out, O_CLOEXEC) < 0)
    return -errno;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    if (capture) {
      close(out[0]);
      close(out[1]);
    }
    return -err;
  }
  if (pid == 0) {
    for (int i = 0; i < nkeep; i++)
      fcntl(keep[i], F_SETFD, 0);
    if (capture)
      dup2(out[1], STDOUT_FILENO);
    execv(argv[0], argv);
    _exit(127);
  }
  if (capture)
    close(out[1]);
  peer->pid = pid;
  peer->out = out[0];
  return 0;
}

/* Reads one line of the peer's stdout into buf (without the newline),
 * waiting at most timeout seconds. Returns 0, MP_ETIMEDOUT or MP_ECLOSED. */
static inline int pypeer_read_line(pypeer_t *peer, char *buf, size_t cap,
                                   double timeout) {
  size_t len = 0;
  struct timespec start, now;
  clock_gettime(CLOCK_MONOTONIC, &start);
  while (len + 1 < cap) {
    clock_gettime(CLOCK_MONOTONIC, &now);
    double left = timeout - (double)(now.tv_sec - start.tv_sec) -
                  (double)(now.tv_nsec - start.tv_nsec) / 1e9;
    struct pollfd p = {.fd = peer->out, .events = POLLIN};
    if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0)
      return MP_ETIMEDOUT;
    char ch;
    ssize_t n = read(peer->out, &ch, 1);
    if (n <= 0)
      return MP_ECLOSED;
    if (ch == '\n')
      break;
    buf[len++] = ch;
  }
  buf[len] = 0;
  return 0;
}

/* Waits for the peer to exit (killing it after timeout seconds) and
 * returns its wait status; closes its stdout pipe. */
static inline int pypeer_finish(pypeer_t *peer, double timeout) {
  int status = 0;
  struct timespec start, now, pause = {0, 5 * 1000 * 1000};
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (;;) {
    pid_t r = waitpid(peer->pid, &status, WNOHANG);
    if (r == peer->pid || (r < 0 && errno != EINTR))
      break;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if ((double)(now.tv_sec - start.tv_sec) > timeout) {
      fprintf(stderr, "python peer %d did not finish: killed\n",
              (int)peer->pid);
      kill(peer->pid, SIGKILL);
      while (waitpid(peer->pid, &status, 0) < 0 && errno == EINTR)
        ;
      break;
    }
    nanosleep(&pause, NULL);
  }
  if (peer->out >= 0)
    close(peer->out);
  peer->out = -1;
  return status;
}

static inline bool pypeer_exited_ok(int status) {
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* The Python versions the interop tests of Python-defined formats run
 * against (ShareableList, send_handle): each one found on the machine. */
static const char *const pypeer_versions[] = {"3.11", "3.12", "3.13"};

/* Runs fn(exe, version) with every interpreter of pypeer_versions found,
 * saying which are missing; skips the test when there is none. */
static inline void pypeer_each_version(void (*fn)(const char *exe,
                                                  const char *version)) {
  int found = 0;
  char exe[512];
  for (size_t i = 0; i < sizeof pypeer_versions / sizeof pypeer_versions[0];
       i++) {
    if (!pypeer_find(pypeer_versions[i], exe, sizeof exe)) {
      print_message("[     INFO ] no python%s: not tested\n",
                    pypeer_versions[i]);
      continue;
    }
    found++;
    fn(exe, pypeer_versions[i]);
  }
  if (!found)
    skip();
}

#endif
