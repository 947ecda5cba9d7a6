/* Safety (issue 11): what a user gets wrong, or an unusual environment,
 * never brings the program down, and no child ever runs main() again. */
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"
#include "testing.h"

/* ---- helpers -------------------------------------------------------------- */

/* Runs fn in a forked helper process and returns its exit status (or 128 +
 * the signal). The helper is killed if it has not ended after 60 s. */
static int in_helper(int (*fn)(void), double timeout) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0)
    _exit(fn());
  int status = 0;
  for (double waited = 0; waitpid(pid, &status, WNOHANG) == 0;
       waited += 0.01) {
    if (waited > timeout) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;
    }
    usleep(10000);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static bool fd_is_open(int fd) {
  return fcntl(fd, F_GETFD) >= 0;
}

/* ---- 1. fds 0, 1 and 2 closed in the parent -------------------------------- */

static void set_flag(void *arg) {
  atomic_store(*(_Atomic int **)arg, 1);
}

/* In a helper whose fds 0-2 are closed: every mproc fd is above 2 and a
 * child of each method runs its target (and nothing else). Exit status:
 * 0 when all is well, a step number otherwise. */
static int start_with_stdio_closed(void) {
  _Atomic int *flag = mp_raw_alloc(sizeof *flag);
  if (!flag)
    return 1;
  close(0);
  close(1);
  close(2);
  mp_conn_t *a, *b;
  if (mp_pipe(&a, &b, true) != 0)
    return 2;
  for (int i = 0; i < 2; i++) {
    mp_process_t *p = mp_process_new(set_flag, &flag, sizeof flag, NULL);
    if (!p || mp_process_start(p) != 0)
      return 3;
    int code = -1;
    if (mp_process_join(p, 60) != 0 || mp_process_exitcode(p, &code) != 0 ||
        code != 0)
      return 4;
    mp_process_free(p);
    if (!atomic_exchange(flag, 0))
      return 5;
  }
  /* Nothing of the library took 0, 1 or 2. */
  if (fd_is_open(0) || fd_is_open(1) || fd_is_open(2))
    return 6;
  mp_conn_free(a);
  mp_conn_free(b);
  return 0;
}

static void test_stdio_closed_in_parent(void **state) {
  (void)state;
  assert_int_equal(in_helper(start_with_stdio_closed, 120), 0);
}

/* A program started with the marker but without usable start data (here:
 * this test program, with a marker naming fd 1 or no fd at all) prints why
 * and exits with status 70 without running main(). */
static void test_marker_without_start_data(void **state) {
  (void)state;
  const char *markers[] = {"c:1", "c:0", "s:2", "c:987", "x"};
  for (size_t i = 0; i < sizeof markers / sizeof *markers; i++) {
    char *argv[] = {"/proc/self/exe", NULL};
    char *out = NULL;
    int status = 0;
    setenv("MPROC_SPAWN", markers[i], 1);
    int rc = mpt_run_command(argv, 60, &out, &status);
    unsetenv("MPROC_SPAWN");
    assert_mp_ok(rc);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 70);
    assert_non_null(strstr(out, "start data"));
    /* main() (cmocka's group banner) never ran. */
    assert_null(strstr(out, "test_safety"));
    free(out);
  }
}

/* ---- 2. a connection passed on to a grandchild ---------------------------- */

typedef struct relay_arg {
  mp_conn_t *conn;
  int depth;
} relay_arg_t;

static void relay(void *arg) {
  relay_arg_t a = *(relay_arg_t *)arg;
  if (a.depth == 0) {
    int rc = mp_conn_send_bytes(a.conn, "grandchild", 10);
    exit(rc == 0 ? 0 : 10);
  }
  a.depth--;
  mp_process_t *p = mp_process_new(relay, &a, sizeof a, NULL);
  int code = -1;
  if (!p || mp_process_start(p) != 0 || mp_process_join(p, 60) != 0 ||
      mp_process_exitcode(p, &code) != 0)
    exit(20);
  mp_process_free(p);
  exit(code);
}

static void test_connection_reaches_grandchild(void **state) {
  (void)state;
  mp_conn_t *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, true));
  relay_arg_t arg = {b, 2}; /* a great-grandchild sends */
  mp_process_t *p = mp_process_new(relay, &arg, sizeof arg, NULL);
  assert_mp_ok(mp_process_start(p));
  int rc = mp_process_join(p, 120);
  if (rc != 0)
    mp_process_kill(p), mp_process_join(p, MP_FOREVER);
  assert_mp_ok(rc);
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  assert_int_equal(code, 0);
  mp_process_free(p);
  void *buf;
  size_t len;
  assert_mp_ok(mp_conn_recv_bytes(a, &buf, &len));
  assert_int_equal(len, 10);
  assert_memory_equal(buf, "grandchild", 10);
  mp_free(buf);
  mp_conn_free(a);
  mp_conn_free(b);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_stdio_closed_in_parent),
      mpt_test(test_marker_without_start_data),
      mpt_test(test_connection_reaches_grandchild),
  };
  return MPT_RUN(argc, argv, tests);
}
