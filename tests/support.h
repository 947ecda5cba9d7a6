/* Fixtures shared by the test programs. */
#ifndef MPROC_TEST_SUPPORT_H
#define MPROC_TEST_SUPPORT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "mproc.h"

/* assert_int_equal for mproc codes, printing names on failure. */
#define assert_mp(expected, actual)                                            \
  mpt_assert_code((expected), (actual), #actual, __FILE__, __LINE__)
#define assert_mp_ok(actual) assert_mp(0, (actual))
void mpt_assert_code(int expected, int actual, const char *expr,
                     const char *file, int line);

/* Per-test setup/teardown: records the open fds and checks at the end that
 * the test closed every fd it opened and left no unreaped child. */
int mpt_setup(void **state);
int mpt_teardown(void **state);

/* A test with the fd/child accounting around it. */
#define mpt_test(f) cmocka_unit_test_setup_teardown(f, mpt_setup, mpt_teardown)

/* Runs a cmocka group with mpt_setup/mpt_teardown around every test, after
 * mp_main(). Use as the whole body of main. */
#define MPT_RUN(argc, argv, tests)                                             \
  mpt_run((argc), (argv), #tests, (tests), sizeof(tests) / sizeof((tests)[0]))
int mpt_run(int argc, char **argv, const char *name,
            const struct CMUnitTest *tests, size_t count);

/* Polls until cond(arg) holds or timeout seconds passed: for states a test
 * waits for (a child got somewhere, a worker was replaced), never for
 * ordering. Returns whether cond held. */
bool mpt_wait_until(bool (*cond)(void *arg), void *arg, double timeout);

/* Whether this system has pidfds (not under valgrind 3.19, which lacks
 * the call; mproc then watches children through pipes). */
bool mpt_have_pidfd(void);

/* The start method under test (MPROC_START_METHOD, default "fork"). */
const char *mpt_method(void);

/* Runs a command, captures its stdout+stderr (malloc'd, NUL-terminated) and
 * its wait status. Returns 0 or -errno. Gives up (killing the command) after
 * timeout seconds and returns MP_ETIMEDOUT. */
int mpt_run_command(char *const argv[], double timeout, char **output,
                    int *wait_status);

/* Counts the lines of text equal to line. */
int mpt_count_lines(const char *text, const char *line);
/* Index of the first line equal to line, or -1. */
int mpt_line_index(const char *text, const char *line);

#endif
