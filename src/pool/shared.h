/* What the pool's workers see (internal): the pool's shared state, its
 * jobs and its queue, and what the workers and the parent share. What only
 * the parent sees is in parent.h. See pool.c for the design.
 *
 * Everything below lives in the arena, at the same address in every
 * process, so pointers to arena objects are valid everywhere. The only
 * process-local value stored here is a job's `request` (the parent's
 * bookkeeping), which only the parent reads. */
#ifndef MPROC_POOL_SHARED_H
#define MPROC_POOL_SHARED_H

#include "core/owner.h"
#include "sync/lock.h"
#include "mproc/pool.h"
#include "core/fnref.h"
#include "process/process.h"
#include "testing.h"

#define MP__POOL_MAGIC 0x504f4f4cu /* "POOL" */
#define MP__JOB_MAGIC  0x4a4f4221u /* "JOB!" */
#define MP__POOL_FNS   256u        /* distinct task functions per pool */
#define MP__NO_ITEM    UINT64_MAX
#define MP__NO_HOLDER  (-1)

/* The room an apply_async result has in the job itself; larger ones (up to
 * MP_POOL_RESULT_MAX) get a block of their own. */
#define MP__POOL_INLINE_RESULT 4096u

/* One item's result. state: ITEM_PENDING, ITEM_OK, a negative MP_E* code,
 * or ITEM_MOVED + k (the item went back to the queue as the first of a
 * unit of its own, whose first_state is that value). Only OK and the
 * codes are final. The writer stores
 * task_code first and state last (release). */
enum {
  MP__ITEM_PENDING = 0,
  MP__ITEM_OK = 1,
  MP__ITEM_MOVED = 0x8000,
  MP__ITEM_MOVES = 0x8000,
};
typedef struct mp__pool_item {
  _Atomic int32_t state;
  int32_t task_code;
} mp__pool_item_t;

static inline bool mp__pool_item_final(int32_t state) {
  return state == MP__ITEM_OK || state < 0;
}

typedef struct mp__pool_job mp__pool_job_t;

/* A range [start, end) of a job's items, handed out in chunks of `chunk`
 * items from start on: a claim is one atomic add to the cursor, with or
 * without the queue lock. Allocated and freed by the parent only; next is
 * guarded by the queue lock. */
typedef struct mp__pool_unit {
  mp__pool_job_t *job;
  uint64_t start, end;
  uint64_t chunk;
  int32_t first_state; /* what item `start` holds while it is unrun */
  uint32_t losses;     /* a backend's lost runs of these items (backend.c) */
  struct mp__pool_unit *_Atomic next; /* the queue's link */
  struct mp__pool_unit *more;         /* the job's extra units (parent) */
  /* The one word every claim writes, on a cache line of its own
   * (whatever the block's alignment): the job's fields that workers read
   * at every claim stay in their caches. */
  char pad[64];
  _Atomic uint64_t cursor; /* the next chunk's first item (may pass end) */
  char pad2[56];
} mp__pool_unit_t;

enum mp__job_kind { MP__JOB_MAP, MP__JOB_APPLY };

/* Job flags, guarded by the queue lock. */
#define MP__JOB_NOTIFY                                                         \
  1u                    /* at completion: onto the completed list, and         \
                           the pool thread is told */
#define MP__JOB_EACH 2u /* wake waiters at every commit (imap) */

/* A submission: a map (n items) or an apply (one item of bytes). Written by
 * the parent before it is queued, then read-only except: items[], failed
 * and out_len (by the worker running the item, or the parent after its
 * death); done, log, log_count, flags, moves, queued, next_completed
 * (queue lock); seq and waiters (atomics, the wake-up protocol); the
 * units' cursors (atomic adds). */
struct mp__pool_job {
  uint32_t magic;
  uint32_t kind;     /* enum mp__job_kind */
  uint32_t fn;       /* index in the pool's function table */
  uint32_t any_size; /* apply_async without result_max: the task gets
                        MP_POOL_RESULT_MAX of room; a result above out_size
                        goes to big_out */
  uint64_t n;        /* items */
  uint64_t in_size;  /* map: bytes per item; apply: input length */
  uint64_t out_size; /* map: bytes per item; apply: out_cap */
  const char *in;
  char *out;
  mp__pool_item_t *items;
  uint64_t *log;            /* imap_unordered: (first, count) of each commit */
  void *request;            /* the parent's record of it (parent only) */
  _Atomic uint64_t out_len; /* apply: what the task set */
  char *_Atomic big_out;    /* apply, any_size: an arena block the worker
                               allocated for a result above out_size; the
                               parent frees it with the job */
  _Atomic uint64_t done;    /* items final */
  _Atomic uint64_t failed;  /* 1 once an item is not MP__ITEM_OK */
  _Atomic uint64_t log_count;
  _Atomic uint32_t flags;
  _Atomic uint32_t seq;     /* bumped at each wake-up */
  _Atomic uint32_t waiters; /* threads sleeping on seq */
  uint32_t moves;           /* units made of claimed chunks (queue lock) */
  _Atomic uint32_t queued;  /* its units in the queue, or more (queue lock:
                               counted up before a unit is linked, down
                               after it is unlinked) */
  uint32_t pad;
  mp__pool_job_t *_Atomic next_completed;
  mp__pool_item_t item; /* apply's one item */
  mp__pool_unit_t unit; /* the first unit */
};

/* Slot phases, in the low bits of a slot's ledger. */
enum mp__slot_phase {
  MP__PHASE_IDLE,       /* no claim */
  MP__PHASE_CLAIMING,   /* adding to the cursor of `unit`: it may hold a
                           chunk from `first` on that it did not write
                           down (mp__pool_chunk_free) */
  MP__PHASE_CLAIMED,    /* owns items [first, first + n) */
  MP__PHASE_COMMITTING, /* journal written, job counters maybe not */
};
#define MP__LEDGER_PHASE 3u
#define MP__LEDGER_RAN   4u /* the unit of the count of items run */

static inline uint64_t mp__ledger(uint32_t phase, uint64_t ran) {
  return ran * MP__LEDGER_RAN | phase;
}

enum mp__slot_state {
  MP__SLOT_STARTING, /* before the initializer returned */
  MP__SLOT_READY,
};

/* One worker's record, reused by its replacements. The ledger is the
 * slot's phase and the count of the items of `job` it ran (results
 * stored) but did not add to the job's `done` yet, in one word: a worker
 * ends a chunk with one store (CLAIMED, r -> IDLE, r + n), and adds its
 * count to the job under the queue lock only when it leaves the unit (a
 * journaled commit). Written by the slot's worker, and by the parent
 * after its death; busy and current by the worker alone, read by the
 * parent's timeout watch and after the worker's death. */
typedef struct mp__pool_slot {
  _Atomic uint32_t state; /* enum mp__slot_state */
  _Atomic uint32_t sleeping;
  _Atomic mp__owner_t owner; /* the worker's token (MP__OWNER_NONE: none) */
  uint32_t pad;
  _Atomic uint64_t busy;    /* odd while a task runs; +1 at start and end */
  _Atomic uint64_t current; /* the item running or last run */
  _Atomic uint64_t ledger;  /* mp__ledger(phase, ran) */
  /* The claim. */
  mp__pool_unit_t *_Atomic unit;
  mp__pool_job_t *_Atomic job;
  _Atomic uint64_t first;
  _Atomic uint64_t n;
  /* The commit journal: the job's counters before the commit. */
  _Atomic uint64_t base_done, base_log;
  char pad2[40]; /* one slot, two cache lines */
} mp__pool_slot_t;
_Static_assert(sizeof(mp__pool_slot_t) == 128, "slot size");

static inline uint32_t mp__slot_phase(mp__pool_slot_t *slot) {
  return (uint32_t)(atomic_load(&slot->ledger) & MP__LEDGER_PHASE);
}

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
  _Atomic uint64_t spinners; /* workers (slots below 64) spinning for work,
                                one bit each; a waker takes a bit off for
                                each wake-up it spares */
  _Atomic uint32_t work_seq; /* bumped whenever work is queued */
  _Atomic uint32_t fn_count;
  mp__fnref_t initializer;
  void *initarg;
  uint64_t initarg_size;
  mp__fnref_t fns[MP__POOL_FNS];
  mp__pool_slot_t slots[];
} mp__pool_shared_t;

/* ---- The queue (queue.c), used by workers and the parent ---------- */

/* Takes the queue lock; if its holder died inside, first finishes what the
 * holder was doing (see queue.c). holder: the caller's slot, or
 * MP__NO_HOLDER in the parent. 0, or a negative code from the owner table
 * (the lock is then not held). */
int mp__pool_lock(mp__pool_shared_t *ps, int32_t holder);
void mp__pool_unlock(mp__pool_shared_t *ps);

/* Records item k's outcome (and that the job has a failure). Returns 1 if
 * it failed. */
static inline uint64_t mp__pool_item_set(mp__pool_job_t *job, uint64_t k,
                                         int32_t state, int32_t task_code) {
  job->items[k].task_code = task_code;
  if (state != MP__ITEM_OK)
    atomic_store_explicit(&job->failed, 1, memory_order_relaxed);
  atomic_store_explicit(&job->items[k].state, state, memory_order_release);
  return state != MP__ITEM_OK;
}

/* Under the lock: records that items [first, first + count) of job are
 * final. Returns true when the job is complete. *wake is set when waiters
 * of job must be woken. */
bool mp__pool_commit(mp__pool_shared_t *ps, mp__pool_job_t *job, uint64_t first,
                     uint64_t count, bool *wake);

/* Under the lock, by the slot's worker: adds the items its ledger counts
 * to its job, journaled so that its death at any point is repaired. */
bool mp__pool_flush(mp__pool_shared_t *ps, mp__pool_slot_t *slot, bool *wake);

/* Under the lock, by a worker: claims the next chunk for slot. false when
 * the queue is empty. */
bool mp__pool_claim(mp__pool_shared_t *ps, mp__pool_slot_t *slot);

/* With or without the lock, by the slot's worker: claims the next chunk of
 * unit u for slot (whose ledger counts no items of another job). false
 * when every chunk of u is claimed. The caller keeps u's job alive: its
 * ledger counts items of it, or it holds the lock. */
bool mp__pool_claim_from(mp__pool_shared_t *ps, mp__pool_slot_t *slot,
                         mp__pool_unit_t *u);

/* Under the lock: the chunks a slot whose worker died CLAIMING took
 * from its unit and did not write down (at most one; a scan also finds
 * the like of other dead workers) go back to the queue unrun, or fail
 * with MP_EWORKER without memory. It first lets live workers in the
 * middle of a claim of that unit write theirs down. The ledger is the
 * caller's to change. */
void mp__pool_settle_claiming(mp__pool_shared_t *ps, mp__pool_slot_t *slot);

/* Under the lock: puts items [from, to) of job back at the head of the
 * queue (mp__pool_requeue), or without memory fails them with `code`
 * and commits them. */
void mp__pool_give_back(mp__pool_shared_t *ps, mp__pool_job_t *job,
                        uint64_t from, uint64_t to, uint32_t losses, int code);

/* Under the lock: puts a unit at the tail (new work) or the head (the rest
 * of a dead worker's chunk). */
void mp__pool_enqueue(mp__pool_shared_t *ps, mp__pool_unit_t *unit,
                      bool at_head);

/* Under the lock, in the parent: takes a job's units out of the queue
 * before the job is freed (exhausted units leave the head only lazily). */
void mp__pool_purge(mp__pool_shared_t *ps, const mp__pool_job_t *job);

/* Without the lock, in the parent: whether a complete job may be freed
 * without mp__pool_purge: none of its units is queued, and nobody holds
 * the lock (a holder may still touch the job it completed, and one that
 * died inside has its step finished by the next). */
bool mp__pool_unlinked(mp__pool_shared_t *ps, const mp__pool_job_t *job);

/* Under the lock: whether any unit still has items to hand out. */
bool mp__pool_has_work(mp__pool_shared_t *ps);

/* Under the lock: puts items [from, to) of job back at the head of the
 * queue, as a unit whose items were lost `losses` times (item `from` is
 * marked MOVED). false without memory for the unit (nothing queued). */
bool mp__pool_requeue(mp__pool_shared_t *ps, mp__pool_job_t *job, uint64_t from,
                      uint64_t to, uint32_t losses);

/* Has up to n idle workers look at the queue: spinning ones (each taken
 * off `spinners`), then sleeping ones. */
void mp__pool_wake_workers(mp__pool_shared_t *ps, int n);

/* Wakes the threads waiting on a job (after bumping its seq). */
void mp__pool_wake_job(mp__pool_job_t *job);

/* Tells the pool thread something happened (eventfd). */
void mp__pool_notify(const mp__pool_shared_t *ps);

/* ---- The worker (worker.c) ------------------------------------------ */

/* What a worker process gets as its data block. */
typedef struct mp__pool_worker_arg {
  mp__pool_shared_t *ps;
  uint32_t slot;
} mp__pool_worker_arg_t;

/* The worker process types (Python names them ForkPoolWorker-N, ...). */
extern const mp_process_type_t mp__pool_worker_types[MP__METHOD_COUNT];

#endif
