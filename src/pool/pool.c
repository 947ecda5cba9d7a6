/* The process pool: Python's multiprocessing.Pool, built on the arena and
 * the futex core.
 *
 * Layout of the work (see pool.h for the shared structures):
 *   - a submission is a job in shared memory: its input (copied once, or
 *     used in place when already in the arena), its output array, and one
 *     result word per item; a map's job is one unit of n items handed out
 *     in chunks;
 *   - workers take chunks from the queue under one robust lock, run them
 *     straight from the input array into the output array, and commit them
 *     (queue.c, worker.c); a worker's death anywhere, even inside
 *     the lock, loses nothing (the journal of queue.c);
 *   - the caller of map/get waits on the job's futex word, woken by the
 *     worker that completes the job: no pipe, no thread hop;
 *   - the pool thread (thread.c) supervises: deaths, replacements,
 *     task_timeout, callbacks, terminate.
 *
 * The parent's records: a request (struct mp_async) per submission, in the
 * pool's list until the user freed its handle and the pool thread is done
 * with it. The pool struct itself lives on until its last request is
 * freed, so that handles outlive mp_pool_free. Lock order: pool->lock, then
 * the queue lock. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "pool/backend.h"

static _Thread_local int last_task_code;

/* ---- Live pools, terminated at exit ----------------------------------- */

static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static mp_pool_t *live_pools;
static pthread_once_t atexit_once = PTHREAD_ONCE_INIT;

/* Runs before the process module's exit function (registered earlier, at
 * the first process start): the pool threads must stop replacing workers
 * before it terminates and joins the children. */
static void terminate_live_pools(void) {
  pthread_mutex_lock(&live_lock);
  for (mp_pool_t *p = live_pools; p; p = p->next_live)
    if (p->creator == getpid())
      mp_pool_terminate(p);
  pthread_mutex_unlock(&live_lock);
}

static void register_atexit(void) {
  atexit(terminate_live_pools);
}

static void live_add(mp_pool_t *pool) {
  pthread_mutex_lock(&live_lock);
  pool->next_live = live_pools;
  live_pools = pool;
  pthread_mutex_unlock(&live_lock);
  pthread_once(&atexit_once, register_atexit);
}

static void live_remove(mp_pool_t *pool) {
  pthread_mutex_lock(&live_lock);
  for (mp_pool_t **link = &live_pools; *link; link = &(*link)->next_live) {
    if (*link == pool) {
      *link = pool->next_live;
      break;
    }
  }
  pthread_mutex_unlock(&live_lock);
}

static bool on_pool_thread(const mp_pool_t *pool) {
  return pthread_equal(pthread_self(), pool->thread);
}

/* ---- Submission --------------------------------------------------------- */

typedef struct spec {
  enum mp__job_kind kind;
  const void *fn;
  const void *in;
  size_t in_size; /* map: per item; apply: the input's length */
  void *out;      /* map: the user's array, NULL for imap */
  size_t out_size;
  size_t n;
  size_t chunk;
  uint32_t flags; /* MP__JOB_EACH for imap */
  bool log;       /* imap_unordered */
  const mp_async_opts_t *opts;
  bool any_size; /* apply_async without result_max */
} spec_t;

static size_t auto_chunksize(size_t n, int processes) {
  /* Python: chunksize, extra = divmod(len, len(pool) * 4); if extra: +1. */
  size_t div = 4 * (size_t)processes;
  size_t chunk = n / div + (n % div != 0);
  return chunk ? chunk : 1;
}

static bool in_arena(const void *p, size_t len) {
  return p && mp__arena_contains(p) &&
         mp__arena_contains((const char *)p + len - 1);
}

/* An array for the job: the user's own when it is in the arena. */
static int job_array(mp_pool_t *pool, struct mp_async *r, int which,
                     const void *user, size_t bytes, char **where) {
  if (bytes == 0) {
    *where = NULL;
    return 0;
  }
  if (user && in_arena(user, bytes)) {
    *where = (char *)user;
    return 0;
  }
  r->blocks[which] = mp__pool_block_get(pool, bytes);
  if (!r->blocks[which].ptr)
    return -ENOMEM;
  *where = r->blocks[which].ptr;
  return 0;
}

static int build_map_job(mp_pool_t *pool, const spec_t *s, struct mp_async *r) {
  size_t in_bytes, out_bytes, item_bytes;
  if (!mp__size(s->n, s->in_size, 0, &in_bytes) ||
      !mp__size(s->n, s->out_size, 0, &out_bytes) ||
      !mp__size(s->n, 2 * sizeof(mp__pool_item_t), 0, &item_bytes))
    return -ENOMEM;
  item_bytes /= 2; /* the log has twice as many bytes as the items */
  r->blocks[MP__BLOCK_JOB] = mp__pool_block_get(pool, sizeof(mp__pool_job_t));
  mp__pool_job_t *job = r->blocks[MP__BLOCK_JOB].ptr;
  if (!job)
    return -ENOMEM;
  memset(job, 0, sizeof *job);
  r->job = job;
  char *in, *out, *items, *log = NULL;
  int rc;
  if ((rc = job_array(pool, r, MP__BLOCK_IN, s->in, in_bytes, &in)) < 0 ||
      (rc = job_array(pool, r, MP__BLOCK_OUT, s->out, out_bytes, &out)) < 0 ||
      (rc = job_array(pool, r, MP__BLOCK_ITEMS, NULL, item_bytes, &items)) <
          0 ||
      (s->log && (rc = job_array(pool, r, MP__BLOCK_LOG, NULL, 2 * item_bytes,
                                 &log)) < 0))
    return rc;
  if (in != s->in && in_bytes)
    memcpy(in, s->in, in_bytes);
  if (out != s->out)
    r->user_out = s->out; /* copied there when ready */
  memset(items, 0, item_bytes);
  job->in = in;
  job->out = out;
  job->items = (mp__pool_item_t *)items;
  job->log = (uint64_t *)log;
  job->in_size = s->in_size;
  job->out_size = s->out_size;
  job->n = s->n;
  job->unit.end = s->n;
  job->unit.chunk =
      s->chunk ? s->chunk : auto_chunksize(s->n, pool->chunk_processes);
  return 0;
}

static int build_apply_job(mp_pool_t *pool, const spec_t *s,
                           struct mp_async *r) {
  size_t size;
  if (!mp__size(s->in_size, 1, sizeof(mp__pool_job_t), &size) ||
      !mp__size(size, 1, s->out_size, &size))
    return -ENOMEM;
  r->blocks[MP__BLOCK_JOB] = mp__pool_block_get(pool, size);
  mp__pool_job_t *job = r->blocks[MP__BLOCK_JOB].ptr;
  if (!job)
    return -ENOMEM;
  memset(job, 0, sizeof *job);
  r->job = job;
  char *in = (char *)(job + 1);
  if (s->in_size)
    memcpy(in, s->in, s->in_size);
  job->in = in;
  job->out = in + s->in_size;
  job->any_size = s->any_size;
  job->items = &job->item;
  job->in_size = s->in_size;
  job->out_size = s->out_size;
  job->n = 1;
  job->unit.end = 1;
  job->unit.chunk = 1;
  return 0;
}

/* The function's index in the pool's table, encoded there on first use.
 * With pool->lock held. */
static int fn_index(mp_pool_t *pool, const void *fn, uint32_t *index) {
  assert(mp__pthread_mutex_busy(&pool->lock));
  for (uint32_t i = pool->fn_count; i-- > 0;) {
    if (pool->fns[i] == fn) {
      *index = i;
      return 0;
    }
  }
  if (pool->fn_count == MP__POOL_FNS)
    return -ENOSPC;
  uint32_t i = pool->fn_count;
  int rc = mp__fn_encode(fn, &pool->ps->fns[i]);
  if (rc < 0)
    return rc;
  pool->fns[i] = fn;
  pool->fn_count = i + 1;
  atomic_store(&pool->ps->fn_count, i + 1);
  *index = i;
  return 0;
}

/* Whether the pool takes work. With pool->lock held. */
static int usable(mp_pool_t *pool) {
  assert(mp__pthread_mutex_busy(&pool->lock));
  if (pool->state != MP__POOL_RUNNING)
    return MP_ESTATE;
  return pool->error ? MP_EBROKEN : 0;
}

/* Links the request and queues its job. */
static int enqueue(mp_pool_t *pool, struct mp_async *r, const void *fn) {
  mp__pool_job_t *job = r->job;
  pthread_mutex_lock(&pool->lock);
  int rc = usable(pool);
  if (rc == 0)
    rc = fn_index(pool, fn, &job->fn);
  if (rc == 0)
    rc = mp__pool_lock(pool->ps, MP__NO_HOLDER);
  if (rc == 0) {
    mp__pool_enqueue(pool->ps, &job->unit, false);
    mp__pool_unlock(pool->ps);
    r->next = pool->requests;
    if (r->next)
      r->next->prev = r;
    pool->requests = r;
    pool->refs++;
  }
  pthread_mutex_unlock(&pool->lock);
  return rc;
}

static int check_spec(const spec_t *s) {
  if (!s->fn)
    return MP_EINVAL;
  if (s->kind == MP__JOB_MAP)
    return (!s->in && s->in_size && s->n) || (!s->out && s->out_size && s->n &&
                                              !(s->flags & MP__JOB_EACH))
               ? MP_EINVAL
               : 0;
  return !s->in && s->in_size ? MP_EINVAL : 0;
}

static int submit(mp_pool_t *pool, const spec_t *s, struct mp_async **out) {
  int rc = check_spec(s);
  if (rc < 0)
    return rc;
  struct mp_async *r = calloc(1, sizeof *r);
  if (!r)
    return -ENOMEM;
  r->pool = pool;
  r->handle_alive = true;
  pthread_mutex_init(&r->lock, NULL);
  if (s->opts) {
    r->opts = *s->opts;
    /* As Python, an empty map_async is ready at once, with no callback. */
    r->has_callbacks =
        s->n > 0 && (s->opts->callback || s->opts->error_callback);
  }
  rc = s->kind == MP__JOB_MAP ? build_map_job(pool, s, r)
                              : build_apply_job(pool, s, r);
  if (rc == 0) {
    mp__pool_job_t *job = r->job;
    job->magic = MP__JOB_MAGIC;
    job->kind = s->kind;
    job->request = r;
    job->unit.job = job;
    atomic_store(&job->flags,
                 s->flags | (r->has_callbacks ? MP__JOB_NOTIFY : 0u));
    rc = enqueue(pool, r, s->fn);
  }
  if (rc < 0) {
    mp__pool_request_discard(r);
    return rc;
  }
  uint64_t chunks = (r->job->n + r->job->unit.chunk - 1) / r->job->unit.chunk;
  mp__pool_wake_workers(pool->ps, chunks > INT_MAX ? INT_MAX : (int)chunks);
  if (pool->backend)
    pool->backend->wake(pool->backend_arg);
  *out = r;
  return 0;
}

/* Submits, or returns NULL with errno (the positive value of the code). */
static struct mp_async *submit_or_null(mp_pool_t *pool, const spec_t *s) {
  struct mp_async *r = NULL;
  int rc = submit(pool, s, &r);
  if (rc < 0) {
    errno = -rc;
    return NULL;
  }
  return r;
}

/* ---- map and apply ------------------------------------------------------ */

static spec_t map_spec(const void *fn, const void *in, size_t in_size,
                       void *out, size_t out_size, size_t n, size_t chunk) {
  return (spec_t){.kind = MP__JOB_MAP,
                  .fn = fn,
                  .in = in,
                  .in_size = in_size,
                  .out = out,
                  .out_size = out_size,
                  .n = n,
                  .chunk = chunk};
}

/* The synchronous calls: submit, wait, finalize. On success *out is the
 * finished request, for the caller to read and release. */
static int run_sync(mp_pool_t *pool, const spec_t *s, struct mp_async **out) {
  if (on_pool_thread(pool))
    return MP_ESTATE; /* a callback would wait for itself */
  int rc = submit(pool, s, out);
  if (rc < 0)
    return rc;
  rc = mp__pool_request_wait(*out, MP_FOREVER);
  if (rc < 0) {
    /* MP_EINTR: the items go on in the workers; their results are dropped
     * (the pool thread frees the request when they are done), nothing is
     * written to the caller's output. */
    mp__pool_request_release(*out);
    *out = NULL;
    return rc;
  }
  mp__pool_finalize(*out);
  last_task_code = (*out)->task_code;
  return 0;
}

int mp_pool_map(mp_pool_t *pool, int (*fn)(const void *in, void *out),
                const void *in, size_t in_size, void *out, size_t out_size,
                size_t n, size_t chunksize) {
  if (!pool)
    return MP_EINVAL;
  last_task_code = 0;
  if (n == 0 && !on_pool_thread(pool)) {
    pthread_mutex_lock(&pool->lock);
    int rc = usable(pool);
    pthread_mutex_unlock(&pool->lock);
    return fn ? rc : MP_EINVAL;
  }
  spec_t s =
      map_spec((const void *)fn, in, in_size, out, out_size, n, chunksize);
  struct mp_async *r;
  int rc = run_sync(pool, &s, &r);
  if (rc < 0)
    return rc;
  rc = r->result;
  mp__pool_request_release(r);
  return rc;
}

int mp_pool_task_code(void) {
  return last_task_code;
}

mp_async_t *mp_pool_map_async(mp_pool_t *pool,
                              int (*fn)(const void *in, void *out),
                              const void *in, size_t in_size, void *out,
                              size_t out_size, size_t n, size_t chunksize,
                              const mp_async_opts_t *opts) {
  if (!pool) {
    errno = EINVAL;
    return NULL;
  }
  spec_t s =
      map_spec((const void *)fn, in, in_size, out, out_size, n, chunksize);
  s.opts = opts;
  return submit_or_null(pool, &s);
}

static spec_t apply_spec(mp_pool_task_fn fn, const void *in, size_t in_len,
                         size_t out_cap) {
  return (spec_t){.kind = MP__JOB_APPLY,
                  .fn = (const void *)fn,
                  .in = in,
                  .in_size = in_len,
                  .out_size = out_cap,
                  .n = 1};
}

int mp_pool_apply(mp_pool_t *pool, mp_pool_task_fn fn, const void *in,
                  size_t in_len, void *out, size_t out_cap, size_t *out_len) {
  if (!pool)
    return MP_EINVAL;
  last_task_code = 0;
  if (!out && out_cap)
    return MP_EINVAL;
  spec_t s = apply_spec(fn, in, in_len, out_cap);
  struct mp_async *r;
  int rc = run_sync(pool, &s, &r);
  if (rc < 0)
    return rc;
  rc = r->result;
  const void *result;
  size_t len;
  mp__pool_result(r, &result, &len);
  if (out_len)
    *out_len = len;
  if (rc == 0 && len)
    memcpy(out, result, len);
  mp__pool_request_release(r);
  return rc;
}

mp_async_t *mp_pool_apply_async(mp_pool_t *pool, mp_pool_task_fn fn,
                                const void *in, size_t in_len,
                                const mp_async_opts_t *opts) {
  if (!pool) {
    errno = EINVAL;
    return NULL;
  }
  bool any_size = !opts || !opts->result_max;
  size_t cap = any_size ? MP__POOL_INLINE_RESULT : opts->result_max;
  spec_t s = apply_spec(fn, in, in_len, cap);
  s.any_size = any_size;
  s.opts = opts;
  return submit_or_null(pool, &s);
}

/* ---- AsyncResult -------------------------------------------------------- */

int mp_async_wait(mp_async_t *a, double timeout) {
  if (!a)
    return MP_EINVAL;
  return mp__pool_request_wait(a, timeout);
}

bool mp_async_ready(mp_async_t *a) {
  if (!a)
    return false;
  if (!mp__pool_request_ready(a))
    return false;
  mp__pool_finalize(a);
  return true;
}

int mp_async_successful(mp_async_t *a) {
  if (!a)
    return MP_EINVAL;
  if (!mp_async_ready(a))
    return MP_ESTATE; /* Python: ValueError "... not ready" */
  return a->result == 0;
}

int mp_async_get(mp_async_t *a, double timeout, const void **result,
                 size_t *len) {
  if (!a)
    return MP_EINVAL;
  int rc = mp__pool_request_wait(a, timeout);
  if (rc < 0)
    return rc;
  mp__pool_finalize(a);
  const void *bytes;
  size_t size;
  mp__pool_result(a, &bytes, &size);
  if (result)
    *result = a->result == 0 ? bytes : NULL;
  if (len)
    *len = a->result == 0 || a->result == MP_EOVERFLOW ? size : 0;
  return a->result;
}

int mp_async_task_code(mp_async_t *a) {
  if (!a)
    return MP_EINVAL;
  return mp_async_ready(a) ? a->task_code : 0;
}

int mp_async_item(mp_async_t *a, size_t index, int *task_code) {
  if (!a)
    return MP_EINVAL;
  if (!mp_async_ready(a))
    return MP_ESTATE;
  if (index >= a->job->n)
    return MP_EINVAL;
  const mp__pool_item_t *item = &a->job->items[index];
  int32_t state = atomic_load(&item->state);
  if (task_code)
    *task_code = state == MP_ETASK ? item->task_code : 0;
  return state == MP__ITEM_OK ? 0 : state;
}

void mp_async_free(mp_async_t *a) {
  if (a)
    mp__pool_request_release(a);
}

/* ---- imap ------------------------------------------------------------------
 */

struct mp_iter {
  struct mp_async *r;
  bool unordered;
  uint64_t delivered;
  uint64_t log_pos; /* unordered: next entry of the completion log */
  uint64_t run_at;  /* unordered: the entry being delivered */
  uint64_t run_left;
};

static mp_iter_t *imap(mp_pool_t *pool, const void *fn, const void *in,
                       size_t in_size, size_t out_size, size_t n,
                       size_t chunksize, bool unordered) {
  mp_iter_t *it = calloc(1, sizeof *it);
  if (!it) {
    errno = ENOMEM;
    return NULL;
  }
  spec_t s =
      map_spec(fn, in, in_size, NULL, out_size, n, chunksize ? chunksize : 1);
  s.flags = MP__JOB_EACH;
  s.log = unordered;
  it->unordered = unordered;
  it->r = submit_or_null(pool, &s);
  if (!it->r) {
    free(it);
    return NULL;
  }
  return it;
}

mp_iter_t *mp_pool_imap(mp_pool_t *pool, int (*fn)(const void *in, void *out),
                        const void *in, size_t in_size, size_t out_size,
                        size_t n, size_t chunksize) {
  if (!pool) {
    errno = EINVAL;
    return NULL;
  }
  return imap(pool, (const void *)fn, in, in_size, out_size, n, chunksize,
              false);
}

mp_iter_t *mp_pool_imap_unordered(mp_pool_t *pool,
                                  int (*fn)(const void *in, void *out),
                                  const void *in, size_t in_size,
                                  size_t out_size, size_t n, size_t chunksize) {
  if (!pool) {
    errno = EINVAL;
    return NULL;
  }
  return imap(pool, (const void *)fn, in, in_size, out_size, n, chunksize,
              true);
}

static bool next_in_order_ready(void *arg) {
  mp_iter_t *it = arg;
  return mp__pool_item_final(
      atomic_load(&it->r->job->items[it->delivered].state));
}

static bool next_logged_ready(void *arg) {
  mp_iter_t *it = arg;
  return atomic_load(&it->r->job->log_count) > it->log_pos;
}

static void deliver(mp_iter_t *it, uint64_t k, void *out,
                    mp_iter_item_t *item) {
  const mp__pool_job_t *job = it->r->job;
  int32_t state = atomic_load(&job->items[k].state);
  if (item) {
    item->index = k;
    item->error = state == MP__ITEM_OK ? 0 : state;
    item->task_code = state == MP_ETASK ? job->items[k].task_code : 0;
  }
  if (out && state == MP__ITEM_OK && job->out_size)
    memcpy(out, job->out + k * job->out_size, job->out_size);
  it->delivered++;
}

int mp_iter_next(mp_iter_t *it, double timeout, void *out,
                 mp_iter_item_t *item) {
  if (!it)
    return MP_EINVAL;
  mp__pool_job_t *job = it->r->job;
  if (it->delivered == job->n)
    return 0;
  if (!it->unordered) {
    int rc = mp__pool_job_wait(job, next_in_order_ready, it, timeout);
    if (rc < 0)
      return rc;
    deliver(it, it->delivered, out, item);
    return 1;
  }
  if (it->run_left == 0) {
    int rc = mp__pool_job_wait(job, next_logged_ready, it, timeout);
    if (rc < 0)
      return rc;
    it->run_at = job->log[2 * it->log_pos];
    it->run_left = job->log[2 * it->log_pos + 1];
    it->log_pos++;
  }
  deliver(it, it->run_at++, out, item);
  it->run_left--;
  return 1;
}

void mp_iter_free(mp_iter_t *it) {
  if (!it)
    return;
  mp__pool_request_release(it->r);
  free(it);
}

/* ---- Life cycle -----------------------------------------------------------
 */

static int init_shared(mp_pool_t *pool, const mp_pool_opts_t *o) {
  size_t nslots = (size_t)pool->processes + pool->backend_slots;
  size_t size = sizeof(mp__pool_shared_t) + nslots * sizeof(mp__pool_slot_t);
  /* mp__sync_alloc: the owner table of the queue's robust mutex exists
   * before the workers start. */
  mp__pool_shared_t *ps = mp__sync_alloc(size);
  if (!ps)
    return -errno;
  pool->ps = ps;
  ps->magic = MP__POOL_MAGIC;
  ps->nslots = (uint32_t)nslots;
  ps->maxtasks = o->maxtasksperchild;
  ps->event_fd = pool->event_fd;
  atomic_init(&ps->state, MP__POOL_RUNNING);
  atomic_init(&ps->holder, MP__NO_HOLDER);
  mp__mutex_init(&ps->qlock, MP__LOCK_MAGIC);
  int rc = mp__fn_encode((const void *)o->initializer, &ps->initializer);
  if (rc < 0)
    return rc;
  if (o->initarg_size) {
    ps->initarg = mp__shm_alloc(o->initarg_size);
    if (!ps->initarg)
      return -errno;
    memcpy(ps->initarg, o->initarg, o->initarg_size);
    ps->initarg_size = o->initarg_size;
  }
  return 0;
}

/* Frees the shared state once the pool thread has ended. With pool->lock
 * held. */
static void release_shared(mp_pool_t *pool) {
  assert(mp__pthread_mutex_busy(&pool->lock));
  for (size_t i = 0; i < pool->cache_count; i++)
    mp__shm_free(pool->cache[i].ptr);
  pool->cache_count = pool->cache_bytes = 0;
  if (pool->ps) {
    mp__shm_free(pool->ps->initarg);
    mp__shm_free(pool->ps);
    pool->ps = NULL;
  }
  if (pool->event_fd >= 0) {
    mp__inherit_fd_remove(pool->event_fd);
    close(pool->event_fd);
    pool->event_fd = -1;
  }
  free(pool->workers);
  pool->workers = NULL;
}

static int check_opts(const mp_pool_opts_t *o) {
  if (o->processes < 0 || mp__timeout_check(o->task_timeout) < 0 ||
      (!o->initarg && o->initarg_size))
    return MP_EINVAL;
  return 0;
}

static int pool_init(mp_pool_t *pool, const mp_pool_opts_t *o) {
  int rc;
  if ((rc = mp__arena_ensure()) < 0)
    return rc;
  pool->event_fd = mp__fd_high(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (pool->event_fd < 0)
    return -errno;
  if ((rc = mp__inherit_fd_add(pool->event_fd)) < 0) {
    close(pool->event_fd);
    pool->event_fd = -1;
    return rc;
  }
  if ((rc = init_shared(pool, o)) < 0)
    return rc;
  pool->workers = calloc((size_t)pool->processes, sizeof *pool->workers);
  if (!pool->workers)
    return -ENOMEM;
  return mp__pool_thread_start(pool);
}

mp_pool_t *mp__pool_new_backend(const mp_pool_opts_t *opts, uint32_t slots,
                                int chunk_processes,
                                const mp__pool_backend_t *backend, void *arg) {
  mp__check_bootstrapped();
  mp_pool_opts_t o = opts ? *opts : (mp_pool_opts_t){0};
  if (check_opts(&o) < 0 || slots > INT_MAX / 2 || chunk_processes < 0) {
    errno = EINVAL;
    return NULL;
  }
  mp_pool_t *pool = calloc(1, sizeof *pool);
  if (!pool) {
    errno = ENOMEM;
    return NULL;
  }
  pool->processes = o.processes ? o.processes : mp_cpu_count();
  pool->chunk_processes = chunk_processes ? chunk_processes : pool->processes;
  pool->backend_slots = backend ? slots : 0;
  pool->backend = backend;
  pool->backend_arg = arg;
  pool->task_timeout = o.task_timeout > 0 ? o.task_timeout : 0;
  pool->ctx = o.ctx ? o.ctx : mp_get_context(NULL);
  pool->method = pool->ctx->method;
  pool->creator = getpid();
  pool->event_fd = -1;
  pool->refs = 1;
  pool->state = MP__POOL_RUNNING;
  pthread_mutex_init(&pool->lock, NULL);
  pthread_cond_init(&pool->changed, NULL);
  int rc = pool_init(pool, &o);
  if (rc < 0) {
    release_shared(pool);
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->changed);
    free(pool);
    errno = rc == MP_EINVAL ? EINVAL : -rc;
    return NULL;
  }
  live_add(pool);
  return pool;
}

mp_pool_t *mp_pool_new(const mp_pool_opts_t *opts) {
  return mp__pool_new_backend(opts, 0, 0, NULL, NULL);
}

int mp_pool_processes(const mp_pool_t *pool) {
  if (!pool)
    return MP_EINVAL;
  return pool->processes;
}

size_t mp_pool_workers(mp_pool_t *pool, pid_t *out, size_t cap) {
  if (!pool)
    return 0;
  size_t count = 0;
  pthread_mutex_lock(&pool->lock);
  for (int i = 0; pool->workers && i < pool->processes; i++) {
    if (!pool->workers[i].proc)
      continue;
    if (count < cap && out)
      out[count] = mp_process_pid(pool->workers[i].proc);
    count++;
  }
  pthread_mutex_unlock(&pool->lock);
  return count;
}

int mp_pool_error(const mp_pool_t *cpool, int *exitcode) {
  if (!cpool)
    return MP_EINVAL;
  mp_pool_t *pool = (mp_pool_t *)cpool;
  pthread_mutex_lock(&pool->lock);
  int rc = pool->error;
  if (exitcode)
    *exitcode = pool->exitcode;
  pthread_mutex_unlock(&pool->lock);
  return rc;
}

int mp_pool_close(mp_pool_t *pool) {
  if (!pool)
    return MP_EINVAL;
  pthread_mutex_lock(&pool->lock);
  if (pool->state == MP__POOL_RUNNING) {
    pool->state = MP__POOL_CLOSING;
    if (mp__pool_lock(pool->ps, MP__NO_HOLDER) == 0) {
      uint32_t expected = MP__POOL_RUNNING;
      atomic_compare_exchange_strong(&pool->ps->state, &expected,
                                     MP__POOL_CLOSING);
      atomic_fetch_add(&pool->ps->work_seq, 1);
      mp__pool_unlock(pool->ps);
    }
    /* Sleeping workers find the queue empty and exit. */
    mp__futex_wake(&pool->ps->work_seq, INT_MAX);
    mp__pool_notify(pool->ps);
  }
  pthread_mutex_unlock(&pool->lock);
  return 0;
}

int mp_pool_terminate(mp_pool_t *pool) {
  if (!pool)
    return MP_EINVAL;
  if (on_pool_thread(pool))
    return MP_ESTATE;
  pthread_mutex_lock(&pool->lock);
  pool->state = MP__POOL_TERMINATING;
  if (!pool->thread_exited && !pool->terminated) {
    pool->terminate_requested = true;
    mp__pool_notify(pool->ps);
    while (!pool->terminated && !pool->thread_exited)
      pthread_cond_wait(&pool->changed, &pool->lock);
  }
  pthread_mutex_unlock(&pool->lock);
  return 0;
}

int mp_pool_join(mp_pool_t *pool) {
  if (!pool)
    return MP_EINVAL;
  if (on_pool_thread(pool))
    return MP_ESTATE;
  pthread_mutex_lock(&pool->lock);
  if (pool->state == MP__POOL_RUNNING) {
    pthread_mutex_unlock(&pool->lock); /* Python: "Pool is still running" */
    return MP_ESTATE;
  }
  if (pool->joining) {
    while (!pool->joined)
      pthread_cond_wait(&pool->changed, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
    return 0;
  }
  pool->joining = true;
  pthread_mutex_unlock(&pool->lock);
  pthread_join(pool->thread, NULL);
  pthread_mutex_lock(&pool->lock);
  pool->joined = true;
  pthread_cond_broadcast(&pool->changed);
  pthread_mutex_unlock(&pool->lock);
  return 0;
}

void mp_pool_free(mp_pool_t *pool) {
  if (!pool || on_pool_thread(pool))
    return;
  live_remove(pool);
  pthread_mutex_lock(&pool->lock);
  bool joined = pool->joining;
  pthread_mutex_unlock(&pool->lock);
  if (!joined)
    mp_pool_terminate(pool);
  mp_pool_join(pool);
  if (pool->backend)
    pool->backend->release(pool->backend_arg);
  pthread_mutex_lock(&pool->lock);
  pool->freed = true;
  release_shared(pool);
  bool last = --pool->refs == 0;
  pthread_mutex_unlock(&pool->lock);
  if (last) {
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->changed);
    free(pool);
  }
}
