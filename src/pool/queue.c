/* The pool's work queue in shared memory: what workers and the parent do
 * under the queue lock, written so that a worker killed at any instruction
 * leaves no item lost and none counted twice.
 *
 * The queue is a FIFO of units, each a range of one job's items. A worker
 * claims the next chunk of the unit at the head (moving its cursor), runs
 * the chunk's items, and at its next turn under the lock commits the chunk
 * (adds it to the job's counters) and claims another. Exhausted units leave
 * the head lazily. The parent appends new units at the tail, and puts the
 * unrun rest of a dead worker's chunk back at the head.
 *
 * Death inside the lock. The lock is the robust mutex of the sync area, so
 * the next thread to take it gets MP_EOWNERDEAD. Every holder writes its
 * slot number to `holder` first, and a worker changes the queue in
 * journaled steps, each ended by a single store:
 *   claim:  slot.{unit, job, first, n, current} = ...; phase = CLAIMING;
 *           unit.cursor = first + n;                   phase = CLAIMED
 *   commit: slot.base_* = the job's counters;          phase = COMMITTING;
 *           the job's counters = base + the claim;     phase = IDLE
 * The next holder finishes the dead holder's step (repair): a CLAIMING
 * claim whose cursor has not moved is moved, so the chunk belongs to the
 * dead worker (the pool thread then fails its running item and queues the
 * rest), and a COMMITTING commit is written again from its journal --
 * absolute values, so writing them twice is writing them once. The other
 * stores (popping an exhausted unit, the completed list push) leave the
 * queue consistent whenever they stop. */
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
 * count) with `failed` failures; repeatable. */
static bool commit_from(mp__pool_shared_t *ps, mp__pool_job_t *job,
                        uint64_t base_done, uint64_t base_failed,
                        uint64_t base_log, uint64_t first, uint64_t count,
                        uint64_t failed, bool *wake) {
  if (job->log) {
    job->log[2 * base_log] = first;
    job->log[2 * base_log + 1] = count;
    PUT(&job->log_count, base_log + 1);
  }
  FAULT(MP__FAULT_COMMIT_LOGGED);
  PUT(&job->failed, base_failed + failed);
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
                     uint64_t count, uint64_t failed, bool *wake) {
  return commit_from(ps, job, GET(&job->done), GET(&job->failed),
                     GET(&job->log_count), first, count, failed, wake);
}

bool mp__pool_commit_claim(mp__pool_shared_t *ps, mp__pool_slot_t *slot,
                           uint64_t failed, bool *wake) {
  mp__pool_job_t *job = GET(&slot->job);
  PUT(&slot->base_done, GET(&job->done));
  PUT(&slot->base_failed, GET(&job->failed));
  PUT(&slot->base_log, GET(&job->log_count));
  PUT(&slot->commit_failed, failed);
  FAULT(MP__FAULT_COMMIT_JOURNAL);
  PUT(&slot->phase, MP__PHASE_COMMITTING);
  FAULT(MP__FAULT_COMMITTING);
  bool complete = commit_from(ps, job, GET(&slot->base_done),
                              GET(&slot->base_failed), GET(&slot->base_log),
                              GET(&slot->first), GET(&slot->n), failed, wake);
  PUT(&slot->phase, MP__PHASE_IDLE);
  FAULT(MP__FAULT_COMMITTED);
  return complete;
}

/* Pops the exhausted units at the head; returns the first with work. */
static mp__pool_unit_t *first_with_work(mp__pool_shared_t *ps) {
  mp__pool_unit_t *u;
  while ((u = GET(&ps->head)) && GET(&u->cursor) >= u->end) {
    PUT(&ps->head, GET(&u->next));
    FAULT(MP__FAULT_POPPED);
  }
  return u;
}

bool mp__pool_claim(mp__pool_shared_t *ps, mp__pool_slot_t *slot) {
  mp__pool_unit_t *u = first_with_work(ps);
  if (!u)
    return false;
  uint64_t first = GET(&u->cursor);
  uint64_t n = u->end - first < u->chunk ? u->end - first : u->chunk;
  PUT(&slot->unit, u);
  PUT(&slot->job, u->job);
  PUT(&slot->first, first);
  PUT(&slot->n, n);
  PUT(&slot->current, MP__NO_ITEM);
  FAULT(MP__FAULT_CLAIM_WRITTEN);
  PUT(&slot->phase, MP__PHASE_CLAIMING);
  FAULT(MP__FAULT_CLAIMING);
  PUT(&u->cursor, first + n);
  FAULT(MP__FAULT_CLAIM_MOVED);
  PUT(&slot->phase, MP__PHASE_CLAIMED);
  FAULT(MP__FAULT_CLAIMED);
  return true;
}

/* Finishes the step the dead holder was in the middle of. */
static void repair(mp__pool_shared_t *ps) {
  mp__pool_slot_t *slot = slot_of(ps, GET(&ps->holder));
  if (!slot)
    return;
  uint32_t phase = GET(&slot->phase);
  if (phase == MP__PHASE_CLAIMING) {
    mp__pool_unit_t *u = GET(&slot->unit);
    uint64_t first = GET(&slot->first);
    if (GET(&u->cursor) == first)
      PUT(&u->cursor, first + GET(&slot->n));
    PUT(&slot->phase, MP__PHASE_CLAIMED);
  } else if (phase == MP__PHASE_COMMITTING) {
    mp__pool_job_t *job = GET(&slot->job);
    bool wake = false;
    bool complete =
        commit_from(ps, job, GET(&slot->base_done), GET(&slot->base_failed),
                    GET(&slot->base_log), GET(&slot->first), GET(&slot->n),
                    GET(&slot->commit_failed), &wake);
    PUT(&slot->phase, MP__PHASE_IDLE);
    if (wake)
      mp__pool_wake_job(job);
    if (complete && (GET(&job->flags) & MP__JOB_NOTIFY))
      mp__pool_notify(ps);
  }
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
  u->end = to;
  u->chunk = job->unit.chunk;
  u->losses = losses;
  u->more = job->unit.more; /* freed with the job */
  job->unit.more = u;
  mp__pool_enqueue(ps, u, true);
  return true;
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
    }
    u = next;
  }
}

bool mp__pool_has_work(mp__pool_shared_t *ps) {
  return first_with_work(ps) != NULL;
}

void mp__pool_wake_workers(mp__pool_shared_t *ps, int n) {
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
