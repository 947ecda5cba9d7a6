/* The tutorial's examples, run as programs: their output and the exit
 * semantics (daemons terminated, other children joined, output flushed
 * once). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "support.h"

static char *run_example(const char *name, int *status) {
  char path[512];
  snprintf(path, sizeof path, "%s/examples/%s", MPROC_BUILD_DIR, name);
  char *argv[] = {path, NULL};
  char *out = NULL;
  assert_mp_ok(mpt_run_command(argv, 60, &out, status));
  return out;
}

static int count_lines(const char *text) {
  int n = 0;
  for (const char *p = text; *p; p++)
    n += *p == '\n';
  return n;
}

/* The three children's blocks, in whatever order they ended. */
static void check_children_blocks(const char *out, const char *base,
                                  const char *id_label) {
  assert_int_equal(mpt_count_lines(out, "sub process run"), 3);
  for (int i = 0; i < 3; i++) {
    char name[96], params[96];
    snprintf(name, sizeof name, "current sub process name : %s-%d", base,
             i + 1);
    snprintf(params, sizeof params, "current sub process params : %d", i);
    int at = mpt_line_index(out, name);
    assert_true(at > 0);
    assert_int_equal(mpt_line_index(out, params), at + 1);
    /* The block is "sub process run", the id line, name, params. */
    const char *line = out;
    for (int k = 0; k < at - 1; k++)
      line = strchr(line, '\n') + 1;
    assert_true(strncmp(line, id_label, strlen(id_label)) == 0);
  }
}

static void test_seed_process(void **state) {
  (void)state;
  int status;
  char *out = run_example("seed_process", &status);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(mpt_line_index(out, "main Process run"), 0);
  assert_int_equal(mpt_line_index(out, "main Process run end"), 1);
  /* Nothing printed twice: the parent flushed before forking. */
  assert_int_equal(mpt_count_lines(out, "main Process run"), 1);
  assert_int_equal(count_lines(out), 2 + 3 * 4);
  check_children_blocks(out, "Process", "current subProcess id : ");
  free(out);
}

static void test_seed_subclass(void **state) {
  (void)state;
  int status;
  char *out = run_example("seed_subclass", &status);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(mpt_line_index(out, "main process run"), 0);
  assert_int_equal(mpt_line_index(out, "main process run end"), 1);
  assert_int_equal(count_lines(out), 2 + 3 * 4);
  check_children_blocks(out, "TaskClass", "current sub process id : ");
  free(out);
}

static void test_seed_daemon(void **state) {
  (void)state;
  int status;
  char *out = run_example("seed_daemon", &status);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_int_equal(mpt_line_index(out, "main process start run"), 0);
  int carry = mpt_line_index(out, "main process carry on run");
  int end = mpt_line_index(out, "main process run end");
  assert_true(carry > 0 && end == carry + 1);
  /* The daemons were terminated at exit: had they been left running, they
   * would have written "run end" into the pipe read here until EOF. */
  int started = 0;
  for (int i = 1; i <= 3; i++) {
    char line[64];
    snprintf(line, sizeof line, "TaskClass-%d run end", i);
    assert_int_equal(mpt_count_lines(out, line), 0);
    snprintf(line, sizeof line, "TaskClass-%d start run", i);
    started += mpt_count_lines(out, line);
  }
  assert_int_equal(count_lines(out), 3 + started);
  free(out);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_seed_process),
      mpt_test(test_seed_subclass),
      mpt_test(test_seed_daemon),
  };
  return MPT_RUN(argc, argv, tests);
}
