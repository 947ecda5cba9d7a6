/* Barrier.
 *
 * State: one 64-bit word.
 *   bits  0..31  seq: how many generations have ended; its low half is the
 *                futex word every waiter sleeps on, so every end of a
 *                generation (release, break, reset) changes it and no
 *                wake-up can be missed;
 *   bits 32..47  arrivals counted in the current generation;
 *   bit  48      BROKEN: set by abort, a timeout or a dead party; arrivals
 *                fail until reset;
 *   bits 49..63  how the last 15 generations ended (bit 49: the latest),
 *                1 = broken. A waiter woken late reads how *its*
 *                generation ended there.
 *
 * Arrival, in two steps, so that every counted arrival has its owner token
 * published, whenever its process dies:
 *   1. claim: CAS entries[c] (c = the count) from a value of an earlier
 *      generation to the party's token tagged with seq;
 *   2. count: CAS the count c -> c + 1; the index is c.
 * Whoever finds entries[count] claimed for this generation but not counted
 * helps: it counts that claim (or breaks the generation if its claimant is
 * dead) before claiming the next index, so a stalled claimant holds nobody
 * up. The last index is never counted by a helper: its claimant runs the
 * action and ends the generation (seq + 1, history bit 0); without an
 * action its release is its count. Threads beyond the parties wait for the
 * next generation watching that last party.
 *
 * Dying parties. Party i watches party i - 1 (mp__owner_wait on its
 * token); party 0 watches the newest claim, re-targeting whenever `ring`
 * moves. Whoever counts an arrival first bumps the ring (waking party 0 if
 * it flagged the ring), so a counted party is always watched by a live one,
 * which breaks the barrier when it sees it die. A party killed after its
 * claim but before it is counted has not arrived: the next arrival (or
 * party 0 if it saw the claim) finds it dead and breaks the barrier. */
#include <assert.h>

#include "testing.h"
#include "core/owner.h"
#include "core/fnref.h"

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

/* The ring: bits 0..15 the tag of the generation whose party 0 sleeps on
 * it (0: none), bits 16..31 how many arrivals were announced (wrapping). */
#define RING_TAG_MASK 0xffffu
#define RING_ONE      (1u << 16)

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the futex word is the low half of the 64-bit state: little-endian only"
#endif

struct mp_barrier {
  uint32_t magic;
  uint32_t generation;
  uint32_t parties;
  double timeout; /* for mp_barrier_wait; < 0 forever */
  /* The action, named so that any process of the program finds it: under
   * spawn and forkserver the code is at other addresses (start.h). */
  mp__fnref_t action;
  _Atomic uint64_t state;
  _Atomic uint32_t ring; /* see RING_* */
  uint32_t reserved;
  /* One per arrival index: the claimant's token << 32 | the entry_tag of
   * its generation. */
  _Atomic uint64_t entries[];
};
MP__OBJECT_LAYOUT(mp_barrier_t);

/* Tests only: called by a party once its arrival is counted (the last
 * party without an action: claimed; its release counts it), to stop it
 * there. NULL otherwise. */
void (*mp__barrier_counted_hook)(void);

/* The low half of the state, for the kernel only: C code reads the whole
 * word. */
static _Atomic uint32_t *low_half(_Atomic uint64_t *word) {
  return (_Atomic uint32_t *)(void *)word;
}

static uint32_t seq_of(uint64_t st) {
  return (uint32_t)(st & SEQ_MASK);
}

static unsigned count_of(uint64_t st) {
  return (unsigned)((st & COUNT_MASK) >> COUNT_SHIFT);
}

mp_barrier_t *mp_barrier_new(unsigned parties, mp_barrier_action_cb action,
                             double timeout) {
  if (parties == 0 || parties > MAX_PARTIES || mp__timeout_check(timeout)) {
    errno = EINVAL;
    return NULL;
  }
  mp_barrier_t *b = mp__sync_alloc(sizeof *b + parties * sizeof(uint64_t));
  if (!b)
    return NULL;
  b->parties = parties;
  b->timeout = timeout;
  if (mp__fn_encode((const void *)action, &b->action) < 0) {
    mp__shm_free(b);
    errno = EINVAL;
    return NULL;
  }
  return mp__object_publish(b, BARRIER_MAGIC);
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

/* How generation seq ended, read by one of its parties after it did. */
static int outcome(uint64_t st, uint32_t seq, unsigned index) {
  uint32_t later = seq_of(st) - 1 - seq; /* generations ended since */
  if (later < HISTORY_BITS && (st >> (HISTORY_SHIFT + later)) & 1)
    return MP_EBROKEN;
  return (int)index;
}

/* ---- Entries -------------------------------------------------------------
 * The tag of generation seq's claims: never that of an entry left from an
 * earlier generation (nor 0, the initial one). */
static uint32_t entry_tag(uint32_t seq) {
  return seq + 1;
}

static bool claimed_in(uint64_t entry, uint32_t seq) {
  return (uint32_t)entry == entry_tag(seq);
}

static mp__owner_t claimant(uint64_t entry) {
  return (mp__owner_t)(entry >> 32);
}

/* Who claimed index in generation seq; NONE if that generation ended and
 * the entry was claimed again since. */
static mp__owner_t claimant_in(mp_barrier_t *b, unsigned index, uint32_t seq) {
  uint64_t entry = atomic_load(&b->entries[index]);
  return claimed_in(entry, seq) ? claimant(entry) : MP__OWNER_NONE;
}

/* ---- The ring --------------------------------------------------------------
 * Party 0's tag: nonzero, the same for all of generation seq. */
static uint32_t ring_tag(uint32_t seq) {
  return seq % RING_TAG_MASK + 1;
}

/* Tells party 0 that an arrival is about to be counted. The tag stays, so
 * that should we die between the bump and the wake, the next bump wakes. */
static void bump_ring(mp_barrier_t *b) {
  if (atomic_fetch_add(&b->ring, RING_ONE) & RING_TAG_MASK)
    mp__futex_wake(&b->ring, INT_MAX);
}

/* Party 0 of generation seq tags the ring before it reads whom to watch:
 * any arrival counted after that wakes it. Returns the value to sleep on. */
static uint32_t watch_ring(mp_barrier_t *b, uint32_t seq) {
  uint32_t tag = ring_tag(seq), ring = atomic_load(&b->ring);
  while ((ring & RING_TAG_MASK) != tag &&
         !atomic_compare_exchange_weak(&b->ring, &ring,
                                       (ring & ~RING_TAG_MASK) | tag))
    ;
  return (ring & ~RING_TAG_MASK) | tag;
}

/* Party 0 leaving: removes its tag, unless the party 0 of a later
 * generation replaced it. */
static void unwatch_ring(mp_barrier_t *b, uint32_t seq) {
  uint32_t tag = ring_tag(seq), ring = atomic_load(&b->ring);
  while ((ring & RING_TAG_MASK) == tag &&
         !atomic_compare_exchange_weak(&b->ring, &ring, ring & ~RING_TAG_MASK))
    ;
}

/* ---- Arrival ------------------------------------------------------------- */

/* The generation is full: its last party (claimed) runs the action and
 * releases it. Waits for that, breaking the generation if that party dies
 * or the deadline passes. */
static void wait_full(mp_barrier_t *b, uint32_t seq,
                      const mp__deadline_t *deadline) {
  mp__futex_watch_t watch = {low_half(&b->state), seq};
  mp__owner_t last = claimant_in(b, b->parties - 1, seq);
  int rc = mp__owner_wait(last, &watch, 1, deadline);
  if (rc == MP_ETIMEDOUT || rc == MP_EOWNERDEAD)
    break_generation(b, seq);
}

/* entries[count] (not the last) is claimed but not counted in state st:
 * counts it in its claimant's place, or breaks the generation if the
 * claimant died. */
static void help(mp_barrier_t *b, uint64_t st, uint64_t entry) {
  if (mp__owner_dead(claimant(entry))) {
    break_generation(b, seq_of(st));
    return;
  }
  bump_ring(b);
  atomic_compare_exchange_strong(&b->state, &st, st + COUNT_ONE);
}

/* Counts our claim of index c in generation seq, unless a helper did or
 * the generation ended (the caller finds out). */
static void count_claim(mp_barrier_t *b, unsigned c, uint32_t seq) {
  if (c + 1 == b->parties && !b->action.valid)
    return; /* counted by its release */
  if (c > 0)
    bump_ring(b);
  uint64_t st = atomic_load(&b->state);
  while (seq_of(st) == seq && count_of(st) == c &&
         !atomic_compare_exchange_weak(&b->state, &st, st + COUNT_ONE))
    ;
}

/* One try at arriving in state st (not broken): claims entries[count] (true)
 * or, when that is taken, helps or waits; false to look again. */
static bool try_claim(mp_barrier_t *b, uint64_t st, mp__owner_t me,
                      const mp__deadline_t *deadline) {
  uint32_t seq = seq_of(st);
  unsigned c = count_of(st);
  if (c == b->parties) {
    wait_full(b, seq, deadline); /* more threads than parties */
    return false;
  }
  uint64_t entry = atomic_load(&b->entries[c]);
  /* Re-read, so that an entry claimed in a later generation is never taken
   * for one of an earlier one: then the CAS cannot overwrite a claim. */
  if (atomic_load(&b->state) != st)
    return false;
  if (claimed_in(entry, seq)) {
    if (c + 1 == b->parties)
      wait_full(b, seq, deadline);
    else
      help(b, st, entry);
    return false;
  }
  uint64_t mine = (uint64_t)me << 32 | entry_tag(seq);
  return atomic_compare_exchange_strong(&b->entries[c], &entry, mine);
}

/* Claims an arrival index in the current generation and counts it. Returns
 * the index, with *seq its generation (which may have ended by then: the
 * caller finds out), or MP_EBROKEN. */
static int arrive(mp_barrier_t *b, mp__owner_t me,
                  const mp__deadline_t *deadline, uint32_t *seq) {
  for (;;) {
    uint64_t st = atomic_load(&b->state);
    if (st & BROKEN)
      return MP_EBROKEN;
    if (mp__interrupted(deadline))
      return MP_EINTR; /* not counted: the barrier is untouched */
    if (try_claim(b, st, me, deadline)) {
      *seq = seq_of(st);
      count_claim(b, count_of(st), *seq);
      return (int)count_of(st);
    }
  }
}

/* ---- Waiting ------------------------------------------------------------- */

/* Party 0's target: the newest claim of generation seq, counted or not; 0
 * (itself) when there is none. */
static unsigned newest_claim(mp_barrier_t *b, uint32_t seq) {
  uint64_t st = atomic_load(&b->state);
  unsigned c = count_of(st);
  if (seq_of(st) != seq || c == 0)
    return 0;
  if (c < b->parties && claimed_in(atomic_load(&b->entries[c]), seq))
    return c;
  return c - 1;
}

/* Whom a waiter watches: its predecessor; party 0 the newest claim, waking
 * when the ring moves. Fills the watch list, returns the token. */
static mp__owner_t choose_watch(mp_barrier_t *b, unsigned index, uint32_t seq,
                                mp__futex_watch_t *watch, unsigned *n) {
  unsigned target = index - 1;
  if (index == 0) {
    watch[(*n)++] = (mp__futex_watch_t){&b->ring, watch_ring(b, seq)};
    target = newest_claim(b, seq);
    if (target == 0)
      return MP__OWNER_NONE;
  }
  return claimant_in(b, target, seq);
}

/* A counted party interrupted: as a timeout, it breaks the generation (the
 * others get MP_EBROKEN, as Python's parties do when one leaves), unless
 * the generation was released meanwhile (then the wait succeeded). */
static int interrupted(mp_barrier_t *b, unsigned index, uint32_t seq) {
  break_generation(b, seq);
  if (index == 0)
    unwatch_ring(b, seq);
  int rc = outcome(atomic_load(&b->state), seq, index);
  mp__tsan_acquire(b);
  return rc == MP_EBROKEN ? MP_EINTR : rc;
}

/* Waits for the generation seq to end. A barrier freed meanwhile (its
 * identity is no longer id; see mp_barrier_free) gives MP_EINVAL, and
 * nothing of its memory is touched after. */
static int wait_released(mp_barrier_t *b, uint64_t id, unsigned index,
                         uint32_t seq, const mp__deadline_t *deadline) {
  for (;;) {
    if (mp__object_id(b) != id)
      return MP_EINVAL;
    uint64_t st = atomic_load(&b->state);
    if (seq_of(st) != seq) {
      if (index == 0)
        unwatch_ring(b, seq);
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
    int rc = mp__owner_wait(token, watch, n, deadline);
    if (rc == MP_EOWNERDEAD)
      break_generation(b, seq);
    else if (rc == MP_EINTR)
      return interrupted(b, index, seq);
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
    mp__owner_t before = claimant_in(b, index - 1, seq);
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
  if (!(b = mp__object_open(b, BARRIER_MAGIC)))
    return MP_EINVAL;
  mp__owner_t me;
  int rc = mp__timeout_check(timeout);
  if (rc == 0)
    rc = mp__owner_self(&me);
  if (rc < 0)
    return rc;
  mp__deadline_t deadline = mp__deadline_in(timeout);
  uint64_t id = mp__object_id(b);
  uint32_t seq;
  int index = arrive(b, me, &deadline, &seq);
  if (index < 0)
    return index;
  if (mp__barrier_counted_hook)
    mp__barrier_counted_hook();
  if ((unsigned)index + 1 == b->parties)
    return finish(b, (unsigned)index, seq);
  mp__tsan_release(b);
  return wait_released(b, id, (unsigned)index, seq, &deadline);
}

int mp_barrier_wait(mp_barrier_t *b) {
  const mp_barrier_t *o = mp__object_open(b, BARRIER_MAGIC);
  if (!o)
    return MP_EINVAL;
  return mp_barrier_wait_timeout(b, o->timeout);
}

int mp_barrier_abort(mp_barrier_t *b) {
  if (!(b = mp__object_open(b, BARRIER_MAGIC)))
    return MP_EINVAL;
  uint64_t st = atomic_load(&b->state);
  while (!atomic_compare_exchange_weak(&b->state, &st,
                                       next_generation(st, true) | BROKEN))
    ;
  mp__futex_wake(low_half(&b->state), INT_MAX);
  return 0;
}

int mp_barrier_reset(mp_barrier_t *b) {
  if (!(b = mp__object_open(b, BARRIER_MAGIC)))
    return MP_EINVAL;
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
  if (!(b = mp__object_open(b, BARRIER_MAGIC)))
    return false;
  return atomic_load(&((mp_barrier_t *)b)->state) & BROKEN;
}

unsigned mp_barrier_parties(const mp_barrier_t *b) {
  if (!(b = mp__object_open(b, BARRIER_MAGIC)))
    return 0;
  return b->parties;
}

bool mp__barrier_has_sleepers(const void *handle) {
  return mp_barrier_n_waiting((mp_barrier_t *)handle) > 0;
}

unsigned mp_barrier_n_waiting(const mp_barrier_t *b) {
  if (!(b = mp__object_open(b, BARRIER_MAGIC)))
    return 0;
  uint64_t st = atomic_load(&((mp_barrier_t *)b)->state);
  return st & BROKEN ? 0 : count_of(st);
}

void mp_barrier_free(mp_barrier_t *b) {
  if (!b)
    return;
  b = mp__object_retire(b, BARRIER_MAGIC, "barrier");
  /* Sleepers wake (the word they sleep on changes), find the mark of the
   * free and say MP_EINVAL. */
  atomic_fetch_add(&b->state, 1); /* the generation number (low half) */
  mp__futex_wake(low_half(&b->state), INT_MAX);
  mp__shm_free(b);
}
