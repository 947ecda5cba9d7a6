/* Owner identity for the robust primitives (see futex.h).
 *
 * The owner table is an array of slots in shared memory, found through the
 * arena root MP__ROOT_OWNERS. A thread takes a slot the first time it needs
 * a token. The slot's first word is a robust futex word holding the
 * thread's TID, and the slot is linked into the thread's kernel robust list
 * (the list glibc registers for every thread with set_robust_list). When the
 * thread ends -- killed, exited, or exec'd -- the kernel walks that list,
 * finds the word holding the dying TID, replaces it with FUTEX_OWNER_DIED
 * (keeping FUTEX_WAITERS) and wakes one waiter of the word. So:
 *   - "is the owner alive" is one load of the slot word;
 *   - a waiter that must also notice the owner's death sets FUTEX_WAITERS
 *     in the slot word and sleeps on it as well (futex_waitv);
 *   - the kernel wakes only one waiter, so whoever sees a dead slot with
 *     FUTEX_WAITERS wakes all the others. A waiter killed right after the
 *     kernel woke it would break that chain: while sleeping, each waiter
 *     points its own robust list's list_op_pending at the slot, and at its
 *     death the kernel wakes one more waiter of a word whose TID bits are 0
 *     (Linux >= 6.0, "resend potentially swallowed owner death
 *     notification").
 *
 * Linking into glibc's list. glibc's robust mutexes are linked through
 * their __list.__next field, the list head is preceded by a robust_prev
 * field, entries are {prev, next} pairs whose pointers point at the next
 * field, and glibc unlinks a mutex by writing its neighbours' prev and next.
 * A slot therefore has the same shape: word at offset 0, prev at 24, next at
 * 32, so that futex_offset = -32, the value glibc registers (checked at run
 * time: with another C library the thread runs without death detection, or
 * with a head of our own when the library registered none).
 *
 * Slot reuse. A slot whose word has FUTEX_OWNER_DIED may be taken by a new
 * thread. Its sequence number `seq` is odd while it is being taken and goes
 * up by two each time, and a token carries seq / 2, so a token of the dead
 * owner never matches the new one. Readers use seq like a seqlock (read seq,
 * read word, re-read seq).
 *
 * Known limits: after 2^21 reuses of one slot a stale token could match
 * again (slots are handed out fresh first and reused round-robin, so this
 * needs about 2^31 thread lifetimes while a dead owner's lock stays
 * untouched); a thread killed in the few instructions that take a slot
 * leaks that slot; processes in different PID namespaces must not share
 * objects (TIDs are compared as the kernel sees them). */
#include <pthread.h>
#include <stddef.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/owner.h"

#define OWNER_MAGIC 0x4f574e52u /* "OWNR" */
#define SLOT_BITS   10
#define SLOT_COUNT  (1u << SLOT_BITS)
#define GEN_MASK    (MP__OWNER_MASK >> SLOT_BITS)

/* Marks the robust list entry of a slot for the kernel: the futex word is
 * at entry + futex_offset. */
#define SLOT_FUTEX_OFFSET                                                      \
  ((long)offsetof(struct owner_slot, word) -                                   \
   (long)offsetof(struct owner_slot, next))

/* One slot: 64 bytes, one cache line. */
struct owner_slot {
  /* Robust futex word: owner TID | FUTEX_WAITERS | FUTEX_OWNER_DIED; 0 for
   * a slot never used. Written by the owner when taking the slot, by the
   * kernel at its death, and by waiters (FUTEX_WAITERS). */
  _Atomic uint32_t word;
  /* 2 * generation, odd while the slot is being taken. */
  _Atomic uint32_t seq;
  /* The owner's ids, for mp_rlock_owner(); written while seq is odd. */
  _Atomic int32_t pid;
  _Atomic int32_t tid;
  uint64_t reserved;
  /* Robust list links, in the owner's address space: only the owner
   * thread, its C library and the kernel read or write them. */
  void *prev;
  void *next;
  char pad[24];
};

_Static_assert(sizeof(struct owner_slot) == 64, "one cache line per slot");
_Static_assert(offsetof(struct owner_slot, prev) + sizeof(void *) ==
                   offsetof(struct owner_slot, next),
               "robust list entries are {prev, next} pairs");

struct owner_table {
  uint32_t magic;
  _Atomic uint32_t fresh;  /* slots handed out for the first time so far */
  _Atomic uint32_t cursor; /* where the next search for a dead slot starts */
  char pad[52];
  struct owner_slot slots[SLOT_COUNT];
};

/* The calling thread's identity. Cleared in a forked child, whose only
 * thread is a new thread that must take its own slot. */
_Thread_local MP__TLS_MODEL mp__owner_t mp__self_token;

/* The calling thread's robust list head, if it reports our slot: its
 * list_op_pending is used while sleeping. NULL: no death reports. */
static _Thread_local MP__TLS_MODEL struct robust_list_head *self_head;

/* This process's view of the table (the same address in every process). */
static _Atomic(struct owner_table *) table;

/* ---- the table ----------------------------------------------------------- */

static int owner_table_init(void) {
  if (atomic_load_explicit(&table, memory_order_acquire))
    return 0;
  _Atomic(void *) *root = mp__shm_root(MP__ROOT_OWNERS);
  if (!root)
    return -ENOMEM;
  void *found = atomic_load(root);
  if (!found) {
    struct owner_table *fresh = mp__shm_alloc(sizeof *fresh);
    if (!fresh)
      return -errno;
    fresh->magic = OWNER_MAGIC;
    /* The first process to publish its table wins; the others use it. */
    if (atomic_compare_exchange_strong(root, &found, fresh))
      found = fresh;
    else
      mp__shm_free(fresh);
  }
  atomic_store_explicit(&table, found, memory_order_release);
  return 0;
}

void *mp__sync_alloc(size_t size) {
  int rc = owner_table_init();
  if (rc < 0) {
    errno = -rc;
    return NULL;
  }
  return mp__shm_alloc(size);
}

/* The table, once owner_table_init() succeeded in this process (always
 * the case where a token exists). */
static struct owner_table *the_table(void) {
  return atomic_load_explicit(&table, memory_order_acquire);
}

static struct owner_slot *slot_of(mp__owner_t token) {
  return &the_table()->slots[token & (SLOT_COUNT - 1)];
}

static uint32_t token_gen(mp__owner_t token) {
  return token >> SLOT_BITS;
}

/* ---- the robust list ----------------------------------------------------- */

/* A head of our own, for a C library that registers none. The word before
 * the head stands for the prev field of the list's first "entry". */
static _Thread_local struct {
  void *prev;
  struct robust_list_head head;
} own_head;

/* The list head registered for the calling thread (NULL: none). -errno
 * when the system will not say (then we must not register our own: it
 * would replace the C library's). */
static int registered_head(struct robust_list_head **head) {
  size_t len = 0;
  *head = NULL;
  if (syscall(SYS_get_robust_list, 0, head, &len) < 0)
    return -errno;
  return 0;
}

/* Some C libraries register the list lazily, at the first robust mutex:
 * lock one so that ours does not replace theirs later. */
static void make_libc_register_list(void) {
  pthread_mutexattr_t attr;
  pthread_mutex_t m;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  if (pthread_mutex_init(&m, &attr) == 0) {
    pthread_mutex_lock(&m);
    pthread_mutex_unlock(&m);
    pthread_mutex_destroy(&m);
  }
  pthread_mutexattr_destroy(&attr);
}

static struct robust_list_head *register_own_head(void) {
  own_head.head.list.next = &own_head.head.list;
  own_head.head.futex_offset = SLOT_FUTEX_OFFSET;
  own_head.head.list_op_pending = NULL;
  own_head.prev = &own_head.head.list;
  if (syscall(SYS_set_robust_list, &own_head.head, sizeof own_head.head))
    return NULL;
  return &own_head.head;
}

/* The calling thread's list head if our slots fit it, else NULL: the
 * thread then runs without death detection of its own. */
static struct robust_list_head *find_usable_head(void) {
  struct robust_list_head *head;
  if (registered_head(&head) < 0)
    return NULL;
  if (!head) {
    make_libc_register_list();
    if (registered_head(&head) < 0)
      return NULL;
  }
  if (!head)
    head = register_own_head();
  return head && head->futex_offset == SLOT_FUTEX_OFFSET ? head : NULL;
}

/* Inserts the slot first in the thread's list, exactly as glibc inserts a
 * mutex, so that glibc can later unlink its own neighbours of it. */
static void link_slot(struct robust_list_head *head, struct owner_slot *s) {
  void **first_link = (void **)&head->list.next;
  void *first = *first_link;
  /* first is the next field of the first entry (or the head itself, whose
   * prev field is glibc's robust_prev / own_head.prev); bit 0 marks PI. */
  void **first_prev =
      (void **)(((uintptr_t)first & ~(uintptr_t)1) - sizeof(void *));
  s->next = first;
  s->prev = first_link;
  *first_prev = &s->next;
  /* The kernel may walk the list at any instant (our death): the entry is
   * complete before the head points at it. */
  atomic_signal_fence(memory_order_seq_cst);
  *first_link = &s->next;
}

/* ---- taking a slot ------------------------------------------------------- */

static void forget_self_in_child(void) {
  mp__self_token = MP__OWNER_NONE;
  self_head = NULL;
}

static mp__atfork_t owner_atfork = {.child = forget_self_in_child};

/* Reserves a slot: one never used, else one whose owner died. Returns it
 * with seq odd (ours to fill), or NULL when every slot is in use. */
static struct owner_slot *reserve_slot(struct owner_table *t,
                                       uint32_t *old_word) {
  /* Load first, so that the counter stops growing once the table is
   * full. */
  uint32_t i = atomic_load(&t->fresh) < SLOT_COUNT
                   ? atomic_fetch_add(&t->fresh, 1)
                   : SLOT_COUNT;
  if (i < SLOT_COUNT) {
    struct owner_slot *s = &t->slots[i];
    atomic_store(&s->seq, 1);
    *old_word = 0;
    return s;
  }
  uint32_t start = atomic_fetch_add(&t->cursor, 1);
  for (uint32_t k = 0; k < SLOT_COUNT; k++) {
    struct owner_slot *s = &t->slots[(start + k) & (SLOT_COUNT - 1)];
    uint32_t word = atomic_load(&s->word);
    uint32_t seq = atomic_load(&s->seq);
    if (!(word & FUTEX_OWNER_DIED) || (seq & 1))
      continue;
    /* Dead words change only through whoever holds seq odd. */
    if (atomic_compare_exchange_strong(&s->seq, &seq, seq + 1)) {
      *old_word = atomic_load(&s->word);
      return s;
    }
  }
  return NULL;
}

/* The next even seq whose generation is not 0 (token 0 means no owner). */
static uint32_t next_seq(uint32_t odd) {
  uint32_t seq = odd + 1;
  if (((seq >> 1) & GEN_MASK) == 0)
    seq += 2;
  return seq;
}

static int take_slot(void) {
  int rc = owner_table_init();
  if (rc < 0)
    return rc;
  mp__atfork_register(&owner_atfork);
  struct robust_list_head *head = find_usable_head();
  uint32_t old_word;
  struct owner_table *t = the_table();
  struct owner_slot *s = reserve_slot(t, &old_word);
  if (!s)
    return -EAGAIN;
  pid_t tid = (pid_t)syscall(SYS_gettid);
  /* From the moment the word holds our TID until the slot is linked, the
   * pending pointer covers it: the kernel marks it dead if we die here. */
  if (head)
    head->list_op_pending = (struct robust_list *)&s->next;
  atomic_store(&s->word, (uint32_t)tid);
  atomic_store(&s->pid, (int32_t)getpid());
  atomic_store(&s->tid, (int32_t)tid);
  if (head)
    link_slot(head, s);
  atomic_signal_fence(memory_order_seq_cst);
  if (head)
    head->list_op_pending = NULL;
  uint32_t seq = next_seq(atomic_load(&s->seq));
  atomic_store(&s->seq, seq);
  /* Waiters of the dead previous owner that nobody woke yet. */
  if (old_word & FUTEX_WAITERS)
    mp__futex_wake(&s->word, INT_MAX);
  self_head = head;
  mp__self_token =
      (((seq >> 1) & GEN_MASK) << SLOT_BITS) | (uint32_t)(s - t->slots);
  return 0;
}

int mp__owner_take(mp__owner_t *token) {
  if (mp__self_token == MP__OWNER_NONE) {
    int rc = take_slot();
    if (rc < 0)
      return rc;
  }
  *token = mp__self_token;
  return 0;
}

/* ---- liveness ------------------------------------------------------------ */

/* The slot word of token's owner while it is alive (seq matching the
 * token's generation and no FUTEX_OWNER_DIED), else 0. */
static uint32_t live_word(mp__owner_t token, uint32_t *seq_out) {
  struct owner_slot *s = slot_of(token);
  uint32_t seq = atomic_load(&s->seq);
  if ((seq & 1) || ((seq >> 1) & GEN_MASK) != token_gen(token))
    return 0;
  uint32_t word = atomic_load(&s->word);
  if (word & FUTEX_OWNER_DIED)
    return 0;
  *seq_out = seq;
  return word;
}

/* The owner died: wake everyone who sleeps on its slot (the kernel woke
 * only one) and clear FUTEX_WAITERS so the next one need not. */
static void pass_on_death(mp__owner_t token) {
  struct owner_slot *s = slot_of(token);
  uint32_t word = atomic_load(&s->word);
  if ((word & (FUTEX_OWNER_DIED | FUTEX_WAITERS)) !=
      (FUTEX_OWNER_DIED | FUTEX_WAITERS))
    return;
  mp__futex_wake(&s->word, INT_MAX);
  atomic_compare_exchange_strong(&s->word, &word, word & ~FUTEX_WAITERS);
}

bool mp__owner_dead(mp__owner_t token) {
  uint32_t seq;
  if (live_word(token, &seq))
    return false;
  pass_on_death(token);
  return true;
}

bool mp__owner_ids(mp__owner_t token, pid_t *pid, pid_t *tid) {
  /* May be asked by a process that never took a slot of its own. */
  if (owner_table_init() < 0)
    return false;
  struct owner_slot *s = slot_of(token);
  uint32_t seq;
  if (!live_word(token, &seq))
    return false;
  pid_t p = atomic_load(&s->pid), t = atomic_load(&s->tid);
  if (atomic_load(&s->seq) != seq)
    return false;
  if (pid)
    *pid = p;
  if (tid)
    *tid = t;
  return true;
}

/* Sets FUTEX_WAITERS in the live owner's word, so that the kernel wakes a
 * waiter at its death. Returns the word to sleep on (with the bit), or 0 if
 * the owner is dead. */
static uint32_t announce_waiter(mp__owner_t token) {
  struct owner_slot *s = slot_of(token);
  for (;;) {
    uint32_t seq;
    uint32_t word = live_word(token, &seq);
    if (!word)
      return 0;
    /* A failed CAS means the word changed (the owner died, or another
     * waiter set the bit): look again. */
    if (!(word & FUTEX_WAITERS) &&
        !atomic_compare_exchange_strong(&s->word, &word, word | FUTEX_WAITERS))
      continue;
    /* The seqlock re-check: the bit went to the word of token's
     * generation, not to a new owner who took the slot meanwhile. */
    if (atomic_load(&s->seq) != seq)
      return 0;
    return word | FUTEX_WAITERS;
  }
}

int mp__owner_wait(mp__owner_t token, const mp__futex_watch_t *watch,
                   unsigned n, const mp__deadline_t *deadline) {
  if (token == MP__OWNER_NONE)
    return mp__futex_waitv(watch, n, deadline);
  uint32_t word = announce_waiter(token);
  if (!word) {
    pass_on_death(token);
    return MP_EOWNERDEAD;
  }
  mp__futex_watch_t all[MP__FUTEX_WATCH_MAX];
  for (unsigned i = 0; i < n; i++)
    all[i] = watch[i];
  struct owner_slot *s = slot_of(token);
  all[n] = (mp__futex_watch_t){&s->word, word};
  /* Should we die after the kernel woke us for the owner's death, it wakes
   * the next waiter in our place (see the top of the file). */
  struct robust_list_head *head = self_head;
  struct robust_list *saved = head ? head->list_op_pending : NULL;
  if (head)
    head->list_op_pending = (struct robust_list *)&s->next;
  int rc = mp__futex_waitv(all, n + 1, deadline);
  if (head)
    head->list_op_pending = saved;
  if (mp__owner_dead(token))
    return MP_EOWNERDEAD;
  return rc;
}
