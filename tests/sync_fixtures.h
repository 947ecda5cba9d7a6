/* Fixtures shared by the sync test programs (test_sync*.c). Children get
 * everything through their arg struct and report through shared memory,
 * so the tests hold under every start method. */
#ifndef MPROC_SYNC_FIXTURES_H
#define MPROC_SYNC_FIXTURES_H

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "support.h"

/* Long enough for a loaded machine; only reached when something hangs. */
#define JOIN_TIMEOUT 20.0

static inline void *shared(size_t size) {
  void *p = mp_raw_alloc(size);
  assert_non_null(p);
  return p;
}

/* The children a test started and has not finished: if an assertion
 * fails, the teardown kills and reaps them before the checks of
 * mpt_teardown. */
#define MAX_CHILDREN 32
static mp_process_t *children[MAX_CHILDREN];

static inline mp_process_t *start_child(void (*fn)(void *), const void *arg,
                                        size_t size) {
  mp_process_t *p = mp_process_new(fn, arg, size, NULL);
  assert_non_null(p);
  int slot = 0;
  while (slot < MAX_CHILDREN && children[slot])
    slot++;
  assert_true(slot < MAX_CHILDREN);
  assert_mp_ok(mp_process_start(p));
  children[slot] = p;
  return p;
}

/* Joins (killing it if it hangs) and frees; returns its exit code. */
static inline int finish_child(mp_process_t *p) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (children[i] == p)
      children[i] = NULL;
  if (mp_process_join(p, JOIN_TIMEOUT) != 0) {
    mp_process_kill(p);
    mp_process_join(p, MP_FOREVER);
  }
  int code = -1000;
  mp_process_exitcode(p, &code);
  mp_process_free(p);
  return code;
}

static inline int kill_child(mp_process_t *p) {
  mp_process_kill(p);
  return finish_child(p);
}

static inline int sync_teardown(void **state) {
  for (int i = 0; i < MAX_CHILDREN; i++)
    if (children[i])
      kill_child(children[i]);
  return mpt_teardown(state);
}

/* mpt_test, with the children of a failed test cleaned up. */
#define sync_test(f)                                                           \
  cmocka_unit_test_setup_teardown(f, mpt_setup, sync_teardown)

/* Sleeps to provoke a race (never for correctness). */
static inline void sleep_us(long us) {
  struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

/* Polls until cond(arg) holds (a state the test waits for, not a
 * timing assumption); false after JOIN_TIMEOUT. */
static inline bool poll_until(bool (*cond)(void *), void *arg) {
  return mpt_wait_until(cond, arg, JOIN_TIMEOUT);
}

static inline bool barrier_has_waiting(void *arg) {
  void **pair = arg;
  return mp_barrier_n_waiting(pair[0]) == (unsigned)(uintptr_t)pair[1];
}

/* Waits until n parties wait at the barrier. */
static inline void wait_n_waiting(mp_barrier_t *b, unsigned n) {
  void *pair[2] = {b, (void *)(uintptr_t)n};
  assert_true(poll_until(barrier_has_waiting, pair));
}

#endif
