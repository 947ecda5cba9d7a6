/* The resource tracker: a family SIGKILLed whole leaves no named shm
 * segment and no Unix socket file behind, but those it untracked, and it
 * never unlinks what the family unlinked itself (and someone made again).
 *
 * The family is this test program run again as a sub-command ("family"):
 * a program of its own, whose tracker is not this process's. It creates
 * the resources, starts a child (under the start method) that creates
 * more, prints what it made and sleeps; the test kills the child and the
 * program with SIGKILL and waits for the names to go. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support.h"

#define WAIT_GONE 20.0

/* ---- the family (the sub-command) -----------------------------------------
 */

struct child_args {
  char shm[64], sock[128];
  mp_event_t *ready, *never;
};

static void family_child(void *arg) {
  struct child_args *a = arg;
  mp_shm_t *s = mp_shm_open(a->shm, true, 4096);
  mp_listener_t *l = mp_listener_new(a->sock, NULL, 0);
  if (s && l)
    mp_event_set(a->ready);
  mp_event_wait(a->never, MP_FOREVER);
}

static int family_main(const char *tag) {
  char s1[64], s2[64], s4[64], p1[128];
  snprintf(s1, sizeof s1, "mpt_trk_%s_tracked", tag);
  snprintf(s2, sizeof s2, "mpt_trk_%s_kept", tag);
  snprintf(s4, sizeof s4, "mpt_trk_%s_remade", tag);
  snprintf(p1, sizeof p1, "unix:/tmp/mpt_trk_%s_1.sock", tag);
  struct child_args a = {.ready = mp_event_new(), .never = mp_event_new()};
  snprintf(a.shm, sizeof a.shm, "mpt_trk_%s_child", tag);
  snprintf(a.sock, sizeof a.sock, "unix:/tmp/mpt_trk_%s_2.sock", tag);

  mp_shm_t *tracked = mp_shm_open(s1, true, 4096);
  mp_shm_t *kept = mp_shm_open(s2, true, 4096);
  mp_shm_t *remade = mp_shm_open(s4, true, 4096);
  mp_listener_t *l = mp_listener_new(p1, NULL, 0);
  if (!tracked || !kept || !remade || !l)
    return 2;
  mp_shm_untrack(kept);
  /* Unlinked by the family, then made again by someone who is not: not
   * the tracker's to remove. */
  mp_shm_unlink(remade);
  char slash[70];
  snprintf(slash, sizeof slash, "/%s", s4);
  int fd = shm_open(slash, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0)
    return 3;
  close(fd);

  mp_process_t *child = mp_process_new(family_child, &a, sizeof a, NULL);
  if (!child || mp_process_start(child) != 0 || mp_event_wait(a.ready, 20) != 0)
    return 4;
  printf("%d %d\n", (int)getpid(), (int)mp_process_pid(child));
  fflush(stdout);
  mp_event_wait(a.never, MP_FOREVER); /* until killed */
  return 0;
}

/* ---- the test ---------------------------------------------------------------
 */

static bool shm_exists(const char *name) {
  char path[128];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  return access(path, F_OK) == 0;
}

struct names {
  char tag[32];
  char shm[3][64];
  char sock[2][64];
};

static bool all_gone(void *arg) {
  const struct names *n = arg;
  for (int i = 0; i < 2; i++)
    if (access(n->sock[i], F_OK) == 0)
      return false;
  return !shm_exists(n->shm[0]) && !shm_exists(n->shm[1]);
}

static void test_family_killed_leaves_nothing(void **state) {
  (void)state;
  struct names n;
  snprintf(n.tag, sizeof n.tag, "%d_%s", (int)getpid(), mpt_method());
  snprintf(n.shm[0], sizeof n.shm[0], "mpt_trk_%s_tracked", n.tag);
  snprintf(n.shm[1], sizeof n.shm[1], "mpt_trk_%s_child", n.tag);
  snprintf(n.shm[2], sizeof n.shm[2], "mpt_trk_%s_kept", n.tag);
  snprintf(n.sock[0], sizeof n.sock[0], "/tmp/mpt_trk_%s_1.sock", n.tag);
  snprintf(n.sock[1], sizeof n.sock[1], "/tmp/mpt_trk_%s_2.sock", n.tag);
  char remade[64];
  snprintf(remade, sizeof remade, "mpt_trk_%s_remade", n.tag);

  int out[2];
  assert_int_equal(0, pipe2(out, O_CLOEXEC));
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    char *argv[] = {"/proc/self/exe", "family", n.tag, NULL};
    execv(argv[0], argv);
    _exit(127);
  }
  close(out[1]);
  char line[64] = {0};
  ssize_t got = 0;
  struct pollfd p = {.fd = out[0], .events = POLLIN};
  while (got < (ssize_t)sizeof line - 1 && !memchr(line, '\n', (size_t)got) &&
         poll(&p, 1, 30000) == 1) {
    ssize_t r = read(out[0], line + got, sizeof line - 1 - (size_t)got);
    if (r <= 0)
      break;
    got += r;
  }
  close(out[0]);
  int family = 0, child = 0;
  bool started = sscanf(line, "%d %d", &family, &child) == 2;
  if (started) {
    assert_true(shm_exists(n.shm[0]) && shm_exists(n.shm[1]));
    assert_int_equal(0, access(n.sock[1], F_OK));
    kill(child, SIGKILL);
  }
  kill(pid, SIGKILL);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  assert_true(started);
  bool gone = mpt_wait_until(all_gone, &n, WAIT_GONE);
  bool kept = shm_exists(n.shm[2]), remade_kept = shm_exists(remade);
  /* Clean up whatever is left, whatever the outcome. */
  for (int i = 0; i < 3; i++)
    mp_shm_unlink_name(n.shm[i]);
  mp_shm_unlink_name(remade);
  unlink(n.sock[0]);
  unlink(n.sock[1]);
  assert_true(gone);
  assert_true(kept);
  assert_true(remade_kept);
}

/* A family that ends normally and cleans up after itself: the tracker
 * takes nothing else with it (the names were unlinked by their owners). */
static void test_untrack_and_unlink_in_process(void **state) {
  (void)state;
  char name[64];
  snprintf(name, sizeof name, "mpt_trk_%d_local", (int)getpid());
  mp_shm_t *s = mp_shm_open(name, true, 4096);
  assert_non_null(s);
  assert_mp_ok(mp_shm_unlink(s));
  assert_mp(-ENOENT, mp_shm_unlink(s));
  assert_mp_ok(mp_shm_close(s));
}

int main(int argc, char **argv) {
  mp_main(argc, argv);
  if (argc == 3 && strcmp(argv[1], "family") == 0)
    return family_main(argv[2]);
  const struct CMUnitTest tests[] = {
      mpt_test(test_family_killed_leaves_nothing),
      mpt_test(test_untrack_and_unlink_in_process),
  };
  return MPT_RUN(argc, argv, tests);
}
