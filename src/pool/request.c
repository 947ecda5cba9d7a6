/* A pool request's lifetime, in the parent (see parent.h): the blocks it
 * holds, waiting for it, its result, and freeing it once the user's handle
 * and the pool thread are both done with it. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/parent.h"

/* A waiter spins this long before it sleeps: a short task finishes within
 * it, and the worker then needs no wake-up call. */
#define WAIT_SPIN_NS 20000
/* The blocks a pool keeps for reuse, in bytes at most. */
#define CACHE_MAX_BYTES (64u << 20)

/* ---- Shared-memory blocks, kept for reuse -----------------------------
 * A fresh large block costs page faults in every process that touches it,
 * and a freed one is returned to the system: a pool that maps again and
 * again reuses its blocks instead. */

mp__pool_block_t mp__pool_block_get(mp_pool_t *pool, size_t size) {
  mp__pool_block_t b = {NULL, 0};
  pthread_mutex_lock(&pool->lock);
  size_t best = SIZE_MAX;
  for (size_t i = 0; i < pool->cache_count; i++) {
    size_t cap = pool->cache[i].cap;
    if (cap >= size && cap / 2 <= size &&
        (best == SIZE_MAX || cap < pool->cache[best].cap))
      best = i;
  }
  if (best != SIZE_MAX) {
    b = pool->cache[best];
    pool->cache[best] = pool->cache[--pool->cache_count];
    pool->cache_bytes -= b.cap;
  }
  pthread_mutex_unlock(&pool->lock);
  if (!b.ptr) {
    b.ptr = mp__shm_alloc(size);
    b.cap = size;
  }
  return b;
}

/* With pool->lock held. */
static void block_put_locked(mp_pool_t *pool, mp__pool_block_t b) {
  assert(mp__pthread_mutex_busy(&pool->lock));
  if (!b.ptr)
    return;
  size_t slots = sizeof pool->cache / sizeof pool->cache[0];
  if (pool->freed || pool->cache_count == slots ||
      pool->cache_bytes + b.cap > CACHE_MAX_BYTES) {
    mp__shm_free(b.ptr);
    return;
  }
  pool->cache[pool->cache_count++] = b;
  pool->cache_bytes += b.cap;
}

/* ---- Requests ---------------------------------------------------------- */

bool mp__pool_request_ready(struct mp_async *r) {
  if (r->has_callbacks)
    return atomic_load(&r->callbacks_done);
  return atomic_load(&r->job->done) == r->job->n;
}

/* Waits on the job's word until ready(arg). The waiter counts itself in
 * `waiters` before the last check, the committer bumps `seq` before it
 * reads `waiters`: either the committer wakes us or our futex_wait finds
 * seq moved. */
int mp__pool_job_wait(mp__pool_job_t *job, bool (*ready)(void *), void *arg,
                      double timeout) {
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  if (ready(arg))
    return 0;
  mp__deadline_t deadline = mp__deadline_in(timeout);
  bool spun = false;
  for (;;) {
    uint32_t seq = atomic_load(&job->seq);
    if (ready(arg))
      return 0;
    if (mp__deadline_expired(&deadline))
      return MP_ETIMEDOUT;
    if (!spun) {
      /* A short task finishes within the spin: no sleep, and the worker
       * needs no wake-up call (waking a sleeper costs tens of us on a
       * virtual machine). */
      spun = true;
      mp__futex_spin_for(&job->seq, seq, WAIT_SPIN_NS);
      continue;
    }
    atomic_fetch_add(&job->waiters, 1);
    int rc = ready(arg) ? 0 : mp__futex_wait(&job->seq, seq, &deadline);
    atomic_fetch_sub(&job->waiters, 1);
    if (rc == MP_EINTR)
      return rc;
  }
}

static bool request_ready_cb(void *arg) {
  return mp__pool_request_ready(arg);
}

int mp__pool_request_wait(struct mp_async *r, double timeout) {
  return mp__pool_job_wait(r->job, request_ready_cb, r, timeout);
}

/* The first failing item of a map, in input order. */
static void first_failure(const mp__pool_job_t *job, int *result,
                          int *task_code) {
  for (uint64_t k = 0; k < job->n; k++) {
    int32_t state = atomic_load(&job->items[k].state);
    if (state != MP__ITEM_OK) {
      *result = state;
      *task_code = state == MP_ETASK ? job->items[k].task_code : 0;
      return;
    }
  }
}

/* Copies the outputs of the items that succeeded to the user's array. */
static void copy_outputs(struct mp_async *r) {
  const mp__pool_job_t *job = r->job;
  size_t size = job->out_size;
  if (!r->user_out || size == 0)
    return;
  if (atomic_load(&job->failed) == 0) {
    memcpy(r->user_out, job->out, job->n * size);
    return;
  }
  uint64_t k = 0;
  while (k < job->n) {
    uint64_t start = k;
    while (k < job->n && atomic_load(&job->items[k].state) == MP__ITEM_OK)
      k++;
    if (k > start)
      memcpy((char *)r->user_out + start * size, job->out + start * size,
             (k - start) * size);
    k++;
  }
}

void mp__pool_finalize(struct mp_async *r) {
  pthread_mutex_lock(&r->lock);
  if (!r->finalized) {
    mp__pool_job_t *job = r->job;
    r->result = r->task_code = 0;
    if (atomic_load(&job->failed) > 0)
      first_failure(job, &r->result, &r->task_code);
    if (job->kind == MP__JOB_MAP)
      copy_outputs(r);
    r->finalized = true;
  }
  pthread_mutex_unlock(&r->lock);
}

void mp__pool_result(const struct mp_async *r, const void **result,
                     size_t *len) {
  const mp__pool_job_t *job = r->job;
  if (job->kind == MP__JOB_APPLY) {
    char *big = atomic_load(&job->big_out);
    *result = big ? big : job->out;
    *len = atomic_load(&job->out_len);
  } else {
    *result = r->user_out ? r->user_out : job->out;
    *len = job->n * job->out_size;
  }
}

/* Frees a request nobody uses any more. */
void mp__pool_request_destroy(struct mp_async *r) {
  mp_pool_t *pool = r->pool;
  mp__pool_job_t *job = r->job;
  pthread_mutex_lock(&pool->lock);
  if (r->prev)
    r->prev->next = r->next;
  else
    pool->requests = r->next;
  if (r->next)
    r->next->prev = r->prev;
  if (!pool->freed && !mp__pool_unlinked(pool->ps, job) &&
      mp__pool_lock(pool->ps, MP__NO_HOLDER) == 0) {
    mp__pool_purge(pool->ps, job);
    mp__pool_unlock(pool->ps);
  }
  if (job->kind == MP__JOB_APPLY && atomic_load(&job->big_out))
    mp__shm_free(atomic_exchange(&job->big_out, NULL));
  for (mp__pool_unit_t *u = job->unit.more, *next; u; u = next) {
    next = u->more;
    mp__shm_free(u);
  }
  for (int i = MP__BLOCK_COUNT - 1; i >= 0; i--)
    block_put_locked(pool, r->blocks[i]);
  bool last = --pool->refs == 0;
  pthread_mutex_unlock(&pool->lock);
  if (r->has_ready_fd)
    close(r->ready_fd);
  pthread_mutex_destroy(&r->lock);
  free(r);
  if (last) {
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->changed);
    free(pool);
  }
}

void mp__pool_request_signal(struct mp_async *r) {
  assert(mp__pthread_mutex_busy(&r->pool->lock));
  if (!r->has_ready_fd)
    return;
  uint64_t one = 1;
  /* Nonblocking: it can only fail when the counter is full, which is
   * readable anyway. */
  ssize_t n = write(r->ready_fd, &one, sizeof one);
  (void)n;
}

void mp__pool_thread_release(struct mp_async *r) {
  pthread_mutex_lock(&r->pool->lock);
  r->thread_done = true;
  mp__pool_request_signal(r); /* ready: completed, callbacks run */
  bool destroy = !r->handle_alive;
  pthread_mutex_unlock(&r->pool->lock);
  if (destroy)
    mp__pool_request_destroy(r);
}

/* The user is done with the handle. */
void mp__pool_request_release(struct mp_async *r) {
  mp_pool_t *pool = r->pool;
  bool destroy = true;
  pthread_mutex_lock(&pool->lock);
  r->handle_alive = false;
  if (!r->thread_done && !pool->thread_exited) {
    if (r->has_callbacks) {
      destroy = false; /* the pool thread finishes it */
    } else if (atomic_load(&r->job->done) == r->job->n &&
               !(atomic_load(&r->job->flags) & MP__JOB_NOTIFY)) {
      /* Complete, and nobody flags it but us (under pool->lock). */
    } else if (mp__pool_lock(pool->ps, MP__NO_HOLDER) == 0) {
      /* Not complete: the pool thread is told at completion and frees it
       * then. The flag and the completion are both under the queue lock.
       * Flagged already (mp_async_fd): the job may be on the completed
       * list, which the pool thread has not drained yet; it frees it. */
      if (atomic_load(&r->job->done) < r->job->n ||
          (atomic_load(&r->job->flags) & MP__JOB_NOTIFY)) {
        atomic_fetch_or(&r->job->flags, MP__JOB_NOTIFY);
        destroy = false;
      }
      mp__pool_unlock(pool->ps);
    }
  }
  pthread_mutex_unlock(&pool->lock);
  if (destroy)
    mp__pool_request_destroy(r);
}

void mp__pool_request_discard(struct mp_async *r) {
  mp_pool_t *pool = r->pool;
  pthread_mutex_lock(&pool->lock);
  for (int i = 0; i < MP__BLOCK_COUNT; i++)
    block_put_locked(pool, r->blocks[i]);
  pthread_mutex_unlock(&pool->lock);
  pthread_mutex_destroy(&r->lock);
  free(r);
}
