/* The pool's shared state and the parts that workers and the parent share
 * (internal). See pool.c for the design.
 *
 * Everything below lives in the arena, at the same address in every
 * process, so pointers to arena objects are valid everywhere. The only
 * process-local value stored here is a job's `request` (the parent's
 * bookkeeping), which only the parent reads. */
#ifndef MPROC_POOL_INTERNAL_H
#define MPROC_POOL_INTERNAL_H

#include "core/owner.h"
#include "sync/lock.h"
#include "mproc/pool.h"
#include "process/start.h"

#define MP__POOL_MAGIC 0x504f4f4cu /* "POOL" */
#define MP__JOB_MAGIC  0x4a4f4221u /* "JOB!" */
#define MP__POOL_FNS   256u        /* distinct task functions per pool */
#define MP__NO_ITEM    UINT64_MAX
#define MP__NO_HOLDER  (-1)

/* One item's result. state: ITEM_PENDING, ITEM_OK or a negative MP_E*
 * code. The writer stores task_code first and state last (release). */
enum { MP__ITEM_PENDING = 0, MP__ITEM_OK = 1 };
typedef struct mp__pool_item {
  _Atomic int32_t state;
  int32_t task_code;
} mp__pool_item_t;

typedef struct mp__pool_job mp__pool_job_t;

/* A range of a job's items, handed out in chunks. Allocated and freed by
 * the parent only. cursor and next are guarded by the queue lock. */
typedef struct mp__pool_unit {
  mp__pool_job_t *job;
  _Atomic uint64_t cursor; /* next item to hand out */
  uint64_t end;
  uint64_t chunk;
  uint32_t losses; /* a backend's lost runs of these items (pool_backend.c) */
  uint32_t pad;
  struct mp__pool_unit *_Atomic next; /* the queue's link */
  struct mp__pool_unit *more;         /* the job's extra units (parent) */
} mp__pool_unit_t;

enum mp__job_kind { MP__JOB_MAP, MP__JOB_APPLY };

/* Job flags, guarded by the queue lock. */
#define MP__JOB_NOTIFY                                                         \
  1u                    /* at completion: onto the completed list, and         \
                           the pool thread is told */
#define MP__JOB_EACH 2u /* wake waiters at every commit (imap) */

/* A submission: a map (n items) or an apply (one item of bytes). Written by
 * the parent before it is queued, then read-only except: items[] and
 * out_len (by the worker running the item, or the parent after its
 * death); done, failed, log, log_count, flags, next_completed (queue
 * lock); seq and waiters (atomics, the wake-up protocol). */
struct mp__pool_job {
  uint32_t magic;
  uint32_t kind; /* enum mp__job_kind */
  uint32_t fn;   /* index in the pool's function table */
  uint32_t pad;
  uint64_t n;        /* items */
  uint64_t in_size;  /* map: bytes per item; apply: input length */
  uint64_t out_size; /* map: bytes per item; apply: out_cap */
  const char *in;
  char *out;
  mp__pool_item_t *items;
  uint64_t *log;            /* imap_unordered: (first, count) of each commit */
  void *request;            /* the parent's record of it (parent only) */
  _Atomic uint64_t out_len; /* apply: what the task set */
  _Atomic uint64_t done;    /* items final */
  _Atomic uint64_t failed;  /* of which not MP__ITEM_OK */
  _Atomic uint64_t log_count;
  _Atomic uint32_t flags;
  _Atomic uint32_t seq;     /* bumped at each wake-up */
  _Atomic uint32_t waiters; /* threads sleeping on seq */
  uint32_t pad2;
  mp__pool_job_t *_Atomic next_completed;
  mp__pool_item_t item; /* apply's one item */
  mp__pool_unit_t unit; /* the first unit */
};

/* Slot phases (what a worker did last under the queue lock). */
enum mp__slot_phase {
  MP__PHASE_IDLE,       /* no claim */
  MP__PHASE_CLAIMING,   /* claim written, unit cursor maybe not moved */
  MP__PHASE_CLAIMED,    /* owns items [first, first + n) */
  MP__PHASE_COMMITTING, /* journal written, job counters maybe not */
};

enum mp__slot_state {
  MP__SLOT_STARTING, /* before the initializer returned */
  MP__SLOT_READY,
};

/* One worker's record, reused by its replacements. The claim and journal
 * fields are written under the queue lock; busy and current by the worker
 * alone, read by the parent's timeout watch and after the worker's death. */
typedef struct mp__pool_slot {
  _Atomic uint32_t state; /* enum mp__slot_state */
  _Atomic uint32_t phase; /* enum mp__slot_phase */
  _Atomic uint32_t sleeping;
  uint32_t pad;
  _Atomic uint64_t busy;    /* odd while a task runs; +1 at start and end */
  _Atomic uint64_t current; /* the item running or last run */
  /* The claim. */
  mp__pool_unit_t *_Atomic unit;
  mp__pool_job_t *_Atomic job;
  _Atomic uint64_t first;
  _Atomic uint64_t n;
  /* The commit journal: the job's counters before the commit. */
  _Atomic uint64_t base_done, base_failed, base_log, commit_failed;
  char pad2[32]; /* one slot, two cache lines */
} mp__pool_slot_t;
_Static_assert(sizeof(mp__pool_slot_t) == 128, "slot size");

/* Pool states (shared so that workers see close and terminate). */
enum mp__pool_state {
  MP__POOL_RUNNING,
  MP__POOL_CLOSING,     /* workers exit when the queue is empty */
  MP__POOL_TERMINATING, /* workers take nothing more */
};

/* The pool in shared memory. The queue lock guards head, tail, holder,
 * completed, the jobs' counters and the slots' claims and journals. */
typedef struct mp__pool_shared {
  uint32_t magic;
  uint32_t nslots;
  uint64_t maxtasks;
  int32_t event_fd; /* eventfd of the pool thread, same number everywhere */
  _Atomic uint32_t state;
  mp__mutex_t qlock;
  _Atomic int32_t holder; /* slot holding qlock, MP__NO_HOLDER otherwise */
  uint32_t pad;
  mp__pool_unit_t *_Atomic head;
  mp__pool_unit_t *_Atomic tail; /* meaningful only while head != NULL */
  mp__pool_job_t *_Atomic completed;
  _Atomic uint32_t work_seq; /* bumped whenever work is queued */
  _Atomic uint32_t fn_count;
  mp__fnref_t initializer;
  void *initarg;
  uint64_t initarg_size;
  mp__fnref_t fns[MP__POOL_FNS];
  mp__pool_slot_t slots[];
} mp__pool_shared_t;

/* ---- The queue (pool_queue.c), used by workers and the parent ---------- */

/* Fault injection for tests (sqlite's way of reaching failure paths): when
 * set (in a worker, by a test's initializer), called at each numbered
 * point inside the queue lock, where it may end the process. NULL
 * otherwise. */
extern void (*mp__pool_fault_hook)(int point);
enum mp__pool_fault {
  MP__FAULT_CLAIM_WRITTEN = 1,
  MP__FAULT_CLAIMING,
  MP__FAULT_CLAIM_MOVED,
  MP__FAULT_CLAIMED,
  MP__FAULT_COMMIT_JOURNAL,
  MP__FAULT_COMMITTING,
  MP__FAULT_COMMIT_LOGGED,
  MP__FAULT_COMMIT_COUNTED,
  MP__FAULT_COMMIT_PUSHED,
  MP__FAULT_COMMITTED,
  MP__FAULT_POPPED,
  MP__FAULT_COUNT,
};

/* Takes the queue lock; if its holder died inside, first finishes what the
 * holder was doing (see pool_queue.c). holder: the caller's slot, or
 * MP__NO_HOLDER in the parent. 0, or a negative code from the owner table
 * (the lock is then not held). */
int mp__pool_lock(mp__pool_shared_t *ps, int32_t holder);
void mp__pool_unlock(mp__pool_shared_t *ps);

/* Under the lock: records that items [first, first + count) of job are
 * final, `failed` of them not OK. Returns true when the job is complete.
 * *wake is set when waiters of job must be woken. */
bool mp__pool_commit(mp__pool_shared_t *ps, mp__pool_job_t *job, uint64_t first,
                     uint64_t count, uint64_t failed, bool *wake);

/* Under the lock, by a worker: commits its claim (whose items have all
 * run), journaled so that its death at any point is repaired. */
bool mp__pool_commit_claim(mp__pool_shared_t *ps, mp__pool_slot_t *slot,
                           uint64_t failed, bool *wake);

/* Under the lock, by a worker: claims the next chunk for slot. false when
 * the queue is empty. */
bool mp__pool_claim(mp__pool_shared_t *ps, mp__pool_slot_t *slot);

/* Under the lock: puts a unit at the tail (new work) or the head (the rest
 * of a dead worker's chunk). */
void mp__pool_enqueue(mp__pool_shared_t *ps, mp__pool_unit_t *unit,
                      bool at_head);

/* Under the lock, in the parent: takes a job's units out of the queue
 * before the job is freed (exhausted units leave the head only lazily). */
void mp__pool_purge(mp__pool_shared_t *ps, const mp__pool_job_t *job);

/* Under the lock: whether any unit still has items to hand out. */
bool mp__pool_has_work(mp__pool_shared_t *ps);

/* Under the lock: puts items [from, to) of job back at the head of the
 * queue, as a unit whose items were lost `losses` times. false without
 * memory for the unit (nothing queued). */
bool mp__pool_requeue(mp__pool_shared_t *ps, mp__pool_job_t *job, uint64_t from,
                      uint64_t to, uint32_t losses);

/* Wakes the workers sleeping for work (up to n). */
void mp__pool_wake_workers(mp__pool_shared_t *ps, int n);

/* Wakes the threads waiting on a job (after bumping its seq). */
void mp__pool_wake_job(mp__pool_job_t *job);

/* Spins up to ns nanoseconds while *word == value; true once it changed. */
bool mp__pool_spin(_Atomic uint32_t *word, uint32_t value, uint64_t ns);

/* Tells the pool thread something happened (eventfd). */
void mp__pool_notify(const mp__pool_shared_t *ps);

/* ---- The worker (pool_worker.c) ------------------------------------------ */

/* What a worker process gets as its data block. */
typedef struct mp__pool_worker_arg {
  mp__pool_shared_t *ps;
  uint32_t slot;
} mp__pool_worker_arg_t;

/* The worker process types (Python names them ForkPoolWorker-N, ...). */
extern const mp_process_type_t mp__pool_worker_types[MP__METHOD_COUNT];

/* ---- The parent's side (pool.c, pool_thread.c) ------------------------ */

#include <pthread.h>

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
  pthread_mutex_t lock;
  bool finalized;
  int result;
  int task_code;
};

/* A backend runs some of the pool's work elsewhere (the MPI library: on
 * other hosts), claiming chunks through slots of its own after the
 * workers' (pool_backend.h); a closed pool ends once these slots hold no
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

/* pool_thread.c: starts the pool thread, which starts the workers; returns
 * once they are started, or the error. */
int mp__pool_thread_start(mp_pool_t *pool);

/* pool.c, for the pool thread: computes a map's or apply's result and
 * writes a map's outputs (once); and drops the pool thread's interest in a
 * finished request, freeing it if the user already did. */
void mp__pool_finalize(struct mp_async *r);
/* A finalized result's bytes: a map's output array or an apply's result. */
void mp__pool_result(const struct mp_async *r, const void **result,
                     size_t *len);
void mp__pool_thread_release(struct mp_async *r);

#endif
