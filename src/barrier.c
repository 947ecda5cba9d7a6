/* Barrier.
 *
 * State: one 64-bit word.
 *   bits  0..31  seq: how many generations have ended; its low half is the
 *                futex word every waiter sleeps on, so every end of a
 *                generation (release, break, reset) changes it and no
 *                wake-up can be missed;
 *   bits 32..47  arrivals in the current generation;
 *   bit  48      BROKEN: set by abort, a timeout or a dead party; arrivals
 *                fail until reset;
 *   bits 49..63  how the last 15 generations ended (bit 49: the latest),
 *                1 = broken. A waiter woken late reads how *its*
 *                generation ended there.
 * Arrival: CAS arrivals + 1; the index is the old count. The last arrival
 * runs the action and ends the generation (seq + 1, history bit 0); the
 * others sleep until seq moves.
 *
 * Dying parties. Each arrival publishes its owner token in entries[index]
 * (tagged with seq). Party i watches party i - 1 (mp__owner_wait on its
 * slot); party 0 watches the newest arrival, re-targeting whenever `ring`
 * moves (each arrival bumps it). So every waiting party, and the last one
 * while it runs the action, is watched by a live one, which breaks the
 * barrier when it sees it die. A party killed in the instant between
 * taking its index and publishing its token counts as having arrived. */
#include <assert.h>

#include "futex.h"
#include "start.h"

#define BARRIER_MAGIC 0x42415252u /* "BARR" */
#define MAX_PARTIES   0xffffu

#define SEQ_MASK      0xffffffffull
#define COUNT_SHIFT   32
#define COUNT_ONE     (1ull << COUNT_SHIFT)
#define COUNT_MASK    (0xffffull << COUNT_SHIFT)
#define BROKEN        (1ull << 48)
#define HISTORY_SHIFT 49
#define HISTORY_BITS  15
#define HISTORY_MASK  (((1ull << HISTORY_BITS) - 1) << HISTORY_SHIFT)

/* An entry: low half the seq of the generation it belongs to (a futex word
 * for a watcher waiting for it to be published), high half the token and
 * a bit saying a watcher sleeps on it. */
#define ENTRY_WATCHED 0x80000000u
#define RING_WATCHED  1u
#define RING_ONE      2u

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the futex words are the low halves of 64-bit words: little-endian only"
#endif

struct mp_barrier {
  uint32_t magic;
  uint32_t parties;
  double timeout; /* for mp_barrier_wait; < 0 forever */
  /* The action, named so that any process of the program finds it: under
   * spawn and forkserver the code is at other addresses (start.h). */
  mp__fnref_t action;
  _Atomic uint64_t state;
  _Atomic uint32_t ring; /* arrivals published << 1 | RING_WATCHED */
  uint32_t reserved;
  _Atomic uint64_t entries[]; /* one per arrival index */
};

/* The low half of a 64-bit word, for the kernel only: C code reads the
 * whole word. */
static _Atomic uint32_t *low_half(_Atomic uint64_t *word) {
  return (_Atomic uint32_t *)(void *)word;
}

static uint32_t seq_of(uint64_t st) {
  return (uint32_t)(st & SEQ_MASK);
}

static uint32_t count_of(uint64_t st) {
  return (uint32_t)((st & COUNT_MASK) >> COUNT_SHIFT);
}

mp_barrier_t *mp_barrier_new(unsigned parties, mp_barrier_action_cb action,
                             double timeout) {
  if (parties == 0 || parties > MAX_PARTIES) {
    errno = EINVAL;
    return NULL;
  }
  mp_barrier_t *b = mp__sync_alloc(sizeof *b + parties * sizeof(uint64_t));
  if (!b)
    return NULL;
  b->magic = BARRIER_MAGIC;
  b->parties = parties;
  b->timeout = timeout;
  if (mp__fn_encode((const void *)action, &b->action) < 0) {
    mp__shm_free(b);
    errno = EINVAL;
    return NULL;
  }
  return b;
}

/* The state after the current generation ends: seq + 1, nobody arrived,
 * its outcome recorded. */
static uint64_t next_generation(uint64_t st, bool broken) {
  uint64_t history = ((st & HISTORY_MASK) << 1) & HISTORY_MASK;
  if (broken)
    history |= 1ull << HISTORY_SHIFT;
  return (st & BROKEN) | history | ((seq_of(st) + 1) & SEQ_MASK);
}

/* Ends generation seq as broken (unless it already ended) and leaves the
 * barrier broken until reset. */
static void break_generation(mp_barrier_t *b, uint32_t seq) {
  uint64_t st = atomic_load(&b->state);
  do {
    if (seq_of(st) != seq)
      return;
  } while (!atomic_compare_exchange_weak(&b->state, &st,
                                         next_generation(st, true) | BROKEN));
  mp__futex_wake(low_half(&b->state), INT_MAX);
}

/* How generation seq ended, read by one of its waiters after it did. */
static int outcome(uint64_t st, uint32_t seq, unsigned index) {
  uint32_t later = seq_of(st) - 1 - seq; /* generations ended since */
  if (later < HISTORY_BITS && (st >> (HISTORY_SHIFT + later)) & 1)
    return MP_EBROKEN;
  return (int)index;
}

/* Takes an arrival index in the current generation. */
static int arrive(mp_barrier_t *b, const mp__deadline_t *deadline,
                  uint32_t *seq) {
  uint64_t st = atomic_load(&b->state);
  for (;;) {
    if (st & BROKEN)
      return MP_EBROKEN;
    *seq = seq_of(st);
    if (count_of(st) >= b->parties) {
      /* More threads than parties: the generation is full (its last party
       * runs the action); join the next one. */
      if (mp__futex_wait(low_half(&b->state), *seq, deadline) == MP_ETIMEDOUT)
        break_generation(b, *seq);
      st = atomic_load(&b->state);
      continue;
    }
    if (atomic_compare_exchange_weak(&b->state, &st, st + COUNT_ONE))
      return (int)count_of(st);
  }
}

/* The tag that marks an entry as published in generation seq: never the
 * tag of an entry left from an earlier generation (nor 0, the initial
 * one), so that publishing always changes the watched word. */
static uint32_t entry_tag(uint32_t seq) {
  return seq + 1;
}

static void publish(mp_barrier_t *b, unsigned index, uint32_t seq,
                    mp__owner_t me) {
  uint64_t entry = (uint64_t)me << 32 | entry_tag(seq);
  uint64_t old = atomic_exchange(&b->entries[index], entry);
  if ((old >> 32) & ENTRY_WATCHED)
    mp__futex_wake(low_half(&b->entries[index]), INT_MAX);
  /* The last party needs a watcher only while it runs the action. */
  if (index + 1 == b->parties && !b->action.valid)
    return;
  uint32_t ring = atomic_fetch_add(&b->ring, RING_ONE);
  if (ring & RING_WATCHED) {
    atomic_fetch_and(&b->ring, ~RING_WATCHED);
    mp__futex_wake(&b->ring, INT_MAX);
  }
}

/* The token the party with that index published in generation seq, or
 * NONE if it has not yet. */
static mp__owner_t published_token(mp_barrier_t *b, unsigned index,
                                   uint32_t seq) {
  uint64_t entry = atomic_load(&b->entries[index]);
  if ((uint32_t)entry != entry_tag(seq))
    return MP__OWNER_NONE;
  return (mp__owner_t)(entry >> 32) & MP__OWNER_MASK;
}

/* As published_token, but when the entry is not yet published fills
 * *watch to wait for it (and flags it, so that the publisher wakes us). */
static mp__owner_t watch_party(mp_barrier_t *b, unsigned index, uint32_t seq,
                               mp__futex_watch_t *watch) {
  uint64_t entry = atomic_load(&b->entries[index]);
  for (;;) {
    if ((uint32_t)entry == entry_tag(seq))
      return (mp__owner_t)(entry >> 32) & MP__OWNER_MASK;
    uint64_t flagged = entry | (uint64_t)ENTRY_WATCHED << 32;
    if (entry == flagged ||
        atomic_compare_exchange_weak(&b->entries[index], &entry, flagged))
      break;
  }
  *watch = (mp__futex_watch_t){low_half(&b->entries[index]), (uint32_t)entry};
  return MP__OWNER_NONE;
}

/* Whom a waiter watches: its predecessor; party 0 the newest arrival,
 * waking when `ring` moves. Fills the watch list, returns the token. */
static mp__owner_t choose_watch(mp_barrier_t *b, unsigned index, uint32_t seq,
                                mp__futex_watch_t *watch, unsigned *n) {
  unsigned target = index - 1;
  if (index == 0) {
    uint32_t ring = atomic_fetch_or(&b->ring, RING_WATCHED) | RING_WATCHED;
    watch[(*n)++] = (mp__futex_watch_t){&b->ring, ring};
    uint32_t arrived = count_of(atomic_load(&b->state));
    if (arrived < 2)
      return MP__OWNER_NONE;
    target = arrived - 1;
  }
  mp__owner_t token = watch_party(b, target, seq, &watch[*n]);
  if (token == MP__OWNER_NONE)
    (*n)++;
  return token;
}

static int wait_released(mp_barrier_t *b, unsigned index, uint32_t seq,
                         const mp__deadline_t *deadline) {
  for (;;) {
    uint64_t st = atomic_load(&b->state);
    if (seq_of(st) != seq) {
      mp__tsan_acquire(b);
      return outcome(st, seq, index);
    }
    if (mp__deadline_expired(deadline)) {
      break_generation(b, seq);
      continue;
    }
    mp__futex_watch_t watch[MP__FUTEX_WATCH_MAX - 1];
    unsigned n = 0;
    watch[n++] = (mp__futex_watch_t){low_half(&b->state), seq};
    mp__owner_t token = choose_watch(b, index, seq, watch, &n);
    if (mp__owner_wait(token, watch, n, deadline) == MP_EOWNERDEAD)
      break_generation(b, seq);
  }
}

/* Runs the action where this process has it; false if it cannot be found
 * (a library of the creator that this process cannot load). */
static bool run_action(mp_barrier_t *b) {
  mp_barrier_action_cb action = (mp_barrier_action_cb)mp__fn_decode(&b->action);
  if (!action)
    return false;
  action();
  return true;
}

/* The last arrival: checks its predecessor, runs the action, releases. */
static int finish(mp_barrier_t *b, unsigned index, uint32_t seq) {
  if (index > 0) {
    mp__owner_t before = published_token(b, index - 1, seq);
    if (before != MP__OWNER_NONE && mp__owner_dead(before))
      break_generation(b, seq);
  }
  uint64_t st = atomic_load(&b->state);
  /* As Python breaks the barrier when the action raises. */
  if (seq_of(st) == seq && b->action.valid && !run_action(b))
    break_generation(b, seq);
  st = atomic_load(&b->state);
  mp__tsan_release(b);
  do {
    if (seq_of(st) != seq)
      return outcome(st, seq, index);
  } while (
      !atomic_compare_exchange_weak(&b->state, &st, next_generation(st, 0)));
  mp__futex_wake(low_half(&b->state), INT_MAX);
  mp__tsan_acquire(b);
  return (int)index;
}

int mp_barrier_wait_timeout(mp_barrier_t *b, double timeout) {
  assert(b->magic == BARRIER_MAGIC);
  mp__owner_t me;
  int rc = mp__owner_self(&me);
  if (rc < 0)
    return rc;
  mp__deadline_t deadline = mp__deadline_in(timeout);
  uint32_t seq;
  int index = arrive(b, &deadline, &seq);
  if (index < 0)
    return index;
  publish(b, (unsigned)index, seq, me);
  if ((unsigned)index + 1 == b->parties)
    return finish(b, (unsigned)index, seq);
  mp__tsan_release(b);
  return wait_released(b, (unsigned)index, seq, &deadline);
}

int mp_barrier_wait(mp_barrier_t *b) {
  return mp_barrier_wait_timeout(b, b->timeout);
}

int mp_barrier_abort(mp_barrier_t *b) {
  assert(b->magic == BARRIER_MAGIC);
  uint64_t st = atomic_load(&b->state);
  while (!atomic_compare_exchange_weak(&b->state, &st,
                                       next_generation(st, true) | BROKEN))
    ;
  mp__futex_wake(low_half(&b->state), INT_MAX);
  return 0;
}

int mp_barrier_reset(mp_barrier_t *b) {
  assert(b->magic == BARRIER_MAGIC);
  uint64_t st = atomic_load(&b->state), next;
  do {
    /* Waiters of the current generation get MP_EBROKEN, as in Python. */
    next = count_of(st) > 0 ? next_generation(st, true) : st;
    next &= ~BROKEN;
  } while (!atomic_compare_exchange_weak(&b->state, &st, next));
  if (seq_of(next) != seq_of(st))
    mp__futex_wake(low_half(&b->state), INT_MAX);
  return 0;
}

bool mp_barrier_broken(const mp_barrier_t *b) {
  return atomic_load(&((mp_barrier_t *)b)->state) & BROKEN;
}

unsigned mp_barrier_parties(const mp_barrier_t *b) {
  return b->parties;
}

unsigned mp_barrier_n_waiting(const mp_barrier_t *b) {
  uint64_t st = atomic_load(&((mp_barrier_t *)b)->state);
  return st & BROKEN ? 0 : count_of(st);
}

void mp_barrier_free(mp_barrier_t *b) {
  mp__shm_free(b);
}
