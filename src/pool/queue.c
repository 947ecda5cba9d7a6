/* The pool's work queue in shared memory, written so that a worker killed
 * at any instruction leaves no item lost and none counted twice.
 *
 * The queue is a FIFO of units, each a range of one job's items handed
 * out in chunks. A chunk is claimed by one atomic add to the unit's
 * cursor, without the lock, and written down in the claimer's slot. A
 * worker takes
 * the queue lock only to leave a unit: it then adds the items it ran to
 * the job's counters (its ledger, one journaled commit per unit rather
 * than one per chunk), and claims a chunk of the unit at the head; the
 * next chunks of that unit it claims without the lock. Exhausted units
 * leave the head under the lock. The parent appends new units at the
 * tail, and puts the unrun rest of a dead worker's chunk back at the head.
 *
 * A job stays alive while a worker claims from it without the lock: its
 * ledger counts items of the job not yet in `done`, so the job is not
 * complete, and nobody frees it (terminate kills the workers first).
 *
 * Death. A worker's slot says what it held (the ledger's phase): CLAIMING,
 * maybe a chunk it took and did not write down yet: an unrun chunk past
 * its last claim that no slot holds (mp__pool_chunk_free; the pool thread
 * lets live workers that are CLAIMING write theirs down first); CLAIMED,
 * the chunk [first, first + n) and the item it ran (`current`); and the
 * items counted in its ledger, all final. The pool thread settles that
 * (thread.c). Death inside the lock: the lock is the robust mutex of the
 * sync area, so the next thread to take it gets MP_EOWNERDEAD. Every
 * holder writes its slot number to `holder` first, and the one step of a
 * worker that changes the queue under the lock is journaled, each part
 * ended by a single store:
 *   commit: slot.base_* = the job's counters;          phase = COMMITTING;
 *           the job's counters = base + the ledger;     ledger = IDLE, 0
 * The next holder finishes it (repair): written again from its journal --
 * absolute values, so writing them twice is writing them once. The other
 * stores (popping an exhausted unit, the completed list push) leave the
 * queue consistent whenever they stop. */
#include <sched.h>
#include <unistd.h>

#include "pool/shared.h"

void (*mp__pool_fault_hook)(int point);

/* A numbered point inside the queue lock where tests make a worker die. */
#define FAULT(point)                                                           \
  do {                                                                         \
    if (mp__pool_fault_hook)                                                   \
      mp__pool_fault_hook(point);                                              \
  } while (0)

/* Stores inside the queue lock are releases: wherever a holder dies, the
 * next holder sees every store it made before that point and none after
 * (the journal relies on that order). Loads under the lock need no more
 * than the lock's own ordering. */
#define PUT(p, v) atomic_store_explicit((p), (v), memory_order_release)
#define GET(p)    atomic_load_explicit((p), memory_order_relaxed)

static mp__pool_slot_t *slot_of(mp__pool_shared_t *ps, int32_t index) {
  return index >= 0 && (uint32_t)index < ps->nslots ? &ps->slots[index] : NULL;
}

/* Sets the job's counters from a base, as one commit of [first, first +
 * count); repeatable. */
static bool commit_from(mp__pool_shared_t *ps, mp__pool_job_t *job,
                        uint64_t base_done, uint64_t base_log, uint64_t first,
                        uint64_t count, bool *wake) {
  if (job->log) {
    job->log[2 * base_log] = first;
    job->log[2 * base_log + 1] = count;
    PUT(&job->log_count, base_log + 1);
  }
  FAULT(MP__FAULT_COMMIT_LOGGED);
  uint64_t done = base_done + count;
  PUT(&job->done, done);
  FAULT(MP__FAULT_COMMIT_COUNTED);
  bool complete = done == job->n;
  uint32_t flags = GET(&job->flags);
  /* Pushed at most once: a repeat finds it at the head, where the dead
   * holder left it (nobody else held the lock in between). */
  if (complete && (flags & MP__JOB_NOTIFY) && GET(&ps->completed) != job) {
    PUT(&job->next_completed, GET(&ps->completed));
    PUT(&ps->completed, job);
    FAULT(MP__FAULT_COMMIT_PUSHED);
  }
  if (complete || (flags & MP__JOB_EACH)) {
    /* Waiters announce themselves before they re-check `done`, and we
     * bump seq after storing it: one of the two sees the other. */
    atomic_fetch_add(&job->seq, 1);
    *wake = atomic_load(&job->waiters) > 0;
  }
  return complete;
}

bool mp__pool_commit(mp__pool_shared_t *ps, mp__pool_job_t *job, uint64_t first,
                     uint64_t count, bool *wake) {
  return commit_from(ps, job, GET(&job->done), GET(&job->log_count), first,
                     count, wake);
}

bool mp__pool_flush(mp__pool_shared_t *ps, mp__pool_slot_t *slot, bool *wake) {
  assert(mp__mutex_is_mine(&ps->qlock));
  uint64_t ran = GET(&slot->ledger) / MP__LEDGER_RAN;
  if (ran == 0)
    return false;
  mp__pool_job_t *job = GET(&slot->job);
  PUT(&slot->base_done, GET(&job->done));
  PUT(&slot->base_log, GET(&job->log_count));
  FAULT(MP__FAULT_COMMIT_JOURNAL);
  PUT(&slot->ledger, mp__ledger(MP__PHASE_COMMITTING, ran));
  FAULT(MP__FAULT_COMMITTING);
  /* The log (imap_unordered) wants a chunk per commit: such jobs commit
   * after every chunk, whose first item is still in the slot. */
  bool complete =
      commit_from(ps, job, GET(&slot->base_done), GET(&slot->base_log),
                  GET(&slot->first), ran, wake);
  PUT(&slot->ledger, mp__ledger(MP__PHASE_IDLE, 0));
  FAULT(MP__FAULT_COMMITTED);
  return complete;
}

/* Takes the unit at the head out of the queue. */
static void pop(mp__pool_shared_t *ps, mp__pool_unit_t *u) {
  PUT(&ps->head, GET(&u->next));
  FAULT(MP__FAULT_POPPED);
  PUT(&u->job->queued, GET(&u->job->queued) - 1);
}

/* Pops the exhausted units at the head; returns the first with work. */
static mp__pool_unit_t *first_with_work(mp__pool_shared_t *ps) {
  mp__pool_unit_t *u;
  while ((u = GET(&ps->head)) && GET(&u->cursor) >= u->end)
    pop(ps, u);
  return u;
}

bool mp__pool_claim_from(mp__pool_shared_t *ps, mp__pool_slot_t *slot,
                         mp__pool_unit_t *u) {
  (void)ps;
  uint64_t ran = GET(&slot->ledger) / MP__LEDGER_RAN;
  if (GET(&slot->unit) != u) {
    /* A new unit: a scan for our claim starts at its start; within one
     * unit (claims without the lock) our last claim is where it starts. */
    PUT(&slot->unit, u);
    PUT(&slot->job, u->job);
    PUT(&slot->first, u->start);
  }
  FAULT(MP__FAULT_CLAIM_WRITTEN);
  PUT(&slot->ledger, mp__ledger(MP__PHASE_CLAIMING, ran));
  FAULT(MP__FAULT_CLAIMING);
  uint64_t first = atomic_fetch_add(&u->cursor, u->chunk);
  if (first >= u->end) {
    PUT(&slot->ledger, mp__ledger(MP__PHASE_IDLE, ran));
    return false;
  }
  FAULT(MP__FAULT_CLAIM_MOVED);
  PUT(&slot->first, first);
  PUT(&slot->n, u->end - first < u->chunk ? u->end - first : u->chunk);
  PUT(&slot->current, MP__NO_ITEM);
  PUT(&slot->ledger, mp__ledger(MP__PHASE_CLAIMED, ran));
  FAULT(MP__FAULT_CLAIMED);
  return true;
}

bool mp__pool_claim(mp__pool_shared_t *ps, mp__pool_slot_t *slot) {
  assert(mp__mutex_is_mine(&ps->qlock));
  mp__pool_unit_t *u;
  /* A unit whose last chunk another worker took leaves the head at the
   * next turn of first_with_work; one whose last chunk we took, at once
   * (an apply's job is then unlinked before it completes). */
  /* The slot's unit is written again: a unit at the address of one it
   * claimed from before may be another, of another job. */
  PUT(&slot->unit, NULL);
  while ((u = first_with_work(ps))) {
    if (mp__pool_claim_from(ps, slot, u)) {
      if (GET(&u->cursor) >= u->end)
        pop(ps, u);
      return true;
    }
  }
  return false;
}

/* Whether the chunk of u at `first` is unrun and no slot's claim says it
 * holds it. */
static bool chunk_free(mp__pool_shared_t *ps, const mp__pool_unit_t *u,
                       uint64_t first) {
  int32_t free_state =
      first == u->start ? u->first_state : (int32_t)MP__ITEM_PENDING;
  if (atomic_load(&u->job->items[first].state) != free_state)
    return false;
  for (uint32_t i = 0; i < ps->nslots; i++) {
    mp__pool_slot_t *s = &ps->slots[i];
    if (mp__slot_phase(s) == MP__PHASE_CLAIMED && GET(&s->unit) == u &&
        GET(&s->first) == first)
      return false;
  }
  return true;
}

/* Waits until no live worker is in the middle of a claim of unit u (a few
 * instructions, unless it was stopped): then every chunk taken from u is
 * written down, or held by a dead worker. A yield, not a futex wait: the
 * worker wakes nobody when it writes its claim down (that would cost every
 * claim a system call), and a sleeping wait would only poll its word. */
static void let_claims_land(mp__pool_shared_t *ps, const mp__pool_slot_t *dead,
                            const mp__pool_unit_t *u) {
  for (uint32_t i = 0; i < ps->nslots; i++) {
    mp__pool_slot_t *s = &ps->slots[i];
    uint64_t ledger = atomic_load(&s->ledger);
    if (s == dead || (ledger & MP__LEDGER_PHASE) != MP__PHASE_CLAIMING ||
        GET(&s->unit) != u)
      continue;
    mp__owner_t owner = atomic_load(&s->owner);
    while (atomic_load(&s->ledger) == ledger &&
           !(owner != MP__OWNER_NONE && mp__owner_dead(owner)))
      sched_yield();
  }
}

void mp__pool_settle_claiming(mp__pool_shared_t *ps, mp__pool_slot_t *slot) {
  assert(mp__mutex_is_mine(&ps->qlock));
  mp__pool_unit_t *u = GET(&slot->unit);
  uint64_t end = atomic_load(&u->cursor);
  end = end < u->end ? end : u->end;
  let_claims_land(ps, slot, u);
  for (uint64_t k = GET(&slot->first); k < end; k += u->chunk)
    if (chunk_free(ps, u, k))
      mp__pool_give_back(ps, u->job, k,
                         u->end - k < u->chunk ? u->end : k + u->chunk,
                         u->losses, MP_EWORKER);
}

/* Finishes the step the dead holder was in the middle of. A claim under
 * the lock (the holder's ledger then counts nothing) is settled here: a
 * chunk it took and did not write down keeps its job from completing
 * only once given back. A written claim the pool thread settles. */
static void repair(mp__pool_shared_t *ps) {
  mp__pool_slot_t *slot = slot_of(ps, GET(&ps->holder));
  if (!slot)
    return;
  uint64_t ledger = GET(&slot->ledger);
  if ((ledger & MP__LEDGER_PHASE) == MP__PHASE_CLAIMING) {
    mp__pool_settle_claiming(ps, slot);
    PUT(&slot->ledger, mp__ledger(MP__PHASE_IDLE, 0));
    return;
  }
  if ((ledger & MP__LEDGER_PHASE) != MP__PHASE_COMMITTING)
    return;
  mp__pool_job_t *job = GET(&slot->job);
  bool wake = false;
  bool complete =
      commit_from(ps, job, GET(&slot->base_done), GET(&slot->base_log),
                  GET(&slot->first), ledger / MP__LEDGER_RAN, &wake);
  PUT(&slot->ledger, mp__ledger(MP__PHASE_IDLE, 0));
  if (wake)
    mp__pool_wake_job(job);
  if (complete && (GET(&job->flags) & MP__JOB_NOTIFY))
    mp__pool_notify(ps);
}

int mp__pool_lock(mp__pool_shared_t *ps, int32_t holder) {
  int rc = mp__mutex_acquire_until(&ps->qlock, MP__NO_DEADLINE);
  if (rc == MP_EOWNERDEAD) {
    repair(ps);
    rc = 0;
  }
  if (rc == 0)
    PUT(&ps->holder, holder);
  return rc;
}

void mp__pool_unlock(mp__pool_shared_t *ps) {
  PUT(&ps->holder, MP__NO_HOLDER);
  mp__mutex_release(&ps->qlock);
}

void mp__pool_enqueue(mp__pool_shared_t *ps, mp__pool_unit_t *unit,
                      bool at_head) {
  mp__pool_unit_t *head = GET(&ps->head);
  PUT(&unit->job->queued, GET(&unit->job->queued) + 1);
  PUT(&unit->next, NULL);
  if (!head) {
    PUT(&ps->tail, unit);
    PUT(&ps->head, unit);
  } else if (at_head) {
    PUT(&unit->next, head);
    PUT(&ps->head, unit);
  } else {
    PUT(&GET(&ps->tail)->next, unit);
    PUT(&ps->tail, unit);
  }
  atomic_fetch_add(&ps->work_seq, 1);
}

bool mp__pool_requeue(mp__pool_shared_t *ps, mp__pool_job_t *job, uint64_t from,
                      uint64_t to, uint32_t losses) {
  mp__pool_unit_t *u = mp__shm_alloc(sizeof *u);
  if (!u)
    return false;
  u->job = job;
  atomic_store(&u->cursor, from);
  u->start = from;
  u->end = to;
  u->chunk = job->unit.chunk;
  u->first_state = MP__ITEM_PENDING;
  u->losses = losses;
  /* The first item of a chunk that was claimed: a claim of the old unit
   * must not take it again, the new unit's first claim takes it. */
  int32_t state = atomic_load(&job->items[from].state);
  if (!mp__pool_item_final(state) && state != MP__ITEM_PENDING) {
    /* A value of its own: an older unit that moved it too never sees its
     * own value again. */
    u->first_state = MP__ITEM_MOVED + (int32_t)(job->moves++ % MP__ITEM_MOVES);
    PUT(&job->items[from].state, u->first_state);
  }
  u->more = job->unit.more; /* freed with the job */
  job->unit.more = u;
  mp__pool_enqueue(ps, u, true);
  return true;
}

void mp__pool_give_back(mp__pool_shared_t *ps, mp__pool_job_t *job,
                        uint64_t from, uint64_t to, uint32_t losses, int code) {
  assert(mp__mutex_is_mine(&ps->qlock));
  if (mp__pool_requeue(ps, job, from, to, losses))
    return;
  for (uint64_t k = from; k < to; k++)
    mp__pool_item_set(job, k, code, 0);
  bool wake = false;
  if (mp__pool_commit(ps, job, from, to - from, &wake) &&
      (GET(&job->flags) & MP__JOB_NOTIFY))
    mp__pool_notify(ps);
  if (wake)
    mp__pool_wake_job(job);
}

void mp__pool_purge(mp__pool_shared_t *ps, const mp__pool_job_t *job) {
  mp__pool_unit_t *prev = NULL, *u = GET(&ps->head);
  while (u) {
    mp__pool_unit_t *next = GET(&u->next);
    if (u->job != job) {
      prev = u;
    } else {
      if (prev)
        PUT(&prev->next, next);
      else
        PUT(&ps->head, next);
      if (!next && prev)
        PUT(&ps->tail, prev);
      PUT(&u->job->queued, GET(&u->job->queued) - 1);
    }
    u = next;
  }
}

bool mp__pool_unlinked(mp__pool_shared_t *ps, const mp__pool_job_t *job) {
  return atomic_load(&job->queued) == 0 && atomic_load(&ps->qlock.word) == 0;
}

bool mp__pool_has_work(mp__pool_shared_t *ps) {
  return first_with_work(ps) != NULL;
}

void mp__pool_wake_workers(mp__pool_shared_t *ps, int n) {
  /* A spinner sees the work without a call; taking it off the mask makes
   * sure that another piece of work wakes another worker. */
  uint64_t mask = atomic_load(&ps->spinners);
  while (n > 0 && mask) {
    if (atomic_compare_exchange_weak(&ps->spinners, &mask, mask & (mask - 1)))
      n--;
  }
  if (n == 0)
    return;
  for (uint32_t i = 0; i < ps->nslots; i++) {
    if (atomic_load(&ps->slots[i].sleeping)) {
      mp__futex_wake(&ps->work_seq, n);
      return;
    }
  }
}

void mp__pool_wake_job(mp__pool_job_t *job) {
  mp__futex_wake(&job->seq, INT_MAX);
}

void mp__pool_notify(const mp__pool_shared_t *ps) {
  uint64_t one = 1;
  /* EAGAIN (counter full) means it is already signalled. */
  ssize_t n = write(ps->event_fd, &one, sizeof one);
  (void)n;
}
