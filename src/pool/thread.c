/* The pool thread: one per pool, in the parent. It
 *   - starts the workers, so that they die with it (a daemon's parent-death
 *     signal follows the thread that started it), and replaces those that
 *     end (killed, crashed, or done with maxtasksperchild);
 *   - settles a dead worker's chunk: the items it finished are committed,
 *     the one it was running fails (MP_EWORKER, or MP_ETIMEDOUT when the
 *     watch killed it), the rest go back to the head of the queue;
 *   - watches task_timeout by sampling each worker's `busy` counter (odd
 *     while a task runs): the same odd value seen for task_timeout means
 *     the same task has run at least that long, and the worker is killed;
 *   - finishes the jobs that have callbacks or whose handle was freed, and
 *     runs the callbacks;
 *   - carries out terminate, and breaks the pool when a worker dies before
 *     it is ready (a failing initializer), instead of restarting it forever.
 * It sleeps in poll() on the workers' sentinels and the pool's eventfd,
 * which workers and the parent's threads write when they need it. */
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pool/parent.h"

/* How a dead worker's running item ends: a code, or run again (the watch
 * killed it just after the task that timed out had finished). */
#define RUN_AGAIN 1

/* The timeout watch samples this many times per task_timeout, within
 * these bounds (ms): a task is killed between task_timeout and
 * task_timeout + 2 ticks after it started. */
#define TICKS_PER_TIMEOUT 8
#define TICK_MIN_MS       1
#define TICK_MAX_MS       100

/* A worker killed (SIGKILL, SIGTERM) before it was ready is replaced, as
 * one killed later; this many in a row in one slot break the pool. */
#define MAX_EARLY_KILLS 8

/* ---- Workers ------------------------------------------------------------ */

/* The pool lock guards proc (mp_pool_workers reads it); the rest of the
 * record is the pool thread's. */
static void set_proc(mp_pool_t *pool, uint32_t i, mp_process_t *proc) {
  pthread_mutex_lock(&pool->lock);
  pool->workers[i].proc = proc;
  pthread_mutex_unlock(&pool->lock);
}

static int start_worker(mp_pool_t *pool, uint32_t i) {
  mp__pool_slot_t *slot = &pool->ps->slots[i];
  atomic_store(&slot->state, MP__SLOT_STARTING);
  atomic_store(&slot->ledger, 0);
  atomic_store(&slot->owner, MP__OWNER_NONE);
  atomic_store(&slot->sleeping, 0);
  if (i < 64)
    atomic_fetch_and(&pool->ps->spinners, ~((uint64_t)1 << i));
  atomic_store(&slot->busy, 0);
  atomic_store(&slot->current, MP__NO_ITEM);
  atomic_store(&slot->unit, NULL);
  atomic_store(&slot->job, NULL);
  mp_process_opts_t opts = {.daemon = true, .ctx = pool->ctx};
  mp_process_t *p =
      mp_process_new_type(&mp__pool_worker_types[pool->method], &opts);
  if (!p)
    return -errno;
  mp__pool_worker_arg_t *arg = mp_process_data(p);
  arg->ps = pool->ps;
  arg->slot = i;
  int rc = mp_process_start(p);
  if (rc < 0) {
    mp_process_free(p);
    return rc;
  }
  mp__pool_worker_t *w = &pool->workers[i];
  w->seen_busy = w->seen_at = w->kill_busy = 0;
  w->killed = false;
  set_proc(pool, i, p);
  return 0;
}

/* Reaps a worker that ended (or is ending); returns its exit code. */
static int reap(mp_pool_t *pool, uint32_t i) {
  mp_process_t *p = pool->workers[i].proc;
  int code = 0;
  mp__process_join_until(p, MP__NO_DEADLINE); /* not interruptible */
  mp_process_exitcode(p, &code);
  set_proc(pool, i, NULL);
  mp_process_free(p);
  return code;
}

static uint32_t live_workers(const mp_pool_t *pool) {
  uint32_t live = 0;
  for (int i = 0; i < pool->processes; i++)
    live += pool->workers[i].proc != NULL;
  return live;
}

/* ---- Settling the work of dead workers --------------------------------- */

static void commit_and_wake(mp__pool_shared_t *ps, mp__pool_job_t *job,
                            uint64_t first, uint64_t count) {
  bool wake = false;
  mp__pool_commit(ps, job, first, count, &wake);
  if (wake)
    mp__pool_wake_job(job);
}

/* Under the lock: puts items [from, to) of job back at the head of the
 * queue. Without memory for a unit they fail with `reason` instead. */
static void requeue(mp__pool_shared_t *ps, mp__pool_unit_t *unit, uint64_t from,
                    uint64_t to, int reason) {
  mp__pool_give_back(ps, unit->job, from, to, unit->losses,
                     reason == RUN_AGAIN ? MP_EWORKER : reason);
}

/* Under the lock: the claim of a dead worker. The items it finished are
 * final; its running item fails with `reason` (or stays pending with
 * RUN_AGAIN); the rest are queued again, or left pending (terminate).
 * Returns the count of final items, from first on. */
static uint64_t settle_claim(mp__pool_shared_t *ps, mp__pool_slot_t *slot,
                             int reason, bool requeue_rest) {
  mp__pool_job_t *job = atomic_load(&slot->job);
  uint64_t first = atomic_load(&slot->first), n = atomic_load(&slot->n);
  uint64_t cur = atomic_load(&slot->current);
  uint64_t count = 0;
  if (cur != MP__NO_ITEM && cur >= first && cur < first + n) {
    /* Items run in order: those before the current one are final. */
    count = cur - first;
    int32_t state = atomic_load(&job->items[cur].state);
    if (mp__pool_item_final(state)) {
      count++;
    } else if (reason != RUN_AGAIN) {
      mp__pool_item_set(job, cur, reason, 0);
      count++;
    }
  }
  if (count < n && requeue_rest)
    requeue(ps, atomic_load(&slot->unit), first + count, first + n, reason);
  return count;
}

/* Under the lock: what a dead worker's slot holds. Its claim is settled
 * (settle_claim), or the chunk it took while claiming goes back to the
 * queue; then the items its ledger counts and those of its claim that
 * are final are committed. Queued before the commit: the commit may
 * complete the job, which its owner may then free at once. */
static void settle_slot(mp__pool_shared_t *ps, mp__pool_slot_t *slot,
                        int reason, bool requeue_rest) {
  uint64_t ledger = atomic_load(&slot->ledger);
  uint32_t phase = (uint32_t)(ledger & MP__LEDGER_PHASE);
  mp__pool_job_t *job = atomic_load(&slot->job);
  uint64_t count = 0;
  if (phase == MP__PHASE_CLAIMED)
    count = settle_claim(ps, slot, reason, requeue_rest);
  else if (phase == MP__PHASE_CLAIMING && requeue_rest)
    mp__pool_settle_claiming(ps, slot);
  /* One commit: a job with a log (imap_unordered) commits every chunk,
   * so that either its ledger counts the chunk at `first`, or its claim
   * does. */
  count += ledger / MP__LEDGER_RAN;
  atomic_store(&slot->ledger, mp__ledger(MP__PHASE_IDLE, 0));
  if (count > 0)
    commit_and_wake(ps, job, atomic_load(&slot->first), count);
}

/* A worker ended on its own or by the timeout watch. */
static void handle_death(mp_pool_t *pool, uint32_t i) {
  mp__pool_shared_t *ps = pool->ps;
  mp__pool_slot_t *slot = &ps->slots[i];
  mp__pool_worker_t w = pool->workers[i];
  bool ready = atomic_load(&slot->state) == MP__SLOT_READY;
  int code = reap(pool, i);
  if (!ready) {
    /* Its initializer failed, or it could not start: restarting it would
     * only fail again. Unless it was killed from outside while starting. */
    bool killed = code == -SIGKILL || code == -SIGTERM;
    if (killed && ++pool->workers[i].early_kills < MAX_EARLY_KILLS)
      return;
    if (!pool->breaking) {
      pool->breaking = MP_EBROKEN;
      pool->break_exitcode = code;
    }
    return;
  }
  pool->workers[i].early_kills = 0;
  mp__debug_log(MP_DEBUG_INFO,
                "pool worker %u ended with exit code %d: it is replaced", i,
                code);
  int reason = MP_EWORKER;
  if (w.killed)
    reason = atomic_load(&slot->busy) == w.kill_busy ? MP_ETIMEDOUT : RUN_AGAIN;
  if (mp__pool_lock(ps, MP__NO_HOLDER) < 0)
    return;
  settle_slot(ps, slot, reason, true);
  atomic_store(&slot->sleeping, 0);
  if (i < 64)
    atomic_fetch_and(&ps->spinners, ~((uint64_t)1 << i));
  mp__pool_unlock(ps);
}

/* ---- Terminating and breaking ------------------------------------------ */

/* Under both locks: fails every pending item of a job with code. */
static void fail_pending(mp__pool_shared_t *ps, mp__pool_job_t *job, int code) {
  uint64_t k = 0;
  while (k < job->n) {
    if (mp__pool_item_final(atomic_load(&job->items[k].state))) {
      k++;
      continue;
    }
    uint64_t start = k;
    while (k < job->n &&
           !mp__pool_item_final(atomic_load(&job->items[k].state)))
      mp__pool_item_set(job, k++, code, 0);
    commit_and_wake(ps, job, start, k - start);
  }
}

/* Kills every worker and fails everything pending with code. A broken
 * pool says so in the same locked region that fails its pending work, so
 * that every submission is either failed here or refused. */
static void stop_all(mp_pool_t *pool, int code) {
  mp__pool_shared_t *ps = pool->ps;
  if (pool->backend)
    pool->backend->stop(pool->backend_arg);
  if (mp__pool_lock(ps, MP__NO_HOLDER) < 0)
    return;
  atomic_store(&ps->state, MP__POOL_TERMINATING);
  mp__pool_unlock(ps);
  for (int i = 0; i < pool->processes; i++)
    if (pool->workers[i].proc)
      mp_process_kill(pool->workers[i].proc);
  for (uint32_t i = 0; i < (uint32_t)pool->processes; i++)
    if (pool->workers[i].proc)
      reap(pool, i);

  pthread_mutex_lock(&pool->lock);
  if (pool->breaking && !pool->error) {
    pool->error = pool->breaking;
    pool->exitcode = pool->break_exitcode;
  }
  if (mp__pool_lock(ps, MP__NO_HOLDER) == 0) {
    for (uint32_t i = 0; i < ps->nslots; i++)
      settle_slot(ps, &ps->slots[i], code, false);
    for (struct mp_async *r = pool->requests; r; r = r->next)
      if (atomic_load(&r->job->done) < r->job->n)
        fail_pending(ps, r->job, code);
    atomic_store(&ps->head, NULL);
    mp__pool_unlock(ps);
  }
  pthread_mutex_unlock(&pool->lock);
}

/* ---- The timeout watch ------------------------------------------------- */

static int tick_ms(const mp_pool_t *pool) {
  if (!(pool->task_timeout > 0))
    return -1;
  double ms = pool->task_timeout * 1000.0 / TICKS_PER_TIMEOUT;
  if (ms < TICK_MIN_MS)
    return TICK_MIN_MS;
  return ms > TICK_MAX_MS ? TICK_MAX_MS : (int)ceil(ms);
}

static void watch_timeouts(mp_pool_t *pool) {
  uint64_t now = mp__now_ns();
  uint64_t limit = (uint64_t)(pool->task_timeout * 1e9);
  for (int i = 0; i < pool->processes; i++) {
    mp__pool_worker_t *w = &pool->workers[i];
    if (!w->proc || w->killed)
      continue;
    uint64_t busy = atomic_load(&pool->ps->slots[i].busy);
    if (!(busy & 1) || busy != w->seen_busy) {
      /* Idle, or another task than last time: it started after the
       * previous sample. */
      w->seen_busy = busy;
      w->seen_at = now;
    } else if (now - w->seen_at >= limit) {
      w->killed = true;
      w->kill_busy = busy;
      mp_process_kill(w->proc);
    }
  }
}

/* ---- Completed jobs and callbacks -------------------------------------- */

static void finish(struct mp_async *r) {
  if (r->has_callbacks) {
    mp__pool_finalize(r);
    if (r->result == 0 && r->opts.callback) {
      const void *result;
      size_t len;
      mp__pool_result(r, &result, &len);
      r->opts.callback(r->opts.arg, result, len);
    } else if (r->result != 0 && r->opts.error_callback) {
      r->opts.error_callback(r->opts.arg, r->result, r->task_code);
    }
    /* get() returns after the callback, as in Python. */
    atomic_store(&r->callbacks_done, true);
    atomic_fetch_add(&r->job->seq, 1);
    mp__pool_wake_job(r->job);
  }
  mp__pool_thread_release(r);
}

static void drain_completed(mp_pool_t *pool) {
  mp__pool_shared_t *ps = pool->ps;
  if (!atomic_load(&ps->completed) || mp__pool_lock(ps, MP__NO_HOLDER) < 0)
    return;
  mp__pool_job_t *job = atomic_exchange(&ps->completed, NULL);
  mp__pool_unlock(ps);
  while (job) {
    mp__pool_job_t *next = atomic_load(&job->next_completed);
    finish(job->request);
    job = next;
  }
}

/* ---- The loop ---------------------------------------------------------- */

static bool has_work(mp__pool_shared_t *ps) {
  if (mp__pool_lock(ps, MP__NO_HOLDER) < 0)
    return false;
  bool work = mp__pool_has_work(ps);
  mp__pool_unlock(ps);
  return work;
}

/* Waits for an event, then handles the workers that ended. */
static void wait_and_reap(mp_pool_t *pool) {
  struct pollfd fds[1 + pool->processes];
  uint32_t slot_of[1 + pool->processes];
  nfds_t count = 1;
  fds[0] = (struct pollfd){.fd = pool->event_fd, .events = POLLIN};
  for (int i = 0; i < pool->processes; i++) {
    if (!pool->workers[i].proc)
      continue;
    fds[count] = (struct pollfd){
        .fd = mp_process_sentinel(pool->workers[i].proc), .events = POLLIN};
    slot_of[count++] = (uint32_t)i;
  }
  if (poll(fds, count, tick_ms(pool)) <= 0)
    return; /* a tick, or EINTR */
  if (fds[0].revents) {
    uint64_t value;
    ssize_t n = read(pool->event_fd, &value, sizeof value);
    (void)n;
  }
  bool died = false;
  for (nfds_t k = 1; k < count; k++) {
    if (fds[k].revents) {
      handle_death(pool, slot_of[k]);
      died = true;
    }
  }
  if (died) /* the rest of their chunks is queued again */
    mp__pool_wake_workers(pool->ps, INT_MAX);
}

/* Whether a backend's slot still holds a claim. Its commit makes the slot
 * idle before it tells the pool thread. */
static bool backend_claims(const mp_pool_t *pool) {
  const mp__pool_shared_t *ps = pool->ps;
  for (uint32_t i = (uint32_t)pool->processes; i < ps->nslots; i++)
    if (atomic_load(&ps->slots[i].ledger) != 0)
      return true;
  return false;
}

static int respawn(mp_pool_t *pool, bool closed) {
  if (closed && !has_work(pool->ps))
    return 0;
  for (uint32_t i = 0; i < (uint32_t)pool->processes; i++) {
    if (pool->workers[i].proc)
      continue;
    int rc = start_worker(pool, i);
    if (rc < 0)
      return rc;
  }
  return 0;
}

static void run(mp_pool_t *pool) {
  bool stopped = false; /* workers killed for good: terminate or broken */
  for (;;) {
    wait_and_reap(pool);
    pthread_mutex_lock(&pool->lock);
    bool terminate = pool->terminate_requested && !pool->terminated;
    bool closed = pool->state != MP__POOL_RUNNING;
    bool broken = pool->breaking != 0;
    pthread_mutex_unlock(&pool->lock);

    if (terminate || (broken && !stopped)) {
      stop_all(pool, terminate ? MP_ECLOSED : MP_EBROKEN);
      stopped = true;
    }
    if (terminate) {
      pthread_mutex_lock(&pool->lock);
      pool->terminated = true;
      pthread_cond_broadcast(&pool->changed);
      pthread_mutex_unlock(&pool->lock);
    }
    if (pool->task_timeout > 0 && !stopped)
      watch_timeouts(pool);
    drain_completed(pool);
    if (!stopped) {
      int rc = respawn(pool, closed);
      if (rc < 0) {
        /* Broken from the next turn on. */
        pool->breaking = rc;
        mp__pool_notify(pool->ps);
      }
    }
    if ((closed || stopped) && live_workers(pool) == 0 && !has_work(pool->ps) &&
        !backend_claims(pool)) {
      if (closed || terminate || pool->terminated) {
        drain_completed(pool);
        return;
      }
    }
  }
}

static void block_signals(void) {
  /* Signals meant for the program go to its own threads; faults stay
   * deliverable. */
  sigset_t set;
  sigfillset(&set);
  sigdelset(&set, SIGSEGV);
  sigdelset(&set, SIGBUS);
  sigdelset(&set, SIGFPE);
  sigdelset(&set, SIGILL);
  sigdelset(&set, SIGABRT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
}

static void *pool_thread(void *arg) {
  mp_pool_t *pool = arg;
  block_signals();
  int rc = 0;
  for (uint32_t i = 0; i < (uint32_t)pool->processes && rc == 0; i++)
    rc = start_worker(pool, i);
  if (rc < 0)
    stop_all(pool, MP_ECLOSED);
  pthread_mutex_lock(&pool->lock);
  pool->thread_started = true;
  pool->start_failed = rc < 0;
  if (rc < 0)
    pool->error = rc;
  pthread_cond_broadcast(&pool->changed);
  pthread_mutex_unlock(&pool->lock);
  if (rc == 0)
    run(pool);
  pthread_mutex_lock(&pool->lock);
  pool->thread_exited = true;
  pthread_cond_broadcast(&pool->changed);
  pthread_mutex_unlock(&pool->lock);
  return NULL;
}

int mp__pool_thread_start(mp_pool_t *pool) {
  int rc = pthread_create(&pool->thread, NULL, pool_thread, pool);
  if (rc != 0)
    return -rc;
  pthread_mutex_lock(&pool->lock);
  while (!pool->thread_started)
    pthread_cond_wait(&pool->changed, &pool->lock);
  rc = pool->start_failed ? pool->error : 0;
  pthread_mutex_unlock(&pool->lock);
  if (rc < 0)
    pthread_join(pool->thread, NULL);
  return rc;
}
