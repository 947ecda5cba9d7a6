/* Start methods and contexts: what differs between fork, spawn and
 * forkserver, tested with explicit contexts (this program runs once). */
#include <dlfcn.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <dirent.h>
#include <unistd.h>

#include "support.h"
#include "testing.h"

/* Internal hooks, linked from the static library. */

void mpt_lib_target(void *arg); /* tests/helpers/target_lib.c */
typedef struct lib_report {
  int value;
  int pid;
} lib_report_t;

static const char *const methods[] = {"fork", "spawn", "forkserver"};

typedef struct report {
  int value;
  int fds;
  int sockets;
  pid_t pid;
  char method[32];
} report_t;

static mp_process_t *start_in(const char *method, void (*target)(void *),
                              const void *arg, size_t size) {
  mp_process_opts_t opts = {.ctx = mp_get_context(method)};
  assert_non_null(opts.ctx);
  mp_process_t *p = mp_process_new(target, arg, size, &opts);
  assert_non_null(p);
  assert_mp_ok(mp_process_start(p));
  return p;
}

static int finish(mp_process_t *p) {
  int rc = mp_process_join(p, 60);
  if (rc != 0) {
    mp_process_kill(p);
    mp_process_join(p, MP_FOREVER);
  }
  assert_mp_ok(rc);
  int code = -1;
  assert_mp_ok(mp_process_exitcode(p, &code));
  mp_process_free(p);
  return code;
}

/* ---- contexts ---------------------------------------------------------- */

static void test_contexts(void **state) {
  (void)state;
  errno = 0;
  assert_null(mp_get_context("threads"));
  assert_int_equal(errno, EINVAL);
  for (int i = 0; i < 3; i++) {
    mp_context_t *ctx = mp_get_context(methods[i]);
    assert_non_null(ctx);
    assert_string_equal(mp_context_start_method(ctx), methods[i]);
  }
  assert_non_null(mp_get_context(NULL));
  const char *all[4] = {0};
  assert_int_equal(mp_get_all_start_methods(all, 4), 3);
  assert_int_equal(mp_get_all_start_methods(NULL, 0), 3);
  /* The default comes first, as in Python. */
  assert_string_equal(all[0], mpt_method());
  bool seen[3] = {0};
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 3; k++)
      seen[k] |= strcmp(all[i], methods[k]) == 0;
  assert_true(seen[0] && seen[1] && seen[2]);
}

/* set_start_method changes global state: check it in a child. */
static void check_set_start_method(void *arg) {
  report_t *r = *(report_t **)arg;
  int ok = 1;
  /* The child's method is fixed (inherited from its parent). */
  ok &= mp_set_start_method("spawn", false) == MP_ESTATE;
  ok &= mp_set_start_method("spawn", true) == 0;
  ok &= strcmp(mp_get_start_method(), "spawn") == 0;
  ok &= mp_set_start_method("fork", false) == MP_ESTATE;
  ok &= mp_set_start_method("bogus", true) == MP_EINVAL;
  ok &= mp_set_start_method(NULL, true) == 0; /* unset */
  ok &= mp_set_start_method("forkserver", false) == 0;
  ok &= strcmp(mp_get_start_method(), "forkserver") == 0;
  r->value = ok;
}

static void test_set_start_method(void **state) {
  (void)state;
  report_t *r = mp_raw_alloc(sizeof *r);
  assert_int_equal(
      finish(start_in("fork", check_set_start_method, &r, sizeof r)), 0);
  assert_int_equal(r->value, 1);
  mp_raw_free(r);
}

/* ---- what each method gives the child ------------------------------------ */

static int changed_after_load; /* 0 in a fresh exec of the program */

static void report_method(void *arg) {
  report_t *r = *(report_t **)arg;
  r->value = changed_after_load;
  snprintf(r->method, sizeof r->method, "%s", mp_get_start_method());
}

static void test_each_method_is_what_it_says(void **state) {
  (void)state;
  report_t *r = mp_raw_alloc(sizeof *r);
  changed_after_load = 1;
  for (int i = 0; i < 3; i++) {
    r->value = -1;
    assert_int_equal(finish(start_in(methods[i], report_method, &r, sizeof r)),
                     0);
    /* fork copies the parent's memory; spawn and the forkserver's children
     * are fresh programs. */
    assert_int_equal(r->value, i == 0 ? 1 : 0);
    /* A child started through a context has its method as its default,
     * as in Python (Process._bootstrap forces it). */
    assert_string_equal(r->method, methods[i]);
  }
  /* One started with no context has its parent's default. */
  mp_process_t *p = mp_process_new(report_method, &r, sizeof r, NULL);
  assert_non_null(p);
  assert_mp_ok(mp_process_start(p));
  assert_int_equal(finish(p), 0);
  assert_string_equal(r->method, mp_get_start_method());
  changed_after_load = 0;
  mp_raw_free(r);
}

static void test_target_in_linked_library(void **state) {
  (void)state;
  lib_report_t *r = mp_raw_alloc(sizeof *r);
  for (int i = 0; i < 3; i++) {
    r->value = 0;
    mp_process_t *p = start_in(methods[i], mpt_lib_target, &r, sizeof r);
    pid_t pid = mp_process_pid(p);
    assert_int_equal(finish(p), 0);
    assert_int_equal(r->value, 4242);
    assert_int_equal(r->pid, pid);
  }
  mp_raw_free(r);
}

static void test_target_in_dlopened_library(void **state) {
  (void)state;
  void *lib = dlopen(MPT_PLUGIN, RTLD_NOW);
  assert_non_null(lib);
  void (*target)(void *);
  *(void **)&target = dlsym(lib, "mpt_lib_target");
  assert_non_null(target);
  lib_report_t *r = mp_raw_alloc(sizeof *r);
  for (int i = 0; i < 3; i++) {
    r->value = 0;
    assert_int_equal(finish(start_in(methods[i], target, &r, sizeof r)), 0);
    assert_int_equal(r->value, 4242);
  }
  mp_raw_free(r);
  dlclose(lib);
}

/* ---- set_forkserver_preload ------------------------------------------------
 * Checked in fork children: each starts its own forkserver (a fresh program)
 * after setting the list or not, and the server's child looks whether the
 * plugin is loaded already. */

typedef struct preload_args {
  report_t *report;
  bool preload;
} preload_args_t;

static void report_plugin_loaded(void *arg) {
  report_t *r = *(report_t **)arg;
  void *lib = dlopen(MPT_PLUGIN, RTLD_NOW | RTLD_NOLOAD);
  r->value = lib != NULL;
  if (lib)
    dlclose(lib);
}

static void start_server_child(void *arg) {
  preload_args_t *a = arg;
  const char *paths[] = {"/nonexistent/libmissing.so", MPT_PLUGIN};
  if (a->preload && mp_set_forkserver_preload(paths, 2) != 0)
    exit(3);
  mp_process_opts_t opts = {.ctx = mp_get_context("forkserver")};
  mp_process_t *p =
      mp_process_new(report_plugin_loaded, &a->report, sizeof a->report, &opts);
  if (!p || mp_process_start(p) != 0 || mp_process_join(p, 60) != 0)
    exit(4);
  int code = -1;
  mp_process_exitcode(p, &code);
  mp_process_free(p);
  exit(code == 0 ? 0 : 5);
}

static void test_forkserver_preload(void **state) {
  (void)state;
  assert_mp(MP_EINVAL, mp_set_forkserver_preload(NULL, 1));
  const char *bad[] = {MPT_PLUGIN, ""};
  assert_mp(MP_EINVAL, mp_set_forkserver_preload(bad, 2));
  assert_mp_ok(mp_set_forkserver_preload(NULL, 0));
  preload_args_t a = {.report = mp_raw_alloc(sizeof(report_t))};
  for (int preload = 0; preload < 2; preload++) {
    a.preload = preload;
    a.report->value = -1;
    assert_int_equal(finish(start_in("fork", start_server_child, &a, sizeof a)),
                     0);
    assert_int_equal(a.report->value, preload);
  }
  mp_raw_free(a.report);
}

/* ---- spawn's failures ------------------------------------------------------
 */

static void do_nothing(void *arg) {
  (void)arg;
}

static void test_exec_failure_is_an_error_code(void **state) {
  (void)state;
  const char *saved = mp__spawn_path;
  mp__spawn_path = "/nonexistent/program";
  mp_process_opts_t opts = {.ctx = mp_get_context("spawn")};
  mp_process_t *p = mp_process_new(do_nothing, NULL, 0, &opts);
  int rc = mp_process_start(p);
  mp__spawn_path = saved;
  assert_mp(-ENOENT, rc);
  assert_false(mp_process_is_alive(p));
  assert_mp(MP_ESTATE, mp_process_join(p, 0));
  /* Not started: it can be started once the cause is gone. */
  assert_mp_ok(mp_process_start(p));
  assert_int_equal(finish(p), 0);
}

static void test_missing_mp_main_is_a_clear_error(void **state) {
  (void)state;
  char *argv[] = {MPT_NO_MAIN, NULL};
  char *out = NULL;
  int status;
  assert_mp_ok(mpt_run_command(argv, 60, &out, &status));
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  /* main() ran once: spawn and the forkserver refuse to start a child that
   * would run it again, with their own code and a message; fork works. */
  assert_int_equal(mpt_count_lines(out, "main runs in pid-independent line"),
                   1);
  assert_non_null(strstr(out, "did not call mp_main"));
  assert_int_equal(mpt_count_lines(out, "spawn: start=MP_ENOMAIN exitcode=-1"),
                   1);
  assert_int_equal(
      mpt_count_lines(out, "forkserver: start=MP_ENOMAIN exitcode=-1"), 1);
  assert_int_equal(mpt_count_lines(out, "fork: start=OK exitcode=0"), 1);
  assert_int_equal(mpt_count_lines(out, "target ran"), 1);
  free(out);
}

/* ---- spawn does not grow with the parent ------------------------------------
 */

static void count_fds(void *arg) {
  report_t *r = *(report_t **)arg;
  DIR *dir = opendir("/proc/self/fd");
  struct dirent *e;
  while (dir && (e = readdir(dir))) {
    if (e->d_name[0] == '.')
      continue;
    char link[300], target[256];
    snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n > 0) {
      target[n] = 0;
      r->sockets += strncmp(target, "socket:", 7) == 0;
    }
    r->fds++;
  }
  if (dir)
    closedir(dir);
  r->fds--; /* the directory's own fd */
}

static void test_spawn_with_10000_open_fds(void **state) {
  (void)state;
  struct rlimit lim;
  getrlimit(RLIMIT_NOFILE, &lim);
  struct rlimit raised = {lim.rlim_max, lim.rlim_max};
  if (lim.rlim_max < 10100 || setrlimit(RLIMIT_NOFILE, &raised) != 0) {
    skip();
    return;
  }
  int base = open("/dev/null", O_RDONLY); /* no CLOEXEC: as a careless app */
  assert_true(base >= 0);
  int first = fcntl(base, F_DUPFD, 100);
  for (int i = 1; i < 10000; i++)
    assert_true(fcntl(base, F_DUPFD, first + i) >= 0);
  report_t *r = mp_raw_alloc(sizeof *r);
  for (int i = 1; i < 3; i++) {
    memset(r, 0, sizeof *r);
    assert_int_equal(finish(start_in(methods[i], count_fds, &r, sizeof r)), 0);
    /* 0-2, the arena, the parent's pidfd and the resource tracker's end
     * (a socket: mpt_run's warm-up made a named segment); none of the
     * 10,000. */
    assert_true(r->fds <= 7);
    assert_int_equal(r->sockets, 1);
  }
  mp_raw_free(r);
  if (syscall(SYS_close_range, first, first + 9999, 0) < 0) /* < 5.9 */
    for (int i = 0; i < 10000; i++)
      close(first + i);
  close(base);
  setrlimit(RLIMIT_NOFILE, &lim);
}

/* Arg bytes above what a spawned child's start data takes in the arena
 * (64 KiB) come in a memfd: the child gets every byte of both forms. */
typedef struct big_arg {
  report_t *report;
  size_t size;
  unsigned char bytes[];
} big_arg_t;

static void check_big_arg(void *arg) {
  big_arg_t *a = arg;
  int good = 1;
  for (size_t i = 0; i < a->size; i++)
    good &= a->bytes[i] == (unsigned char)(i * 7 + a->size);
  a->report->value = good;
}

static void test_spawn_with_big_and_small_arg(void **state) {
  (void)state;
  report_t *r = mp_raw_alloc(sizeof *r);
  assert_non_null(r);
  const size_t sizes[] = {100, 300 * 1024};
  for (size_t s = 0; s < 2; s++) {
    big_arg_t *a = malloc(sizeof *a + sizes[s]);
    assert_non_null(a);
    a->report = r;
    a->size = sizes[s];
    for (size_t i = 0; i < a->size; i++)
      a->bytes[i] = (unsigned char)(i * 7 + a->size);
    for (int m = 0; m < 3; m++) {
      r->value = 0;
      mp_process_t *p =
          start_in(methods[m], check_big_arg, a, sizeof *a + a->size);
      assert_int_equal(finish(p), 0);
      assert_int_equal(r->value, 1);
    }
    free(a);
  }
  mp_raw_free(r);
}

static void test_spawn_with_1gib_parent(void **state) {
  (void)state;
  size_t size = 1u << 30;
  char *big = malloc(size);
  assert_non_null(big);
  memset(big, 1, size);
  report_t *r = mp_raw_alloc(sizeof *r);
  for (int i = 1; i < 3; i++) {
    r->fds = 0;
    assert_int_equal(finish(start_in(methods[i], count_fds, &r, sizeof r)), 0);
    assert_true(r->fds > 0);
  }
  mp_raw_free(r);
  free(big);
}

/* ---- the forkserver
 * ---------------------------------------------------------- */

static void use_forkserver_then_wait(void *arg) {
  report_t *r = *(report_t **)arg;
  mp_process_t *p =
      mp_process_new((void (*)(void *))sync, NULL, 0,
                     &(mp_process_opts_t){.ctx = mp_get_context("forkserver")});
  if (!p || mp_process_start(p) != 0 || mp_process_join(p, 30) != 0)
    exit(3);
  r->pid = mp__forkserver_pid();
  for (;;)
    pause();
}

typedef struct owner_report {
  mp_process_t *owner;
  report_t *report;
} owner_report_t;

/* The owner reported its server, or ended without reporting. */
static bool server_known_or_owner_ended(void *arg) {
  owner_report_t *o = arg;
  return o->report->pid || !mp_process_is_alive(o->owner);
}

static bool pid_gone(void *pid) {
  return kill(*(pid_t *)pid, 0) < 0 && errno == ESRCH;
}

static void test_forkserver_ends_with_its_owner(void **state) {
  (void)state;
  report_t *r = mp_raw_alloc(sizeof *r);
  for (int i = 0; i < 3; i++) {
    r->pid = 0;
    mp_process_t *owner =
        start_in(methods[i], use_forkserver_then_wait, &r, sizeof r);
    mpt_wait_until(server_known_or_owner_ended, &(owner_report_t){owner, r},
                   30);
    assert_true(r->pid > 0);
    int server = (int)syscall(SYS_pidfd_open, r->pid, 0);
    mp_process_kill(owner);
    assert_int_equal(finish(owner), -9);
    if (server < 0) { /* no pidfds: by pid (its reaper is init) */
      assert_true(mpt_wait_until(pid_gone, &r->pid, 30));
      continue;
    }
    struct pollfd pfd = {.fd = server, .events = POLLIN};
    int ended = poll(&pfd, 1, 30000);
    close(server);
    assert_int_equal(ended, 1);
  }
  mp_raw_free(r);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_contexts),
      mpt_test(test_set_start_method),
      mpt_test(test_each_method_is_what_it_says),
      mpt_test(test_target_in_linked_library),
      mpt_test(test_target_in_dlopened_library),
      mpt_test(test_forkserver_preload),
      mpt_test(test_exec_failure_is_an_error_code),
      mpt_test(test_missing_mp_main_is_a_clear_error),
      mpt_test(test_spawn_with_10000_open_fds),
      mpt_test(test_spawn_with_big_and_small_arg),
      mpt_test(test_spawn_with_1gib_parent),
      mpt_test(test_forkserver_ends_with_its_owner),
  };
  return MPT_RUN(argc, argv, tests);
}
