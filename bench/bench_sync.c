/* Benchmarks of the sync primitives against raw references.
 *
 * Rows (ns per operation, median of REPS runs):
 *   lock_uncontended  Lock acquire + release, one process;
 *                     raw: an atomic compare-and-swap spin lock.
 *   pingpong_event    one round trip between two processes, each side
 *                     waiting on its Event (wait, clear, set the other's);
 *                     raw: one futex word flipped back and forth.
 *   shared_increment  two processes each incrementing a shared counter under
 *                     a Lock (ns per increment);
 *                     raw: the same under the CAS spin lock.
 * Output: row <tab> operation <tab> mproc ns <tab> raw ns <tab> raw label. */
#include <linux/futex.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mproc.h>

#include "bench_common.h"

#define REPS            5
#define CONTENDED_REPS  9 /* contention is noisier: more runs */
#define UNCONTENDED_OPS 5000000
#define PINGPONG_ROUNDS 20000
#define INCREMENTS      500000

/* ---- the raw references -------------------------------------------------- */

static void spin_lock(_Atomic uint32_t *l) {
  uint32_t expected = 0;
  while (!atomic_compare_exchange_weak_explicit(
      l, &expected, 1, memory_order_acquire, memory_order_relaxed)) {
    expected = 0;
    bench_cpu_relax();
  }
}

static void spin_unlock(_Atomic uint32_t *l) {
  atomic_store_explicit(l, 0, memory_order_release);
}

static void futex_wait(_Atomic uint32_t *w, uint32_t v) {
  syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *w) {
  syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

/* ---- lock_uncontended ---------------------------------------------------- */

static double mproc_uncontended(void *arg, int n) {
  mp_lock_t *l = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    mp_lock_acquire(l, MP_FOREVER);
    mp_lock_release(l);
  }
  return (double)(bench_now_ns() - t0) / n;
}

static double raw_uncontended(void *arg, int n) {
  _Atomic uint32_t *l = arg;
  uint64_t t0 = bench_now_ns();
  for (int i = 0; i < n; i++) {
    spin_lock(l);
    spin_unlock(l);
  }
  return (double)(bench_now_ns() - t0) / n;
}

/* ---- two-process measurements -------------------------------------------- */

/* What the two processes of a measurement share. The counter has a cache
 * line of its own, apart from the raw lock word as it is apart from the
 * mproc Lock (a separate object): both lock the same way. */
struct duel {
  mp_event_t *ping, *pong;
  mp_lock_t *lock;
  _Atomic uint32_t word;  /* raw ping-pong word, or the raw spin lock */
  _Atomic uint32_t ready; /* both sides started */
  bool raw;               /* this run measures the raw reference */
  _Alignas(64) long counter;
};

static void meet(struct duel *d) {
  atomic_fetch_add(&d->ready, 1);
  while (atomic_load(&d->ready) < 2)
    ;
}

static void pingpong_side(struct duel *d, bool first, int n) {
  for (int i = 0; i < n; i++) {
    if (d->raw) {
      uint32_t mine = first ? 0 : 1;
      while (atomic_load(&d->word) != mine)
        futex_wait(&d->word, !mine);
      atomic_store(&d->word, !mine);
      futex_wake(&d->word);
    } else {
      mp_event_t *wait_on = first ? d->pong : d->ping;
      mp_event_t *set = first ? d->ping : d->pong;
      if (first)
        mp_event_set(set);
      mp_event_wait(wait_on, MP_FOREVER);
      mp_event_clear(wait_on);
      if (!first)
        mp_event_set(set);
    }
  }
}

static void increment_side(struct duel *d, int n) {
  for (int i = 0; i < n; i++) {
    if (d->raw)
      spin_lock(&d->word);
    else
      mp_lock_acquire(d->lock, MP_FOREVER);
    d->counter++;
    if (d->raw)
      spin_unlock(&d->word);
    else
      mp_lock_release(d->lock);
  }
}

struct duel_run {
  struct duel *d;
  bool pingpong;
  bool raw; /* the raw reference instead of mproc */
  int n;
};

static void duel_child(void *arg) {
  struct duel_run *r = arg;
  meet(r->d);
  if (r->pingpong)
    pingpong_side(r->d, false, r->n);
  else
    increment_side(r->d, r->n);
}

/* One measurement: n round trips, or n increments on each side. */
static double duel_measure(void *arg, int n) {
  struct duel_run *r = arg;
  struct duel *d = r->d;
  r->n = n;
  d->raw = r->raw;
  atomic_store(&d->word, 0);
  atomic_store(&d->ready, 0);
  d->counter = 0;
  mp_event_clear(d->ping);
  mp_event_clear(d->pong);
  mp_process_t *p = mp_process_new(duel_child, r, sizeof *r, NULL);
  if (!p || mp_process_start(p) != 0) {
    fprintf(stderr, "bench_sync: cannot start a process\n");
    exit(1);
  }
  meet(d);
  uint64_t t0 = bench_now_ns();
  if (r->pingpong)
    pingpong_side(d, true, n);
  else
    increment_side(d, n);
  mp_process_join(p, MP_FOREVER);
  double spent = (double)(bench_now_ns() - t0);
  mp_process_free(p);
  if (!r->pingpong && d->counter != 2L * n) {
    fprintf(stderr, "bench_sync: lost increments\n");
    exit(1);
  }
  return r->pingpong ? spent / n : spent / (2.0 * n);
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  struct duel *d = mp_raw_alloc(sizeof *d);
  mp_lock_t *lock = mp_lock_new();
  if (!d || !lock)
    return 1;
  d->ping = mp_event_new();
  d->pong = mp_event_new();
  d->lock = lock;

  /* Each mproc measurement alternates with its raw reference, so that
   * both see the same load on a shared machine. */
  double mine, raw;
  bench_pair(mproc_uncontended, lock, raw_uncontended, &d->word,
             UNCONTENDED_OPS, REPS, &mine, &raw);
  bench_row("lock_uncontended", mine, raw, "atomic CAS spin lock");

  struct duel_run ours = {.d = d, .pingpong = true};
  struct duel_run bare = {.d = d, .pingpong = true, .raw = true};
  bench_pair(duel_measure, &ours, duel_measure, &bare, PINGPONG_ROUNDS, REPS,
             &mine, &raw);
  bench_row("pingpong_event", mine, raw, "futex ping-pong");

  ours.pingpong = bare.pingpong = false;
  bench_pair(duel_measure, &ours, duel_measure, &bare, INCREMENTS,
             CONTENDED_REPS, &mine, &raw);
  bench_row("shared_increment", mine, raw, "CAS spin lock");

  mp_event_free(d->ping);
  mp_event_free(d->pong);
  mp_lock_free(lock);
  mp_raw_free(d);
  return 0;
}
