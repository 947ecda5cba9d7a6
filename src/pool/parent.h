/* What only the parent of a pool sees (internal): its records of the
 * workers, its submissions (requests) and the pool object itself. Nothing
 * here is in shared memory; the workers never touch it. Layers: request.c
 * (a request's lifetime) < thread.c (the pool thread) < pool.c (the
 * API). */
#ifndef MPROC_POOL_PARENT_H
#define MPROC_POOL_PARENT_H

#include <pthread.h>

#include "pool/shared.h"

/* The parent's record of one worker slot (pool thread only). */
typedef struct mp__pool_worker {
  mp_process_t *proc;   /* NULL: no process in the slot */
  uint64_t seen_busy;   /* timeout watch: the busy value seen... */
  uint64_t seen_at;     /* ...first at this time (ns) */
  bool killed;          /* killed by the watch for task_timeout... */
  uint64_t kill_busy;   /* ...while this task ran */
  uint32_t early_kills; /* workers of this slot killed before ready, in a
                           row (kept across replacements) */
} mp__pool_worker_t;

/* A shared-memory block the parent owns, and its capacity. */
typedef struct mp__pool_block {
  void *ptr;
  size_t cap;
} mp__pool_block_t;

enum {
  MP__BLOCK_JOB,
  MP__BLOCK_IN,
  MP__BLOCK_OUT,
  MP__BLOCK_ITEMS,
  MP__BLOCK_LOG,
  MP__BLOCK_COUNT
};

/* A submission as the parent sees it: what mp_async_t points to, and what
 * an iterator or a synchronous call keeps. The pool's lock guards the
 * links and the flags marked so; `lock` guards the finalization. */
struct mp_async {
  mp_pool_t *pool;
  mp__pool_job_t *job;
  struct mp_async *prev, *next; /* pool->requests (pool lock) */
  mp__pool_block_t blocks[MP__BLOCK_COUNT];
  void *user_out; /* a map's out array, when it is not job->out */
  mp_async_opts_t opts;
  bool has_callbacks;
  bool handle_alive; /* pool lock: the user has not freed it */
  bool thread_done;  /* pool lock: the pool thread is done with it */
  _Atomic bool callbacks_done;
  bool has_ready_fd; /* pool lock: mp_async_fd made ready_fd (futures.c) */
  int ready_fd;      /* an eventfd written once when the result is ready */
  pthread_mutex_t lock;
  bool finalized;
  int result;
  int task_code;
};

/* A backend runs some of the pool's work elsewhere (the MPI library: on
 * other hosts), claiming chunks through slots of its own after the
 * workers' (pool/backend.h); a closed pool ends once these slots hold no
 * claim either. The pool calls the backend at these points: */
typedef struct mp__pool_backend {
  /* Work was queued (any thread). */
  void (*wake)(void *arg);
  /* Terminate or break (the pool thread, before it settles the claims):
   * returns once the backend holds no claim and touches no job. */
  void (*stop)(void *arg);
  /* mp_pool_free, after the pool thread ended: the backend ends and frees
   * arg. */
  void (*release)(void *arg);
} mp__pool_backend_t;

/* Guarded by `lock` unless said otherwise. */
struct mp_pool {
  mp__pool_shared_t *ps;
  int processes;
  int chunk_processes; /* what automatic chunk sizes divide among */
  uint32_t backend_slots;
  const mp__pool_backend_t *backend; /* NULL: the local pool */
  void *backend_arg;
  double task_timeout;
  mp_context_t *ctx;
  enum mp__start_method method;
  int event_fd;
  pid_t creator;
  pthread_t thread;           /* the pool thread */
  mp__pool_worker_t *workers; /* pool thread only */
  int breaking;               /* pool thread only: why the pool breaks, */
  int break_exitcode;         /* and the exit code of the worker */
  struct mp_pool *next_live;  /* the list of live pools (its own lock) */

  pthread_mutex_t lock;
  pthread_cond_t changed; /* the pool thread's progress */
  int state;              /* MP__POOL_* as the user set it */
  bool thread_started, start_failed, terminate_requested, terminated,
      thread_exited, joining, joined, freed;
  int error;    /* MP_EBROKEN or a start error; 0 while usable */
  int exitcode; /* of the worker that broke it */
  struct mp_async *requests;
  size_t refs; /* requests in the list, and 1 until freed */
  const void *fns[MP__POOL_FNS];
  uint32_t fn_count;
  mp__pool_block_t cache[16]; /* blocks kept for the next submissions */
  size_t cache_count, cache_bytes;
};

/* thread.c: starts the pool thread, which starts the workers; returns
 * once they are started, or the error. */
int mp__pool_thread_start(mp_pool_t *pool);

/* ---- A request's lifetime (request.c) -------------------------------------
 * A request is made by a submission (pool.c), watched by the pool thread
 * (thread.c, for callbacks and worker deaths) and held by the user's
 * handle; it is freed when both the pool thread and the handle are done. */

/* A shared-memory block of at least size bytes, reused from the pool's
 * cache when one fits ({NULL, 0} without memory). */
mp__pool_block_t mp__pool_block_get(mp_pool_t *pool, size_t size);
/* Whether every item of r is done (and its callbacks ran, if any). */
bool mp__pool_request_ready(struct mp_async *r);
/* Waits on the job's word until ready(arg): 0 or MP_ETIMEDOUT. */
int mp__pool_job_wait(mp__pool_job_t *job, bool (*ready)(void *), void *arg,
                      double timeout);
/* Waits until r is ready: 0 or MP_ETIMEDOUT. */
int mp__pool_request_wait(struct mp_async *r, double timeout);
/* Computes a map's or apply's result and writes a map's outputs (once). */
void mp__pool_finalize(struct mp_async *r);
/* A finalized result's bytes: a map's output array or an apply's result. */
void mp__pool_result(const struct mp_async *r, const void **result,
                     size_t *len);
/* Frees a request nobody uses any more. */
void mp__pool_request_destroy(struct mp_async *r);
/* Writes r's ready_fd if it has one (pool lock held): the result is ready. */
void mp__pool_request_signal(struct mp_async *r);
/* Frees a request that was never submitted, keeping its blocks. */
void mp__pool_request_discard(struct mp_async *r);
/* The pool thread is done with r: frees it if the user already is. */
void mp__pool_thread_release(struct mp_async *r);
/* The user is done with r's handle: frees it unless the pool thread still
 * has to finish it. */
void mp__pool_request_release(struct mp_async *r);

#endif
