/* The NULL-handle rule of the guide's conventions, for every public
 * function at once: called with a NULL handle (and harmless other
 * arguments), a function returns its error (MP_EINVAL, NULL, false, 0)
 * and never crashes or hangs. The list of calls is generated from the
 * public headers at build time (gen_null_handles.py), so a function added
 * later is covered without being listed here. Each call runs in a child of
 * its own (a plain fork), so one crash names its function and the others
 * still run. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "null_handles.h"
#include "support.h"

#define CALL_TIMEOUT 20 /* seconds: a call that blocks on NULL is a hang */

/* 0 when the call returned; otherwise the signal that ended it (SIGALRM:
 * it hung). */
static int run_in_child(const mpt_null_call_t *c) {
  pid_t pid = fork();
  if (pid == 0) {
    /* A crash is a signal here, not cmocka's report of one. */
    int crashes[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
    for (size_t i = 0; i < sizeof crashes / sizeof crashes[0]; i++)
      signal(crashes[i], SIG_DFL);
    int null = open("/dev/null", O_WRONLY);
    dup2(null, STDOUT_FILENO);
    dup2(null, STDERR_FILENO);
    alarm(CALL_TIMEOUT);
    c->call();
    _exit(0);
  }
  assert_true(pid > 0);
  int status;
  while (waitpid(pid, &status, 0) < 0)
    ;
  return WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status) ? -1 : 0;
}

static void test_every_function_survives_a_null_handle(void **state) {
  (void)state;
  assert_true(mpt_null_call_count > 150); /* the generator found them */
  size_t failed = 0;
  for (size_t i = 0; i < mpt_null_call_count; i++) {
    int sig = run_in_child(&mpt_null_calls[i]);
    if (sig != 0) {
      print_message("%s(NULL, ...): %s\n", mpt_null_calls[i].name,
                    sig < 0 ? "exited nonzero" : strsignal(sig));
      failed++;
    }
  }
  assert_int_equal(failed, 0);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_every_function_survives_a_null_handle),
  };
  return MPT_RUN(argc, argv, tests);
}
