/* The backend's side of the shared queue (see backend.h). A backend
 * slot is a worker slot that a thread of the parent drives: the same
 * claim and commit steps (queue.c), so that terminate settles it as
 * it settles a worker's, and the same wake-ups. */
#include <stdlib.h>

#include "pool/backend.h"

static mp__pool_slot_t *backend_slot(mp_pool_t *pool, uint32_t slot,
                                     int32_t *holder) {
  if (slot >= pool->backend_slots)
    abort(); /* the backend's own bug: never a silent overrun */
  *holder = pool->processes + (int32_t)slot;
  return &pool->ps->slots[*holder];
}

bool mp__pool_backend_claim(mp_pool_t *pool, uint32_t slot,
                            mp__pool_chunk_t *chunk) {
  mp__pool_shared_t *ps = pool->ps;
  int32_t holder;
  mp__pool_slot_t *s = backend_slot(pool, slot, &holder);
  if (atomic_load(&ps->state) == MP__POOL_TERMINATING ||
      mp__pool_lock(ps, holder) < 0)
    return false;
  bool claimed =
      atomic_load(&ps->state) != MP__POOL_TERMINATING && mp__pool_claim(ps, s);
  mp__pool_unlock(ps);
  if (!claimed)
    return false;
  const mp__pool_unit_t *unit = atomic_load(&s->unit);
  const mp__pool_job_t *job = atomic_load(&s->job);
  uint64_t first = atomic_load(&s->first);
  bool apply = job->kind == MP__JOB_APPLY;
  *chunk = (mp__pool_chunk_t){
      .apply = apply,
      .fn = &ps->fns[job->fn],
      .in = job->in + (apply ? 0 : first * job->in_size),
      .out = job->out + (apply ? 0 : first * job->out_size),
      .in_size = job->in_size,
      .out_size = job->out_size,
      .first = first,
      .n = atomic_load(&s->n),
      .losses = unit->losses,
  };
  return true;
}

/* Under the lock: the claim of s has run (its items are final); commits
 * it and tells whoever waits. */
static void commit_claim(mp__pool_shared_t *ps, mp__pool_slot_t *s) {
  mp__pool_job_t *job = atomic_load(&s->job);
  atomic_store(&s->ledger, mp__ledger(MP__PHASE_IDLE, atomic_load(&s->n)));
  bool wake = false;
  mp__pool_flush(ps, s, &wake);
  if (wake)
    mp__pool_wake_job(job);
}

void mp__pool_backend_commit(mp_pool_t *pool, uint32_t slot,
                             const mp__pool_outcome_t *outcomes,
                             uint64_t out_len) {
  mp__pool_shared_t *ps = pool->ps;
  int32_t holder;
  mp__pool_slot_t *s = backend_slot(pool, slot, &holder);
  if (mp__pool_lock(ps, holder) < 0)
    return;
  /* Terminate may have settled the claim already (then it is idle). */
  if (mp__slot_phase(s) == MP__PHASE_CLAIMED) {
    mp__pool_job_t *job = atomic_load(&s->job);
    uint64_t first = atomic_load(&s->first), n = atomic_load(&s->n);
    if (job->kind == MP__JOB_APPLY)
      atomic_store(&job->out_len, out_len);
    for (uint64_t k = 0; k < n; k++) {
      mp__pool_outcome_t o =
          outcomes ? outcomes[k] : (mp__pool_outcome_t){MP__ITEM_OK, 0};
      mp__pool_item_set(job, first + k, o.state,
                        o.state == MP_ETASK ? o.task_code : 0);
    }
    commit_claim(ps, s);
  }
  mp__pool_unlock(ps);
  mp__pool_notify(ps); /* the pool thread: join may be waiting for this */
}

bool mp__pool_backend_lost(mp_pool_t *pool, uint32_t slot, uint32_t retries) {
  mp__pool_shared_t *ps = pool->ps;
  int32_t holder;
  mp__pool_slot_t *s = backend_slot(pool, slot, &holder);
  if (mp__pool_lock(ps, holder) < 0)
    return false;
  bool queued = false;
  if (mp__slot_phase(s) == MP__PHASE_CLAIMED) {
    mp__pool_job_t *job = atomic_load(&s->job);
    uint64_t first = atomic_load(&s->first), n = atomic_load(&s->n);
    uint32_t losses = atomic_load(&s->unit)->losses + 1;
    queued = losses <= retries &&
             atomic_load(&ps->state) != MP__POOL_TERMINATING &&
             mp__pool_requeue(ps, job, first, first + n, losses);
    if (queued) {
      atomic_store(&s->ledger, mp__ledger(MP__PHASE_IDLE, 0));
    } else {
      for (uint64_t k = first; k < first + n; k++)
        mp__pool_item_set(job, k, MP_ELOST, 0);
      commit_claim(ps, s);
    }
  }
  mp__pool_unlock(ps);
  if (queued) /* the workers, or the pool thread to start them again */
    mp__pool_wake_workers(ps, INT_MAX);
  mp__pool_notify(ps);
  return queued;
}

void mp__pool_backend_drop(mp_pool_t *pool, uint32_t slot) {
  mp__pool_shared_t *ps = pool->ps;
  int32_t holder;
  mp__pool_slot_t *s = backend_slot(pool, slot, &holder);
  if (mp__pool_lock(ps, holder) < 0)
    return;
  atomic_store(&s->ledger, mp__ledger(MP__PHASE_IDLE, 0));
  mp__pool_unlock(ps);
}

void *mp__pool_backend_resolve(const mp__fnref_t *ref) {
  return mp__fn_decode(ref);
}
