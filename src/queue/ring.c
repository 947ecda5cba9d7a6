/* The ring of messages under the three queues (ring.h).
 *
 * Layout. A ring is a header in the arena, a chain of segments and a list
 * of out-of-line blocks:
 *   - A segment is a circular buffer of 8-byte granules holding records.
 *     A record is a 16-byte header {tag, len, seq} and its payload: the
 *     message itself (READY, up to INLINE_MAX bytes), a reference to a
 *     block (OOL), or nothing (PAD: fills the end of the buffer when a
 *     record would not fit before it, so that no record wraps).
 *   - A block holds one larger message. Blocks stay on the ring's list and
 *     are reused (SPARE) once read, so large messages do not allocate.
 * Positions are 32-bit granule counts that only grow (compared modulo
 * 2^32); a record at position p sits at granule p & mask.
 *
 * Locks. Producers place records under put_lock, consumers take them under
 * get_lock; both are robust mutexes (lock.h), so a process that dies inside
 * either is noticed by the next one to take it, who repairs (put_repair,
 * get_repair). Copies into and out of the ring happen under these locks,
 * which makes every record complete the moment it is visible: there is no
 * "being written" state that a death could leave behind. Large messages
 * are copied into their block before the lock is taken and out of it after
 * it is released; the block's state word says who owns it (FILLING by a
 * producer, QUEUED in the ring, READING by a consumer) and a dead owner's
 * block is taken back (block_gc).
 *
 * The tag. A record's tag is its state and its position; it is written last
 * (release), so a consumer that reads a valid tag (acquire) sees the whole
 * record. A producer zeroes the tag of the granule right after its record
 * before publishing it, so that the granule where the next record will go
 * never holds a stale or message-made "valid" tag: the tag at the head is
 * always either 0 or the real next record.
 *
 * Waiting. Sleepers register in a waitlist (getters, putters, joiners) and
 * sleep on its futex word. Whoever enters the section that makes progress
 * for them (a producer entering put_lock for getters, a consumer entering
 * get_lock or returning a block for putters) wakes them first: so a waker
 * that dies after publishing but before waking cannot strand them, because
 * a sleeper that finds the section taken waits for the section's lock
 * instead of the futex word, and the robust lock tells it when the holder
 * dies. Nobody wakes anybody when nobody sleeps. Before sleeping, waiters
 * spin for some tens of microseconds (yielding now and then) on a progress
 * counter of the ring header: the other side usually answers within that.
 * Waiters read only the ring header, never segments or blocks, which may be
 * freed under them. */
#include <assert.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "testing.h"
#include "sync/lock.h"
#include "queue/ring.h"

/* ---- Tunables ------------------------------------------------------------ */
#define GRANULE         8u
#define HEADER_GRANULES 2u
#define OOL_GRANULES    4u            /* header + {block, ticket} */
#define FIRST_SEGMENT   (64u << 10)   /* bytes of the first segment */
#define MAX_SEGMENT     (16u << 20)   /* segments grow up to this size */
#define INLINE_MAX      16384u        /* larger messages go out of line */
#define FIRST_BUDGET    (4ull << 20)  /* bytes of blocks in flight */
#define MIN_BLOCK       (64ull << 10) /* smallest block capacity */
#define MAX_SPARES      64u           /* blocks kept for reuse */
#define GROW_GRACE      0.002         /* seconds without progress: grow */
/* Spins of the futex core before sleeping, a yield after each: about 30 us
 * in all on a 2.6 GHz core. */
#define SPIN_BURSTS 8

#define SEGMENT_MAGIC 0x5345474du /* "SEGM" */
#define BLOCK_MAGIC   0x424c4f4bu /* "BLOK" */

/* ---- Records ------------------------------------------------------------- */
enum record_state {
  REC_READY = 1, /* an inline message */
  REC_OOL = 2,   /* a reference to a QUEUED block */
  REC_PAD = 3,   /* nothing up to the end of the buffer */
};
#define TAG_STATE 3u

typedef struct record {
  _Atomic uint32_t tag; /* tag_of(state, position); else no record here */
  uint32_t len;         /* READY: message bytes; PAD: granules */
  uint64_t seq;         /* READY and OOL: the message's number */
} record_t;

struct block;
typedef struct ool_ref {
  struct block *block;
  uint64_t ticket; /* the block's ticket when it was put */
} ool_ref_t;

_Static_assert(sizeof(record_t) == HEADER_GRANULES * GRANULE, "header");
_Static_assert(INLINE_MAX <= FIRST_SEGMENT / 4, "inline records fit a segment");
_Static_assert(sizeof(record_t) + sizeof(ool_ref_t) == OOL_GRANULES * GRANULE,
               "reference record");

static uint32_t tag_of(uint32_t state, uint32_t pos) {
  return pos << 2 | state;
}

static bool tag_is_at(uint32_t tag, uint32_t pos) {
  return (tag & TAG_STATE) != 0 && (tag >> 2) == (pos & 0x3fffffffu);
}

static uint32_t inline_granules(size_t len) {
  return HEADER_GRANULES + (uint32_t)((len + GRANULE - 1) / GRANULE);
}

static uint32_t record_granules(const record_t *rec, uint32_t tag) {
  switch (tag & TAG_STATE) {
  case REC_PAD:
    return rec->len;
  case REC_OOL:
    return OOL_GRANULES;
  default:
    return inline_granules(rec->len);
  }
}

static void *record_payload(record_t *rec) {
  return rec + 1;
}

/* ---- Segments ------------------------------------------------------------ */
typedef struct segment {
  uint32_t magic;
  uint32_t mask;                  /* capacity in granules - 1 */
  _Atomic(struct segment *) next; /* the newer segment: set once, under
                                     put_lock, after tail is final */
  char pad0[48];
  /* Producer line, guarded by put_lock. */
  _Atomic uint32_t tail; /* where the next record goes; read by consumers
                            only once next is set */
  uint32_t head_seen;    /* the last head producers read */
  char pad1[56];
  /* Consumer line, guarded by get_lock. */
  _Atomic uint32_t head; /* the oldest record not yet taken; everything
                            before it is free (producers read it) */
  char pad2[60];
  uint64_t data[]; /* mask + 1 granules */
} segment_t;

_Static_assert(offsetof(segment_t, tail) == 64, "producer line");
_Static_assert(offsetof(segment_t, head) == 128, "consumer line");
_Static_assert(offsetof(segment_t, data) == 192, "data line");

static record_t *record_at(segment_t *s, uint32_t pos) {
  return (record_t *)&s->data[pos & s->mask];
}

/* bytes: a power of two. */
static segment_t *segment_new(uint64_t bytes) {
  segment_t *s = mp__shm_alloc(sizeof *s + bytes);
  if (!s)
    return NULL;
  s->magic = SEGMENT_MAGIC;
  s->mask = (uint32_t)(bytes / GRANULE - 1);
  return s; /* zeroed: no valid tag anywhere, head = tail = 0 */
}

/* ---- Blocks -------------------------------------------------------------- */
enum block_state {
  BLOCK_SPARE = 1, /* free for the next large put */
  BLOCK_FILLING,   /* a producer (the owner) copies into it: no record
                      refers to it yet */
  BLOCK_QUEUED,    /* an OOL record refers to it */
  BLOCK_READING,   /* a consumer (the owner) copies out of it: its record
                      has been taken */
};

typedef struct block {
  uint32_t magic;
  uint32_t reserved;
  _Atomic uint64_t state;  /* block_state << 32 | owner token */
  _Atomic uint64_t ticket; /* new each time a producer takes it */
  _Atomic uint64_t len;    /* the message's length */
  uint64_t capacity;       /* bytes after this header */
  struct block *next;      /* the ring's list: guarded by block_lock */
  char pad[16];
} block_t;

_Static_assert(sizeof(block_t) == 64, "block data is 64-byte aligned");

static uint64_t block_word(enum block_state state, mp__owner_t owner) {
  return (uint64_t)state << 32 | owner;
}

static enum block_state block_state_of(uint64_t word) {
  return (enum block_state)(word >> 32);
}

static void *block_data(block_t *b) {
  return b + 1;
}

/* ---- Waitlists --------------------------------------------------------------
 * The sleepers of one kind. A sleeper counts itself and takes a slot (its
 * owner token) when one is free. Wakers look at the count only; when it is
 * not 0 they wake and clear the slots of sleepers that died (a sleeper
 * killed in the instant between counting itself and taking its slot, or one
 * without a slot, stays counted: it costs wakers a futex call). */
#define WAIT_SLOTS 14

typedef struct waitlist {
  _Atomic uint32_t seq;   /* futex word: bumped to wake */
  _Atomic uint32_t count; /* registered sleepers */
  _Atomic uint32_t slot[WAIT_SLOTS];
} waitlist_t;

_Static_assert(sizeof(waitlist_t) == 64, "one cache line");

/* ---- The ring ------------------------------------------------------------ */
#define UNFINISHED_MARK_BITS 24
#define UNFINISHED_MARK_MASK ((1ull << UNFINISHED_MARK_BITS) - 1)

struct mp__ring {
  uint32_t magic;
  uint32_t generation;
  uint64_t maxsize; /* 0: unbounded */
  uint32_t kind;
  _Atomic uint32_t closed; /* set once by close */

  /* Producer side, guarded by put_lock. */
  _Alignas(64) mp__mutex_t put_lock;
  _Atomic(segment_t *) tail_seg;
  _Atomic uint64_t puts;      /* messages placed: the next seq */
  _Atomic uint32_t arena_ops; /* processes inside an arena call for the
                                 ring (see mp__ring_arena_interrupted) */
  /* The block being published, for put_repair. */
  _Atomic(block_t *) put_pending;
  _Atomic uint64_t put_pending_ticket;

  /* Consumer side, guarded by get_lock. */
  _Alignas(64) mp__mutex_t get_lock;
  _Atomic(segment_t *) head_seg;
  _Atomic uint64_t gets; /* seq + 1 of the last message taken or dropped */
  /* The block being taken, for get_repair. */
  _Atomic(block_t *) get_pending;
  _Atomic uint64_t get_pending_ticket;

  /* Progress counters for waiters, bumped inside the sections (so that a
   * process killed in one cannot leave a waiter asleep, see the top of the
   * file). Each on a line of its own: waiters spin on them, and a spinner
   * on the line of a lock would slow down every acquire of that lock. */
  _Alignas(64) _Atomic uint32_t put_seq; /* bumped at each record placed */
  _Alignas(64) _Atomic uint32_t get_seq; /* bumped whenever a head moves */

  _Alignas(64) waitlist_t getters; /* wait for a message */
  waitlist_t putters;              /* wait for the count, room, blocks */
  waitlist_t joiners;              /* JoinableQueue.join */

  /* JoinableQueue: unfinished << 24 | the low 24 bits of the seq counted
   * last (so put_repair can tell whether a dead producer counted its
   * message). Changed by CAS: put (under put_lock), task_done (join_lock).
   */
  _Alignas(64) mp__mutex_t join_lock;
  _Atomic uint64_t unfinished;

  /* Out-of-line blocks, guarded by block_lock. */
  _Alignas(64) mp__mutex_t block_lock;
  block_t *blocks;
  uint64_t tickets;         /* the last ticket handed out */
  uint64_t budget;          /* bytes of blocks in flight before waiting */
  _Atomic uint32_t returns; /* blocks given back: progress for waiters */
};
MP__OBJECT_LAYOUT(mp__ring_t);

/* ---- Small helpers ------------------------------------------------------- */

static mp__owner_t self_token(void) {
  mp__owner_t me = MP__OWNER_NONE;
  mp__owner_self(&me);
  return me;
}

static bool is_closed(const mp__ring_t *r) {
  return atomic_load_explicit(&((mp__ring_t *)r)->closed,
                              memory_order_acquire) != 0;
}

static bool lock_is_held(mp__mutex_t *m) {
  return (atomic_load(&m->word) & MP__MUTEX_OWNER) != 0;
}

static mp__deadline_t earlier(const mp__deadline_t *a, mp__deadline_t b) {
  return mp__deadline_earlier(a, &b);
}

/* The caller's deadline, computed at the first wait (a clock read costs on
 * the fast path). */
typedef struct op_time {
  double timeout;
  /* The ring's identity (mp__object_id) when the call began: a waiter
   * that finds it changed returns MP_EINVAL (the queue was freed, or its
   * memory given to a new one, while it slept). */
  uint64_t id;
  bool computed;
  mp__deadline_t deadline;
} op_time_t;

static const mp__deadline_t *op_deadline(op_time_t *t) {
  if (!t->computed) {
    t->deadline = mp__deadline_in(t->timeout);
    t->computed = true;
  }
  return &t->deadline;
}

/* ---- Waitlists ----------------------------------------------------------- */

static int waitlist_join(waitlist_t *wl, mp__owner_t me) {
  atomic_fetch_add(&wl->count, 1);
  for (int i = 0; me != MP__OWNER_NONE && i < WAIT_SLOTS; i++) {
    uint32_t free_slot = 0;
    if (atomic_compare_exchange_strong(&wl->slot[i], &free_slot, me))
      return i;
  }
  return -1;
}

static void waitlist_leave(waitlist_t *wl, int slot, mp__owner_t me) {
  uint32_t mine = me;
  if (slot < 0 || atomic_compare_exchange_strong(&wl->slot[slot], &mine, 0))
    atomic_fetch_sub(&wl->count, 1);
}

/* Clears the slots of sleepers that died (and their count). */
static void waitlist_forget_dead(waitlist_t *wl) {
  for (int i = 0; i < WAIT_SLOTS; i++) {
    uint32_t t = atomic_load_explicit(&wl->slot[i], memory_order_relaxed);
    if (t != 0 && mp__owner_dead(t) &&
        atomic_compare_exchange_strong(&wl->slot[i], &t, 0))
      atomic_fetch_sub(&wl->count, 1);
  }
}

/* Whether anyone may sleep on wl. Every caller has just taken a section
 * lock with an atomic read-modify-write, and the sleeper counts itself
 * (seq_cst) before it looks at that lock: the two sides need a StoreLoad
 * order. On x86-64 the lock's locked instruction is a full barrier already,
 * so only the compiler must be kept from moving the load up; elsewhere a
 * fence; under ThreadSanitizer, which does not model fences, a seq_cst
 * read-modify-write of the count (slower, as every waker writes it). */
static bool waitlist_busy(waitlist_t *wl) {
#if defined(MP__TSAN)
  return atomic_fetch_add(&wl->count, 0) != 0;
#else
#if defined(__x86_64__)
  atomic_signal_fence(memory_order_seq_cst);
#else
  atomic_thread_fence(memory_order_seq_cst);
#endif
  return atomic_load_explicit(&wl->count, memory_order_relaxed) != 0;
#endif
}

/* Called by whoever just entered a section that may let sleepers go on:
 * either it sees a sleeper registered, or the sleeper sees it holding the
 * section's lock (and waits for that instead). */
static void waitlist_wake(waitlist_t *wl) {
  if (!waitlist_busy(wl))
    return;
  atomic_fetch_add(&wl->seq, 1);
  mp__futex_wake(&wl->seq, INT_MAX);
  waitlist_forget_dead(wl);
}

static void waitlist_wake_all(waitlist_t *wl) {
  atomic_fetch_add(&wl->seq, 1);
  mp__futex_wake(&wl->seq, INT_MAX);
}

/* ---- Sections ------------------------------------------------------------ */
static void put_repair(mp__ring_t *r);
static void get_repair(mp__ring_t *r);

/* Takes lock; a holder that died is repaired after. 0 or a negative code. */
static int section_lock(mp__ring_t *r, mp__mutex_t *lock,
                        const mp__deadline_t *deadline) {
  int rc = mp__mutex_acquire_until(lock, deadline);
  if (rc != MP_EOWNERDEAD)
    return rc;
  if (lock == &r->put_lock)
    put_repair(r);
  else if (lock == &r->get_lock)
    get_repair(r);
  return 0; /* block_lock and join_lock need no repair */
}

static int put_enter(mp__ring_t *r) {
  int rc = section_lock(r, &r->put_lock, MP__NO_DEADLINE);
  if (rc == 0)
    waitlist_wake(&r->getters);
  return rc;
}

static void put_leave(mp__ring_t *r) {
  mp__mutex_release(&r->put_lock);
}

static int get_enter(mp__ring_t *r) {
  int rc = section_lock(r, &r->get_lock, MP__NO_DEADLINE);
  if (rc == 0)
    waitlist_wake(&r->putters);
  return rc;
}

static void get_leave(mp__ring_t *r) {
  mp__mutex_release(&r->get_lock);
}

/* Waits for the holder of lock to leave (or die: then it repairs). */
static int section_pass(mp__ring_t *r, mp__mutex_t *lock,
                        const mp__deadline_t *deadline) {
  int rc = section_lock(r, lock, deadline);
  if (rc == 0)
    mp__mutex_release(lock);
  return rc;
}

/* What a sleeper waits for. Waiters look only at words of the ring header
 * (never at segments or blocks, which may be freed and reused meanwhile). */
typedef struct wait_spec {
  waitlist_t *list;
  mp__mutex_t *section;       /* the lock of the side that makes progress */
  _Atomic uint32_t *progress; /* a counter of that side (or NULL), read as
                                 `seen` before the condition was found
                                 false: spun on, then re-checked */
  uint32_t seen;
  bool (*ready)(const void *); /* another condition to re-check, or NULL */
  const void *arg;
} wait_spec_t;

static bool wait_over(mp__ring_t *r, const wait_spec_t *w) {
  return (w->progress && atomic_load(w->progress) != w->seen) ||
         (w->ready && w->ready(w->arg)) || is_closed(r);
}

/* Spins until *word leaves seen, for some tens of microseconds: the other
 * side of a queue usually answers within that (a sleep and a wake-up cost
 * more), and the yields give the CPU to it when it waits for ours. */
_Atomic bool mp__ring_spin_off;
void (*mp__ring_wait_hook)(void);

static bool spin_for_change(_Atomic uint32_t *word, uint32_t seen) {
  if (__builtin_expect(
          atomic_load_explicit(&mp__ring_spin_off, memory_order_relaxed), 0))
    return false;
  for (int i = 0; i < SPIN_BURSTS; i++) {
    if (mp__futex_spin(word, seen))
      return true;
    sched_yield();
  }
  return false;
}

/* The other side's progress counter, read before a last look at the
 * condition: whatever that side does after this read changes the counter,
 * so a wait on `seen` after the look cannot miss it. (Read only once the
 * condition failed: the counter's line is the other side's to write.) */
static uint32_t arm(_Atomic uint32_t *progress, bool *armed) {
  *armed = true;
  return atomic_load(progress);
}

/* One wait for progress: 0 when something may have changed (look again),
 * MP_ETIMEDOUT at the deadline, or a negative code. */
static int wait_progress(mp__ring_t *r, const wait_spec_t *w, uint64_t id,
                         const mp__deadline_t *deadline) {
  /* Freed while we wait (see mp__ring_free): said, not slept on. */
  if (mp__object_id(r) != id)
    return MP_EINVAL;
  if (w->progress && spin_for_change(w->progress, w->seen))
    return 0;
  mp__owner_t me = self_token();
  int slot = waitlist_join(w->list, me);
  uint32_t seen = atomic_load(&w->list->seq);
  /* The section's lock is looked at before the condition: free now, any
   * holder from here on saw us in the list and will bump seq; held by one
   * that came before us (and may have missed us), we wait for it to leave.
   * Looked at after the condition, it could be taken, the change made and
   * the lock left between the two looks, and the change never seen. */
  bool held = lock_is_held(w->section);
  if (mp__ring_wait_hook)
    mp__ring_wait_hook();
  int rc = 0;
  /* Checked after `seen` was read: a free that bumped seq before has
   * retired the ring before that, and one after wakes the futex below. */
  if (mp__object_id(r) != id)
    rc = MP_EINVAL;
  else if (wait_over(r, w))
    rc = 0;
  else if (held)
    rc = section_pass(r, w->section, deadline);
  else
    rc = mp__futex_wait(&w->list->seq, seen, deadline);
  waitlist_leave(w->list, slot, me);
  return rc;
}

/* ---- Arena calls --------------------------------------------------------- */

/* A process killed inside an arena call can leave one block behind (the
 * arena undoes its unfinished call: the block it was about to receive once
 * the call completed, or the one it was giving back, stays allocated). The ring
 * counts the processes inside such a window, from before the call until the
 * block is linked into (or after it was unlinked from) the ring, so a test can
 * tell an interrupted arena call from a leak of the ring's own. Arena calls are
 * rare: growth and new blocks, not every put. */
static void arena_enter(mp__ring_t *r) {
  atomic_fetch_add(&r->arena_ops, 1);
}

static void arena_leave(mp__ring_t *r) {
  atomic_fetch_sub(&r->arena_ops, 1);
}

/* ---- Blocks: taking, giving back, collecting ----------------------------- */

static uint64_t block_capacity_for(size_t len) {
  uint64_t cap = MIN_BLOCK;
  while (cap < len)
    cap <<= 1;
  return cap;
}

/* A FILLING or READING block whose owner died holds nothing anyone will
 * read (a FILLING block is not in the ring yet, a READING one has left it):
 * it becomes SPARE. Except the blocks a repair still has to look at
 * (put_pending, get_pending): those are for put_repair and get_repair to
 * give back. Under block_lock. */
static void block_gc(mp__ring_t *r, block_t *b) {
  uint64_t word = atomic_load(&b->state);
  enum block_state state = block_state_of(word);
  if ((state == BLOCK_FILLING || state == BLOCK_READING) &&
      mp__owner_dead((mp__owner_t)word) && b != atomic_load(&r->put_pending) &&
      b != atomic_load(&r->get_pending))
    atomic_compare_exchange_strong(&b->state, &word,
                                   block_word(BLOCK_SPARE, 0));
}

static void block_unlink_free(mp__ring_t *r, block_t *b) {
  arena_enter(r);
  block_t **link = &r->blocks;
  while (*link != b)
    link = &(*link)->next;
  *link = b->next;
  mp__shm_free(b);
  arena_leave(r);
}

/* Keeps at most MAX_SPARES spares, and no more spare bytes than the
 * budget, but always one (so that a stream of messages larger than the
 * budget reuses its block): the largest go back to the arena. Under
 * block_lock. */
static void block_trim(mp__ring_t *r) {
  for (;;) {
    unsigned count = 0;
    uint64_t bytes = 0;
    block_t *largest = NULL;
    for (block_t *b = r->blocks; b; b = b->next) {
      if (block_state_of(atomic_load(&b->state)) != BLOCK_SPARE)
        continue;
      count++;
      bytes += b->capacity;
      if (!largest || b->capacity > largest->capacity)
        largest = b;
    }
    if (count <= 1 || (count <= MAX_SPARES && bytes <= r->budget))
      return;
    block_unlink_free(r, largest);
  }
}

/* Returns a block the caller owns (READING or FILLING), or a QUEUED one
 * nobody will take any more, to the spares. */
static void block_give_back(mp__ring_t *r, block_t *b, uint64_t expected) {
  section_lock(r, &r->block_lock, MP__NO_DEADLINE);
  waitlist_wake(&r->putters);
  atomic_compare_exchange_strong(&b->state, &expected,
                                 block_word(BLOCK_SPARE, 0));
  atomic_fetch_add(&r->returns, 1);
  block_trim(r);
  mp__mutex_release(&r->block_lock);
}

/* Gives b back if it still carries ticket (nobody took it again since) and
 * is not already spare. */
static void block_abandon(mp__ring_t *r, block_t *b, uint64_t ticket) {
  if (atomic_load(&b->ticket) != ticket)
    return; /* already given back and taken again */
  uint64_t word = atomic_load(&b->state);
  enum block_state state = block_state_of(word);
  if (state == BLOCK_QUEUED || state == BLOCK_FILLING || state == BLOCK_READING)
    block_give_back(r, b, word);
}

typedef struct block_choice {
  block_t *best;     /* the smallest spare that fits */
  uint64_t inflight; /* capacity of the blocks not spare */
} block_choice_t;

static block_choice_t block_survey(mp__ring_t *r, size_t len) {
  block_choice_t c = {NULL, 0};
  for (block_t *b = r->blocks; b; b = b->next) {
    block_gc(r, b);
    if (block_state_of(atomic_load(&b->state)) != BLOCK_SPARE)
      c.inflight += b->capacity;
    else if (b->capacity >= len && (!c.best || b->capacity < c.best->capacity))
      c.best = b;
  }
  return c;
}

static block_t *block_alloc(mp__ring_t *r, size_t len) {
  uint64_t cap = block_capacity_for(len);
  arena_enter(r);
  block_t *b = mp__shm_alloc(sizeof *b + cap);
  if (b) {
    b->magic = BLOCK_MAGIC;
    b->capacity = cap;
    atomic_init(&b->state, block_word(BLOCK_SPARE, 0));
    b->next = r->blocks;
    r->blocks = b;
  }
  arena_leave(r);
  return b;
}

/* The blocks in flight are over the budget: waits for one to come back, or
 * raises the budget when none does within GROW_GRACE (at once for timeout
 * 0: an unbounded put never fails for room). Called with block_lock held;
 * returns 0 with it held again, or an error without it. */
static int block_wait(mp__ring_t *r, op_time_t *t) {
  assert(mp__mutex_is_mine(&r->block_lock));
  uint32_t seen = atomic_load(&r->returns);
  int rc = MP_ETIMEDOUT;
  if (t->timeout != 0) {
    mp__mutex_release(&r->block_lock);
    wait_spec_t w = {&r->putters, &r->block_lock, &r->returns,
                     seen,        NULL,           NULL};
    mp__deadline_t grace = earlier(op_deadline(t), mp__deadline_in(GROW_GRACE));
    rc = wait_progress(r, &w, t->id, &grace);
    if (rc < 0 && rc != MP_ETIMEDOUT)
      return rc;
    int lrc = section_lock(r, &r->block_lock, MP__NO_DEADLINE);
    if (lrc < 0)
      return lrc;
  }
  if (rc == MP_ETIMEDOUT && r->budget < (UINT64_MAX >> 1))
    r->budget <<= 1;
  return 0;
}

/* Takes a block of at least len bytes for a producer: FILLING(me), with a
 * new ticket. */
static int block_take(mp__ring_t *r, size_t len, op_time_t *t, block_t **out) {
  mp__owner_t me = self_token();
  if (me == MP__OWNER_NONE)
    return -EAGAIN;
  int rc = section_lock(r, &r->block_lock, MP__NO_DEADLINE);
  while (rc == 0) {
    block_choice_t c = block_survey(r, len);
    uint64_t need = c.best ? c.best->capacity : block_capacity_for(len);
    if (c.inflight > 0 && c.inflight + need > r->budget) {
      rc = block_wait(r, t);
      continue;
    }
    block_t *b = c.best ? c.best : block_alloc(r, len);
    if (b) {
      /* The ticket before the state: whoever sees FILLING sees it. */
      atomic_store(&b->ticket, ++r->tickets);
      atomic_store_explicit(&b->state, block_word(BLOCK_FILLING, me),
                            memory_order_release);
      *out = b;
    }
    mp__mutex_release(&r->block_lock);
    return b ? 0 : -errno;
  }
  return rc;
}

/* ---- Placing records (producers, under put_lock) ------------------------- */

/* Room in s for a record of k granules: the position it goes to and the pad
 * before it (when it would cross the end of the buffer). The granule after
 * the record must be free too: it is zeroed. */
static bool ring_place(segment_t *s, uint32_t k, uint32_t *pos, uint32_t *pad) {
  uint32_t cap = s->mask + 1;
  uint32_t t = atomic_load_explicit(&s->tail, memory_order_relaxed);
  uint32_t off = t & s->mask;
  uint32_t p = off + k > cap ? cap - off : 0;
  uint32_t need = p + k + 1;
  if ((uint32_t)(t - s->head_seen) + need > cap) {
    s->head_seen = atomic_load_explicit(&s->head, memory_order_acquire);
    if ((uint32_t)(t - s->head_seen) + need > cap)
      return false;
  }
  *pos = t + p;
  *pad = p;
  return true;
}

/* Makes the record at pos (payload already written) visible. Order: the
 * next tag zeroed, the record's header, its tag, the pad's tag (a consumer
 * reads the pad first), then tail. */
static void ring_publish(segment_t *s, uint32_t pos, uint32_t pad, uint32_t k,
                         uint32_t state, uint32_t len, uint64_t seq) {
  atomic_store_explicit(&record_at(s, pos + k)->tag, 0, memory_order_relaxed);
  record_t *rec = record_at(s, pos);
  rec->len = len;
  rec->seq = seq;
  atomic_store_explicit(&rec->tag, tag_of(state, pos), memory_order_release);
  if (pad) {
    record_t *p = record_at(s, pos - pad);
    p->len = pad;
    atomic_store_explicit(&p->tag, tag_of(REC_PAD, pos - pad),
                          memory_order_release);
  }
  atomic_store_explicit(&s->tail, pos + k, memory_order_release);
}

static void unfinished_add(mp__ring_t *r, uint64_t seq) {
  uint64_t w = atomic_load(&r->unfinished);
  uint64_t next;
  do
    next = ((w >> UNFINISHED_MARK_BITS) + 1) << UNFINISHED_MARK_BITS |
           (seq & UNFINISHED_MARK_MASK);
  while (!atomic_compare_exchange_weak(&r->unfinished, &w, next));
}

/* put_repair: a dead producer counted seq but did not publish it. */
static void unfinished_undo(mp__ring_t *r, uint64_t seq) {
  uint64_t w = atomic_load(&r->unfinished);
  uint64_t next;
  do {
    if ((w & UNFINISHED_MARK_MASK) != (seq & UNFINISHED_MARK_MASK))
      return;
    next = ((w >> UNFINISHED_MARK_BITS) - 1) << UNFINISHED_MARK_BITS |
           ((seq - 1) & UNFINISHED_MARK_MASK);
  } while (!atomic_compare_exchange_weak(&r->unfinished, &w, next));
}

/* A put in progress. */
typedef struct put_op {
  const void *buf;
  size_t len;
  block_t *block; /* out of line: the filled block (else NULL) */
  uint64_t ticket;
  op_time_t time;
  bool grow; /* no progress came: grow instead of waiting again */
} put_op_t;

static void place_record(mp__ring_t *r, put_op_t *op, segment_t *s,
                         uint32_t pos, uint32_t pad, uint32_t k) {
  record_t *rec = record_at(s, pos);
  uint64_t seq = atomic_load_explicit(&r->puts, memory_order_relaxed);
  if (op->block) {
    ool_ref_t *ref = record_payload(rec);
    ref->block = op->block;
    ref->ticket = op->ticket;
    atomic_store(&r->put_pending_ticket, op->ticket);
    atomic_store(&r->put_pending, op->block);
    atomic_store_explicit(&op->block->state, block_word(BLOCK_QUEUED, 0),
                          memory_order_release);
  } else if (op->len) {
    memcpy(record_payload(rec), op->buf, op->len);
  }
  if (r->kind == MP__RING_JOINABLE)
    unfinished_add(r, seq);
  ring_publish(s, pos, pad, k, op->block ? REC_OOL : REC_READY,
               op->block ? 0 : (uint32_t)op->len, seq);
  atomic_store_explicit(&r->puts, seq + 1, memory_order_relaxed);
  atomic_store_explicit(&r->put_seq, (uint32_t)seq + 1, memory_order_release);
  if (op->block)
    atomic_store(&r->put_pending, NULL);
}

/* A new segment after s (twice as big, up to MAX_SEGMENT) becomes the one
 * producers use. Under put_lock. */
static int ring_grow(mp__ring_t *r, segment_t *s) {
  uint64_t bytes = ((uint64_t)s->mask + 1) * GRANULE;
  if (bytes < MAX_SEGMENT)
    bytes <<= 1;
  arena_enter(r);
  segment_t *n = segment_new(bytes);
  int rc = n ? 0 : -errno;
  if (n) {
    /* s->tail is final: next is published after it. */
    atomic_store_explicit(&s->next, n, memory_order_release);
    atomic_store(&r->tail_seg, n);
  }
  arena_leave(r);
  return rc;
}

static bool count_full(mp__ring_t *r) {
  return mp__ring_full(r);
}

/* The count is at maxsize: wait for a get. Called under put_lock; returns
 * 0 with it held again, or an error without it. */
static int wait_count(mp__ring_t *r, put_op_t *op, uint32_t seen) {
  assert(mp__mutex_is_mine(&r->put_lock));
  put_leave(r);
  if (op->time.timeout == 0)
    return MP_EFULL;
  wait_spec_t w = {&r->putters, &r->get_lock, &r->get_seq, seen, NULL, NULL};
  int rc = wait_progress(r, &w, op->time.id, op_deadline(&op->time));
  if (rc == MP_ETIMEDOUT)
    return MP_EFULL;
  return rc < 0 ? rc : put_enter(r);
}

struct seen_segment {
  mp__ring_t *r;
  segment_t *s;
};

static bool grown(const void *arg) {
  const struct seen_segment *g = arg;
  return atomic_load(&g->r->tail_seg) != g->s; /* compared, never read */
}

/* s is full: wait for consumers, or note that it should grow (op->grow)
 * when they take nothing for GROW_GRACE (at once for timeout 0). Called
 * under put_lock; returns 0 with it held again, or an error without it. */
static int wait_room(mp__ring_t *r, put_op_t *op, segment_t *s, uint32_t seen) {
  assert(mp__mutex_is_mine(&r->put_lock));
  if (op->time.timeout == 0) {
    op->grow = true;
    return 0;
  }
  struct seen_segment g = {r, s};
  put_leave(r);
  wait_spec_t w = {&r->putters, &r->get_lock, &r->get_seq, seen, grown, &g};
  mp__deadline_t grace =
      earlier(op_deadline(&op->time), mp__deadline_in(GROW_GRACE));
  int rc = wait_progress(r, &w, op->time.id, &grace);
  if (rc == MP_ETIMEDOUT)
    op->grow = true;
  else if (rc < 0)
    return rc;
  return put_enter(r);
}

/* Places op's record: waits for the count and for room as needed. */
static int put_record(mp__ring_t *r, put_op_t *op) {
  uint32_t k = op->block ? OOL_GRANULES : inline_granules(op->len);
  uint32_t seen = 0;
  bool armed = false;
  int rc = put_enter(r);
  while (rc == 0) {
    if (is_closed(r)) {
      put_leave(r);
      return MP_ECLOSED;
    }
    if (count_full(r)) {
      if (!armed) {
        seen = arm(&r->get_seq, &armed);
        continue;
      }
      rc = wait_count(r, op, seen);
      armed = false;
      continue;
    }
    segment_t *s = atomic_load_explicit(&r->tail_seg, memory_order_relaxed);
    uint32_t pos, pad;
    if (ring_place(s, k, &pos, &pad)) {
      place_record(r, op, s, pos, pad, k);
      put_leave(r);
      return 0;
    }
    if (op->grow) {
      op->grow = false;
      rc = ring_grow(r, s);
      if (rc < 0)
        put_leave(r);
      continue;
    }
    if (!armed) {
      seen = arm(&r->get_seq, &armed);
      continue;
    }
    rc = wait_room(r, op, s, seen);
    armed = false;
  }
  return rc;
}

int mp__ring_put(mp__ring_t *r, const void *buf, size_t len, double timeout) {
  assert(r->magic == MP__RING_MAGIC);
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  size_t checked;
  if (!mp__size(len, 1, 0, &checked))
    return -ENOMEM; /* no block could hold it: refused before any lock */
  if (is_closed(r))
    return MP_ECLOSED;
  put_op_t op = {.buf = buf,
                 .len = len,
                 .time = {.timeout = timeout, .id = mp__object_id(r)}};
  if (len <= INLINE_MAX)
    return put_record(r, &op);
  if (count_full(r) && timeout == 0)
    return MP_EFULL; /* do not copy a large message for nothing */
  int rc = block_take(r, len, &op.time, &op.block);
  if (rc < 0)
    return rc;
  memcpy(block_data(op.block), buf, len);
  atomic_store(&op.block->len, len);
  op.ticket = atomic_load(&op.block->ticket);
  rc = put_record(r, &op);
  if (rc < 0)
    block_give_back(r, op.block, atomic_load(&op.block->state));
  return rc;
}

/* Under put_lock taken from a producer that died in it. It may have: linked
 * a new segment without making it tail_seg; published records (a pad, its
 * own) without moving tail or puts; counted a message it did not publish;
 * left its block QUEUED without publishing it. */
static void put_repair(mp__ring_t *r) {
  segment_t *s = atomic_load(&r->tail_seg);
  for (segment_t *n; (n = atomic_load(&s->next)) != NULL; s = n)
    ;
  atomic_store(&r->tail_seg, s);
  uint64_t seq = atomic_load(&r->puts); /* the message it was putting */
  block_t *pending = atomic_load(&r->put_pending);
  uint64_t ticket = atomic_load(&r->put_pending_ticket);
  bool published = false;
  uint32_t t = atomic_load(&s->tail);
  for (;;) {
    record_t *rec = record_at(s, t);
    uint32_t tag = atomic_load_explicit(&rec->tag, memory_order_acquire);
    if (!tag_is_at(tag, t))
      break;
    if ((tag & TAG_STATE) != REC_PAD)
      atomic_store(&r->puts, rec->seq + 1);
    if ((tag & TAG_STATE) == REC_OOL) {
      ool_ref_t *ref = record_payload(rec);
      published |= ref->block == pending && ref->ticket == ticket;
    }
    t += record_granules(rec, tag);
  }
  atomic_store(&s->tail, t);
  if (pending && !published)
    block_abandon(r, pending, ticket);
  atomic_store(&r->put_pending, NULL);
  if (r->kind == MP__RING_JOINABLE && atomic_load(&r->puts) == seq)
    unfinished_undo(r, seq);
}

/* ---- Taking records (consumers, under get_lock) -------------------------- */

/* Where a get delivers. */
typedef struct get_out {
  bool into; /* into the caller's buf[0..cap), else a malloc'd buf */
  size_t cap;
  void *buf;
  size_t len;
} get_out_t;

static int out_prepare(get_out_t *out, size_t len) {
  out->len = len;
  if (out->into)
    return len > out->cap ? MP_EOVERFLOW : 0;
  out->buf = malloc(len ? len : 1);
  return out->buf ? 0 : -ENOMEM;
}

/* The record at h is taken (or dropped): everything before the new head is
 * free for producers. */
static void head_move(mp__ring_t *r, segment_t *s, uint32_t head) {
  atomic_store_explicit(&s->head, head, memory_order_release);
  uint32_t n = atomic_load_explicit(&r->get_seq, memory_order_relaxed);
  atomic_store_explicit(&r->get_seq, n + 1, memory_order_release);
}

static void ring_pass(mp__ring_t *r, segment_t *s, uint32_t h, uint32_t k,
                      uint64_t seq) {
  atomic_store_explicit(&r->gets, seq + 1, memory_order_relaxed);
  head_move(r, s, h + k);
}

static int take_inline(mp__ring_t *r, segment_t *s, uint32_t h, record_t *rec,
                       get_out_t *out) {
  int rc = out_prepare(out, rec->len);
  if (rc == 0) {
    if (rec->len)
      memcpy(out->buf, record_payload(rec), rec->len);
    ring_pass(r, s, h, inline_granules(rec->len), rec->seq);
  }
  get_leave(r);
  return rc;
}

/* An OOL record: the record leaves the ring under the lock, the block is
 * read after it. 1 when the record was dropped (look at the next one). */
static int take_ool(mp__ring_t *r, segment_t *s, uint32_t h, record_t *rec,
                    get_out_t *out) {
  ool_ref_t ref = *(ool_ref_t *)record_payload(rec);
  block_t *b = ref.block;
  uint64_t word = atomic_load_explicit(&b->state, memory_order_acquire);
  if (block_state_of(word) != BLOCK_QUEUED ||
      atomic_load(&b->ticket) != ref.ticket) {
    /* Not reachable by the protocol; never deliver a block that is not
     * this record's. */
    ring_pass(r, s, h, OOL_GRANULES, rec->seq);
    return 1;
  }
  int rc = out_prepare(out, atomic_load(&b->len));
  if (rc < 0) {
    get_leave(r);
    return rc;
  }
  mp__owner_t me = self_token();
  /* get_repair needs to know the block until its state says READING. */
  atomic_store(&r->get_pending_ticket, ref.ticket);
  atomic_store(&r->get_pending, b);
  ring_pass(r, s, h, OOL_GRANULES, rec->seq);
  atomic_store(&b->state, block_word(BLOCK_READING, me));
  atomic_store(&r->get_pending, NULL);
  get_leave(r);
  memcpy(out->buf, block_data(b), out->len);
  block_give_back(r, b, block_word(BLOCK_READING, me));
  return 0;
}

/* Under get_lock taken from a consumer that died in it. Only an OOL take
 * can be half done: the block is still QUEUED but its record left the
 * ring (the message is lost with its consumer), or the record is still at
 * the head (nothing happened). */
static void get_repair(mp__ring_t *r) {
  block_t *b = atomic_load(&r->get_pending);
  if (!b)
    return;
  uint64_t ticket = atomic_load(&r->get_pending_ticket);
  segment_t *s = atomic_load(&r->head_seg);
  uint32_t h = atomic_load(&s->head);
  record_t *rec = record_at(s, h);
  uint32_t tag = atomic_load_explicit(&rec->tag, memory_order_acquire);
  bool at_head = tag_is_at(tag, h) && (tag & TAG_STATE) == REC_OOL &&
                 ((ool_ref_t *)record_payload(rec))->block == b;
  if (!at_head)
    block_abandon(r, b, ticket);
  atomic_store(&r->get_pending, NULL);
}

/* s is exhausted and a newer segment exists: consumers move on and s goes
 * back to the arena (nobody else reads it: producers write only to the
 * newest segment, consumers read under get_lock). */
static bool leave_segment(mp__ring_t *r, segment_t *s, uint32_t h) {
  segment_t *n = atomic_load_explicit(&s->next, memory_order_acquire);
  if (!n || atomic_load_explicit(&s->tail, memory_order_relaxed) != h)
    return false;
  arena_enter(r);
  atomic_store(&r->head_seg, n);
  mp__shm_free(s);
  arena_leave(r);
  return true;
}

/* A get in progress. */
typedef struct get_op {
  get_out_t out;
  op_time_t time;
  bool drained; /* closed: the put section was passed once */
} get_op_t;

/* Nothing at the head of s. Called under get_lock; returns 0 with it held
 * again, or a code without it. */
static int wait_message(mp__ring_t *r, get_op_t *op, uint32_t seen) {
  assert(mp__mutex_is_mine(&r->get_lock));
  get_leave(r);
  if (is_closed(r)) {
    /* A put that began before close may still publish: let it finish. */
    if (op->drained)
      return MP_ECLOSED;
    op->drained = true;
    int rc = section_pass(r, &r->put_lock, MP__NO_DEADLINE);
    return rc < 0 ? rc : get_enter(r);
  }
  if (op->time.timeout == 0)
    return MP_EEMPTY;
  wait_spec_t w = {&r->getters, &r->put_lock, &r->put_seq, seen, NULL, NULL};
  int rc = wait_progress(r, &w, op->time.id, op_deadline(&op->time));
  if (rc == MP_ETIMEDOUT)
    return MP_EEMPTY;
  return rc < 0 ? rc : get_enter(r);
}

/* The get loop: fills *out (its length also for MP_EOVERFLOW). */
static int ring_get(mp__ring_t *r, get_out_t *out, double timeout) {
  assert(r->magic == MP__RING_MAGIC);
  get_op_t op = {.out = *out,
                 .time = {.timeout = timeout, .id = mp__object_id(r)}};
  uint32_t seen = 0;
  bool armed = false;
  int rc = get_enter(r);
  while (rc == 0) {
    segment_t *s = atomic_load_explicit(&r->head_seg, memory_order_relaxed);
    uint32_t h = atomic_load_explicit(&s->head, memory_order_relaxed);
    record_t *rec = record_at(s, h);
    uint32_t tag = atomic_load_explicit(&rec->tag, memory_order_acquire);
    if (!tag_is_at(tag, h)) {
      if (leave_segment(r, s, h))
        continue;
      if (!armed) {
        seen = arm(&r->put_seq, &armed);
        continue;
      }
      rc = wait_message(r, &op, seen);
      armed = false;
      continue;
    }
    switch (tag & TAG_STATE) {
    case REC_PAD:
      head_move(r, s, h + rec->len);
      continue;
    case REC_READY:
      rc = take_inline(r, s, h, rec, &op.out);
      break;
    default:
      rc = take_ool(r, s, h, rec, &op.out);
      if (rc == 1) {
        rc = 0;
        continue;
      }
      break;
    }
    *out = op.out;
    return rc;
  }
  return rc;
}

int mp__ring_get(mp__ring_t *r, void **buf, size_t *len, double timeout) {
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  get_out_t out = {.into = false};
  int rc = ring_get(r, &out, timeout);
  if (rc == 0) {
    *buf = out.buf;
    *len = out.len;
  }
  return rc;
}

int mp__ring_get_into(mp__ring_t *r, void *buf, size_t cap, size_t *len,
                      double timeout) {
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  get_out_t out = {.into = true, .cap = cap, .buf = buf};
  int rc = ring_get(r, &out, timeout);
  if (rc == 0 || rc == MP_EOVERFLOW)
    *len = out.len;
  return rc;
}

/* ---- The rest of the API ------------------------------------------------- */

mp__ring_t *mp__ring_new(uint64_t maxsize, enum mp__ring_kind kind) {
  mp__check_bootstrapped();
  /* mp__sync_alloc: the owner table of its robust locks exists before any
   * child starts. */
  mp__ring_t *r = mp__sync_alloc(sizeof *r);
  segment_t *s = r ? segment_new(FIRST_SEGMENT) : NULL;
  if (!s) {
    mp__shm_free(r);
    return NULL;
  }
  r->kind = kind;
  r->maxsize = maxsize;
  mp__mutex_init(&r->put_lock, MP__LOCK_MAGIC);
  mp__mutex_init(&r->get_lock, MP__LOCK_MAGIC);
  mp__mutex_init(&r->join_lock, MP__LOCK_MAGIC);
  mp__mutex_init(&r->block_lock, MP__LOCK_MAGIC);
  atomic_init(&r->tail_seg, s);
  atomic_init(&r->head_seg, s);
  atomic_init(&r->unfinished, UNFINISHED_MARK_MASK); /* no seq counted */
  r->budget = FIRST_BUDGET;
  return mp__object_publish(r, MP__RING_MAGIC);
}

/* Only meaningful once every other user is gone (testing.h). A queue's
 * handle is its ring. */
bool mp__ring_arena_interrupted(const void *q) {
  return atomic_load(&((mp__ring_t *)mp__object_address(q))->arena_ops) != 0;
}

enum mp__ring_kind mp__ring_kind(const mp__ring_t *r) {
  return (enum mp__ring_kind)r->kind;
}

size_t mp__ring_qsize(const mp__ring_t *r) {
  mp__ring_t *w = (mp__ring_t *)r;
  uint64_t gets = atomic_load(&w->gets);
  uint64_t puts = atomic_load(&w->puts);
  return puts > gets ? (size_t)(puts - gets) : 0;
}

bool mp__ring_full(const mp__ring_t *r) {
  return r->maxsize && mp__ring_qsize(r) >= r->maxsize;
}

int mp__ring_close(mp__ring_t *r) {
  assert(r->magic == MP__RING_MAGIC);
  atomic_store(&r->closed, 1);
  waitlist_wake_all(&r->getters);
  waitlist_wake_all(&r->putters);
  return 0;
}

static uint64_t unfinished_count(mp__ring_t *r) {
  return atomic_load(&r->unfinished) >> UNFINISHED_MARK_BITS;
}

int mp__ring_task_done(mp__ring_t *r) {
  int rc = section_lock(r, &r->join_lock, MP__NO_DEADLINE);
  if (rc < 0)
    return rc;
  uint64_t w = atomic_load(&r->unfinished);
  if ((w >> UNFINISHED_MARK_BITS) == 0) {
    rc = MP_EOVERFLOW;
  } else {
    /* Decrements are all under join_lock, so this one ends the wait of
     * the joiners exactly when the count is 1 here. */
    if ((w >> UNFINISHED_MARK_BITS) == 1)
      waitlist_wake(&r->joiners);
    while (!atomic_compare_exchange_weak(&r->unfinished, &w,
                                         w - (1ull << UNFINISHED_MARK_BITS)))
      ;
  }
  mp__mutex_release(&r->join_lock);
  return rc;
}

static bool nothing_unfinished(const void *arg) {
  return unfinished_count((mp__ring_t *)arg) == 0;
}

int mp__ring_join(mp__ring_t *r, double timeout) {
  int rc_timeout = mp__timeout_check(timeout);
  if (rc_timeout < 0)
    return rc_timeout;
  op_time_t t = {.timeout = timeout, .id = mp__object_id(r)};
  for (;;) {
    if (unfinished_count(r) == 0)
      return 0;
    /* A producer that died holding put_lock may have counted a message it
     * never published: passing the lock repairs that. */
    if (lock_is_held(&r->put_lock)) {
      int rc = section_pass(r, &r->put_lock, op_deadline(&t));
      if (rc < 0)
        return rc;
      continue;
    }
    if (timeout == 0)
      return MP_ETIMEDOUT;
    wait_spec_t w = {&r->joiners, &r->join_lock,      NULL,
                     0,           nothing_unfinished, r};
    int rc = wait_progress(r, &w, t.id, op_deadline(&t));
    if (rc < 0)
      return rc;
  }
}

void mp__ring_free(mp__ring_t *r) {
  if (!r)
    return;
  assert(r->magic == MP__FREED(MP__RING_MAGIC)); /* queue.c retired it */
  /* Whoever still sleeps on it wakes up and finds it freed (MP_EINVAL)
   * instead of sleeping for ever. */
  waitlist_wake_all(&r->getters);
  waitlist_wake_all(&r->putters);
  waitlist_wake_all(&r->joiners);
  segment_t *s = atomic_load(&r->head_seg);
  while (s) {
    segment_t *n = atomic_load(&s->next);
    mp__shm_free(s);
    s = n;
  }
  for (block_t *b = r->blocks, *n; b; b = n) {
    n = b->next;
    mp__shm_free(b);
  }
  mp__shm_free(r);
}
