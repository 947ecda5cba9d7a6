/* The arena: shared memory at the same address in every process.
 *
 * One memfd, sized to the arena's limit (sparse: nothing is used until it
 * is committed), is mapped MAP_SHARED over one address range in every
 * process of the family. Forked children inherit the mapping; spawned and
 * forkserver children get the memfd and map it at the same address first
 * thing. Since the whole range maps the whole file, memory that any process
 * allocates later is at once visible to all, and a pointer is a pointer
 * everywhere. The memfd has no name in /dev/shm, so nothing can be left
 * behind, even when every process of the family is killed.
 *
 * Memory is committed with fallocate() before it is handed out, so running
 * out of memory is an error code at allocation time and never a SIGBUS at
 * first touch; large blocks are returned to the system with a hole punch
 * when freed.
 *
 * The allocator's state is in the arena's header, guarded by `lock`:
 *   - small blocks (up to 4 KiB with their header) come from power-of-two
 *     size classes, each with a free list;
 *   - large blocks are runs of pages: free runs form a list sorted by
 *     offset, coalesced with their neighbours when freed;
 *   - everything else is above `top`, the bump pointer.
 * Every block starts with a 64-byte header, so user memory is 64-byte
 * aligned.
 *
 * Crash consistency: a process may be killed at any instruction while it
 * holds the lock. Every change of the allocator's state under the lock
 * (a word of the header, or of a block header, free or fresh) is first
 * recorded in the intent journal in the arena's header: the word's
 * offset and its old value. The journal is emptied just before the lock
 * is let go. Whoever takes the lock over from a dead holder finds the
 * journal non-empty and undoes it, newest first, so the allocator is
 * exactly as before the dead holder's call: nothing is lost, and in_use
 * is exact. Only a holder killed after its journal was emptied (its call
 * done, the lock not yet let go) leaves a block behind: the block it was
 * about to receive, which is counted in use, as memory a crashed process
 * malloc'd. The free of a killed freer is undone the same way: its block
 * stays in use. */
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat.h"
#include "testing.h"
#include "core/futex.h"
#include "core/internal.h"

#define ARENA_MAGIC        0x6d70726f63617265ull /* "mprocare" */
#define BLOCK_USED         0x55534544u           /* "USED" */
#define BLOCK_FREE         0x46524545u           /* "FREE" */
#define PAGE               4096u
#define HEADER             64u
#define SMALL_CLASSES      6  /* 128, 256, ..., 4096 bytes with the header */
#define QUARANTINE         16 /* free small blocks kept out of reuse */
#define COMMIT_STEP        (2u << 20)
#define DEFAULT_ARENA_SIZE (32ull << 30)

typedef struct block {
  uint32_t magic;      /* BLOCK_USED or BLOCK_FREE */
  uint32_t size_class; /* SMALL_CLASSES for a run of pages */
  uint64_t size;       /* bytes, header included */
  uint64_t next;       /* free: offset of the next free block, 0 = none */
  char pad[HEADER - 24];
} block_t;

/* The intent journal: enough entries for the largest call (carving a page
 * into 32 blocks of 128 bytes writes 3 words of each). */
#define JOURNAL_MAX 128

typedef struct journal_entry {
  uint64_t offset; /* of the 8-byte word changed, from the arena's base */
  uint64_t old;    /* its value before */
} journal_entry_t;

typedef struct arena_header {
  uint64_t magic;
  uint64_t size;
  /* Lock word: the holder's tid, 0 when free. */
  _Atomic uint32_t lock;
  /* Entries of the journal that are valid; 0 outside a call. */
  _Atomic uint32_t journal_count;
  _Atomic(void *) roots[MP__ROOT_COUNT];
  /* The last generation given to an object (mp__arena_generation). */
  _Atomic uint32_t generation;
  /* Guarded by lock: */
  uint64_t top;       /* offset of the first byte never handed out */
  uint64_t committed; /* fallocated bytes from the start of the bump area */
  /* Free small blocks, first in first out, and never fewer than
   * QUARANTINE of them (a page is carved instead): a freed block is handed
   * out again only after every block freed before it and QUARANTINE
   * blocks freed after it, so that a handle used after its object was
   * freed meets the freed mark for a while, and a process woken from a
   * wait on a freed object finds that mark rather than a new object
   * (handles carry a generation besides: see mp__object_open). */
  uint64_t free_small[SMALL_CLASSES];
  uint64_t free_small_tail[SMALL_CLASSES]; /* 0 when the list is empty */
  uint64_t free_small_count[SMALL_CLASSES];
  uint64_t free_large; /* sorted by offset */
  uint64_t in_use;     /* bytes handed out, headers included */
  journal_entry_t journal[JOURNAL_MAX];
} arena_header_t;

_Static_assert(sizeof(block_t) == HEADER, "a block header is 64 bytes");

/* The first 8 bytes of a block header (magic and size class), which the
 * journal saves as one word. */
static uint64_t *block_word(block_t *b) {
  return (uint64_t *)b;
}

static uint64_t block_word_of(uint32_t magic, uint32_t size_class) {
  block_t b = {.magic = magic, .size_class = size_class};
  uint64_t word;
  memcpy(&word, &b, sizeof word);
  return word;
}

static struct {
  pthread_mutex_t lock; /* guards creation in this process */
  char *base;
  uint64_t size;
  int fd;
} arena = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, -1};

/* Addresses tried, in order, for the arena. They are far from where the
 * kernel puts the heap, libraries and stacks, so that a freshly exec'd
 * child finds the same range free. ThreadSanitizer owns most of the address
 * space (and dies on a mapping attempt there), so its build uses a range
 * inside the application memory it allows. */
/* MP__TSAN comes from futex.h. */
#ifdef MP__TSAN
static const uintptr_t address_hints[] = {0x7e8000000000ull};
#else
static const uintptr_t address_hints[] = {0x200000000000ull};
#endif

/* When no hint fits (a smaller address space: aarch64 kernels with 39-bit
 * or 42-bit user addresses, where 2^45 is out of range): a quarter of the
 * way up the address space, found from where the stack is (at its top).
 * The kernel puts libraries and the stack near the top and a PIE program at
 * two thirds (aarch64) or higher, so a spawned child of the same kernel finds
 * this range free too; on 47-bit x86-64 it is the hint above. */
static uintptr_t address_space_quarter(void) {
  uintptr_t top = (uintptr_t)__builtin_frame_address(0);
  int bits = 64 - __builtin_clzll((unsigned long long)top);
  return bits > 34 ? (uintptr_t)1 << (bits - 2) : 0;
}

static uint64_t arena_limit(void) {
  const char *env = getenv("MPROC_ARENA_SIZE");
  if (env && *env) {
    char *end;
    unsigned long long v = strtoull(env, &end, 0);
    if (*end == 'G' || *end == 'g')
      v <<= 30;
    else if (*end == 'M' || *end == 'm')
      v <<= 20;
    if (v >= (16u << 20))
      return (v + COMMIT_STEP - 1) & ~(uint64_t)(COMMIT_STEP - 1);
  }
  return DEFAULT_ARENA_SIZE;
}

mp__arena_span_t mp__arena_span;

/* Publishes where the arena lies (internal.h): handles carry a generation
 * only when every arena address is below 2^48. */
static void set_span(void *base, uint64_t size) {
  uintptr_t b = (uintptr_t)base;
  mp__arena_span.base = b;
  mp__arena_span.size = size;
  mp__arena_span.words = size / 8;
  mp__arena_span.address_mask =
      b + size <= MP__HANDLE_ADDRESS + 1 ? MP__HANDLE_ADDRESS : UINTPTR_MAX;
}

static arena_header_t *header(void) {
  return (arena_header_t *)arena.base;
}

/* ---- mapping --------------------------------------------------------------
 */

static void *map_at(void *address, uint64_t size, int fd, bool fixed) {
  int flags = MAP_SHARED | MAP_NORESERVE | (fixed ? MAP_FIXED_NOREPLACE : 0);
  void *p = mmap(address, size, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED)
    return NULL;
  if (fixed && p != address) {
    /* A kernel without MAP_FIXED_NOREPLACE treats it as a hint. */
    munmap(p, size);
    errno = EEXIST;
    return NULL;
  }
  /* A core dump of a sparse 32 GiB mapping helps nobody. */
  madvise(p, size, MADV_DONTDUMP);
  return p;
}

static int create_locked(void) {
  uint64_t size = arena_limit();
  int fd = mp__fd_high(memfd_create("mproc-arena", MFD_CLOEXEC));
  if (fd < 0)
    return -errno;
  if (ftruncate(fd, (off_t)size) < 0 || fallocate(fd, 0, 0, COMMIT_STEP) < 0) {
    int err = errno;
    close(fd);
    return -err;
  }
  void *base = NULL;
  for (size_t i = 0; !base && i < sizeof address_hints / sizeof *address_hints;
       i++)
    base = map_at((void *)address_hints[i], size, fd, true);
  if (!base && address_space_quarter())
    base = map_at((void *)address_space_quarter(), size, fd, true);
  if (!base)
    base = map_at(NULL, size, fd, false);
  if (!base) {
    int err = errno;
    close(fd);
    return -err;
  }
  arena_header_t *h = base;
  h->magic = ARENA_MAGIC;
  h->size = size;
  h->top = (sizeof *h + PAGE - 1) & ~(uint64_t)(PAGE - 1);
  h->committed = COMMIT_STEP;
  set_span(base, size);
  arena.base = base;
  arena.size = size;
  arena.fd = fd;
  return 0;
}

int mp__arena_ensure(void) {
  if (__atomic_load_n(&arena.base, __ATOMIC_ACQUIRE))
    return 0;
  pthread_mutex_lock(&arena.lock);
  int rc = arena.base ? 0 : create_locked();
  pthread_mutex_unlock(&arena.lock);
  return rc;
}

int mp__arena_info(int *fd, uintptr_t *address, uint64_t *size) {
  int rc = mp__arena_ensure();
  if (rc < 0)
    return rc;
  *fd = arena.fd;
  *address = (uintptr_t)arena.base;
  *size = arena.size;
  return 0;
}

int mp__arena_attach(int fd, uintptr_t address, uint64_t size) {
  if (arena.base)
    return arena.base == (char *)address ? 0 : MP_ESTATE;
  void *base = map_at((void *)address, size, fd, true);
  if (!base)
    return -errno;
  /* The magic is read from the file, not through the mapping: a spawned
   * child that never uses the arena then never faults in a page of it
   * (with its page tables, freed again at exit). */
  uint64_t magic = 0;
  if (pread(fd, &magic, sizeof magic, offsetof(arena_header_t, magic)) !=
          (ssize_t)sizeof magic ||
      magic != ARENA_MAGIC) {
    munmap(base, size);
    return MP_EINVAL;
  }
  set_span(base, size);
  arena.base = base;
  arena.size = size;
  arena.fd = fd;
  return 0;
}

/* ---- the allocator lock ---------------------------------------------------
 * Held for a few hundred instructions at most (plus a fallocate). A holder
 * that does not let go within a while is checked for life: if its thread is
 * gone (killed while allocating), the lock is taken over. */

/* Whether the thread tid has ended. A killed thread stays a zombie until
 * its process is reaped, and kill(tid, 0) still succeeds on a zombie: the
 * state in /proc tells. (The owner tokens of the futex core cannot serve
 * here: their table is allocated from this arena.) */
static bool thread_gone(pid_t tid) {
  if (kill(tid, 0) < 0)
    return errno == ESRCH;
  char path[64], buf[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
  int fd = mp__fd_high(open(path, O_RDONLY | O_CLOEXEC));
  if (fd < 0)
    return errno == ENOENT;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  buf[n > 0 ? n : 0] = 0;
  /* "tid (comm) S ...": the state follows the last ')'. */
  char *end = strrchr(buf, ')');
  return end && (end[2] == 'Z' || end[2] == 'X');
}

/* ---- the intent journal -----------------------------------------------------
 * With the lock held. A kill is a signal that interrupts the holder at an
 * instruction boundary, and every store it executed before reaches memory:
 * what must hold is the order of the stores in the program, which a
 * signal fence keeps the compiler from changing. */

void (*mp__arena_fault_hook)(unsigned step);

/* Records the 8-byte word at word (in the arena) before it is changed. */
static void journal_save(arena_header_t *h, void *word) {
  uint32_t n = atomic_load_explicit(&h->journal_count, memory_order_relaxed);
  if (mp__arena_fault_hook)
    mp__arena_fault_hook(n);
  if (n == JOURNAL_MAX) {
    fprintf(stderr, "mproc: the arena's intent journal is full\n");
    abort(); /* a bug of the allocator, never of the caller */
  }
  h->journal[n].offset = (uint64_t)((char *)word - arena.base);
  h->journal[n].old = *(uint64_t *)word;
  atomic_signal_fence(memory_order_seq_cst);
  atomic_store_explicit(&h->journal_count, n + 1, memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst); /* the change comes after */
}

/* Saves the word, then stores value in it. */
static void journal_set(arena_header_t *h, uint64_t *word, uint64_t value) {
  journal_save(h, word);
  *word = value;
}

/* Saves the three words of a block header. */
static void save_header(arena_header_t *h, block_t *b) {
  journal_save(h, block_word(b));
  journal_save(h, &b->size);
  journal_save(h, &b->next);
}

/* The call is done: its changes stay. */
static void journal_commit(arena_header_t *h) {
  if (mp__arena_fault_hook)
    mp__arena_fault_hook(JOURNAL_MAX);
  atomic_signal_fence(memory_order_seq_cst);
  atomic_store_explicit(&h->journal_count, 0, memory_order_relaxed);
}

/* A dead holder's call is undone, newest change first. Killed in here, the
 * next taker goes on where this one stopped (restoring a word twice is
 * harmless). */
static void journal_undo(arena_header_t *h) {
  uint32_t n = atomic_load_explicit(&h->journal_count, memory_order_relaxed);
  if (n > JOURNAL_MAX)
    n = JOURNAL_MAX;
  while (n > 0) {
    n--;
    *(uint64_t *)(arena.base + h->journal[n].offset) = h->journal[n].old;
    atomic_signal_fence(memory_order_seq_cst);
    atomic_store_explicit(&h->journal_count, n, memory_order_relaxed);
  }
}

static void arena_lock(arena_header_t *h) {
  uint32_t self = (uint32_t)syscall(SYS_gettid); /* glibc < 2.30 */
  for (;;) {
    uint32_t holder = 0;
    if (atomic_compare_exchange_strong(&h->lock, &holder, self))
      break;
    mp__deadline_t d = mp__deadline_in(0.05);
    d.interruptible = false; /* the library's own wait */
    /* The lock goes straight from the dead holder to us, so that nobody
     * else can run on the state before the journal is undone. */
    if (mp__futex_wait(&h->lock, holder, &d) == MP_ETIMEDOUT &&
        thread_gone((pid_t)holder) &&
        atomic_compare_exchange_strong(&h->lock, &holder, self)) {
      mp__debug_log(MP_DEBUG_INFO,
                    "took over the arena allocator's lock from dead thread "
                    "%u (%u changes undone)",
                    holder, (unsigned)atomic_load(&h->journal_count));
      break;
    }
  }
  if (atomic_load_explicit(&h->journal_count, memory_order_relaxed))
    journal_undo(h);
}

static void arena_unlock(arena_header_t *h) {
  journal_commit(h);
  atomic_store(&h->lock, 0);
  mp__futex_wake(&h->lock, 1);
}

/* ---- blocks
 * ------------------------------------------------------------------ */

static block_t *block_at(uint64_t offset) {
  return (block_t *)(arena.base + offset);
}

static uint64_t offset_of(const block_t *b) {
  return (uint64_t)((const char *)b - arena.base);
}

static int commit(uint64_t offset, uint64_t len) {
  if (fallocate(arena.fd, 0, (off_t)offset, (off_t)len) < 0)
    return -errno;
  return 0;
}

/* Takes len bytes (a multiple of PAGE) from the bump area. */
static block_t *bump(arena_header_t *h, uint64_t len) {
  if (h->top + len > h->size) {
    errno = ENOMEM;
    return NULL;
  }
  uint64_t end = h->top + len;
  if (end > h->committed) {
    uint64_t want = (end + COMMIT_STEP - 1) & ~(uint64_t)(COMMIT_STEP - 1);
    if (want > h->size)
      want = h->size;
    int rc = commit(h->committed, want - h->committed);
    if (rc < 0) {
      errno = -rc;
      return NULL;
    }
    journal_set(h, &h->committed, want);
  }
  block_t *b = block_at(h->top);
  journal_set(h, &h->top, end);
  return b;
}

static int small_class(uint64_t total) {
  for (int c = 0; c < SMALL_CLASSES; c++)
    if (total <= (128u << c))
      return c;
  return -1;
}

static block_t *alloc_small(arena_header_t *h, int c) {
  uint64_t size = 128u << c;
  if (h->free_small_count[c] <= QUARANTINE) {
    /* Carve a page worth of blocks (one block for 4 KiB), at the head of
     * the list: they were never used. */
    block_t *page = bump(h, PAGE);
    if (!page)
      return NULL;
    uint64_t first = offset_of(page);
    if (!h->free_small_tail[c])
      journal_set(h, &h->free_small_tail[c], first + PAGE - size);
    journal_set(h, &h->free_small_count[c],
                h->free_small_count[c] + PAGE / size);
    journal_save(h, &h->free_small[c]);
    for (uint64_t off = first + PAGE - size; off >= first; off -= size) {
      block_t *b = block_at(off);
      journal_set(h, block_word(b), block_word_of(BLOCK_FREE, (uint32_t)c));
      journal_set(h, &b->size, size);
      journal_set(h, &b->next, h->free_small[c]);
      h->free_small[c] = off;
      if (off == first)
        break;
    }
  }
  block_t *b = block_at(h->free_small[c]);
  journal_set(h, &h->free_small[c], b->next);
  journal_set(h, &h->free_small_count[c], h->free_small_count[c] - 1);
  if (!b->next)
    journal_set(h, &h->free_small_tail[c], 0);
  memset((char *)b + HEADER, 0, size - HEADER);
  return b;
}

static block_t *alloc_large(arena_header_t *h, uint64_t total) {
  uint64_t len = (total + PAGE - 1) & ~(uint64_t)(PAGE - 1);
  /* First fit in the free runs. */
  for (uint64_t *link = &h->free_large; *link; link = &block_at(*link)->next) {
    block_t *run = block_at(*link);
    if (run->size < len)
      continue;
    uint64_t off = *link;
    /* Freed runs had their pages returned to the system: commit again. */
    int rc = commit(off, len);
    if (rc < 0) {
      errno = -rc;
      return NULL;
    }
    if (run->size > len) {
      /* The rest's header page was punched with the run: commit it before
       * writing to it. */
      if ((rc = commit(off + len, PAGE)) < 0) {
        errno = -rc;
        return NULL;
      }
      block_t *rest = block_at(off + len);
      journal_set(h, block_word(rest),
                  block_word_of(BLOCK_FREE, SMALL_CLASSES));
      journal_set(h, &rest->size, run->size - len);
      journal_set(h, &rest->next, run->next);
      journal_set(h, link, off + len);
    } else {
      journal_set(h, link, run->next);
    }
    /* Invariant of free runs: only their first page may hold old bytes,
     * every other page was punched and reads as zero. */
    memset((char *)run + HEADER, 0, PAGE - HEADER);
    journal_set(h, &run->size, len);
    return run;
  }
  block_t *b = bump(h, len);
  if (b)
    journal_set(h, &b->size, len);
  return b;
}

void *mp__shm_alloc(size_t size) {
  size_t total;
  if (!mp__size(size, 1, HEADER, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  int rc = mp__arena_ensure();
  if (rc < 0) {
    errno = -rc;
    return NULL;
  }
  arena_header_t *h = header();
  int c = small_class(total);
  arena_lock(h);
  block_t *b = c >= 0 ? alloc_small(h, c) : alloc_large(h, total);
  if (b) {
    journal_set(
        h, block_word(b),
        block_word_of(BLOCK_USED, c >= 0 ? (uint32_t)c : SMALL_CLASSES));
    if (c >= 0)
      journal_set(h, &b->size, 128u << c);
    journal_set(h, &b->next, 0);
    journal_set(h, &h->in_use, h->in_use + b->size);
  }
  int err = errno;
  arena_unlock(h);
  if (!b) {
    errno = err;
    return NULL;
  }
  return (char *)b + HEADER;
}

/* Puts a run back in the sorted list, merging it with free neighbours, and
 * returns its pages (all but the header page) to the system. */
static void free_large(arena_header_t *h, block_t *run) {
  uint64_t off = offset_of(run);
  uint64_t *link = &h->free_large;
  block_t *prev = NULL;
  while (*link && *link < off) {
    prev = block_at(*link);
    link = &prev->next;
  }
  block_t *freed = run, *after = NULL;
  journal_set(h, block_word(run), block_word_of(BLOCK_FREE, SMALL_CLASSES));
  journal_set(h, &run->next, *link);
  journal_set(h, link, off);
  if (run->next && off + run->size == run->next) {
    after = block_at(run->next);
    journal_set(h, &run->size, run->size + after->size);
    journal_set(h, &run->next, after->next);
  }
  if (prev && offset_of(prev) + prev->size == off) {
    journal_set(h, &prev->size, prev->size + run->size);
    journal_set(h, &prev->next, run->next);
    run = prev;
  }
  /* Before the journal is emptied: a free undone after this leaves a block
   * in use whose pages read as zero, which nobody owns any more. The hole
   * also zeroes the headers of the blocks merged into the run: they are
   * saved first, so that an undo finds them whole. */
  if (run != freed)
    save_header(h, freed);
  if (after)
    save_header(h, after);
  if (run->size > PAGE)
    fallocate(arena.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
              (off_t)(offset_of(run) + PAGE), (off_t)(run->size - PAGE));
}

void mp__shm_free(void *ptr) {
  if (!ptr)
    return;
  block_t *b = (block_t *)((char *)ptr - HEADER);
  arena_header_t *h = header();
  if (!h || (char *)b < arena.base || (char *)b >= arena.base + arena.size ||
      b->magic != BLOCK_USED) {
    fprintf(stderr, "mproc: free of %p, which is not an arena block\n", ptr);
    abort();
  }
  arena_lock(h);
  if (b->magic != BLOCK_USED) {
    /* Freed by another thread or process since the check above. */
    arena_unlock(h);
    fprintf(stderr, "mproc: free of %p, which is not an arena block\n", ptr);
    abort();
  }
  journal_set(h, &h->in_use, h->in_use - b->size);
  if (b->size_class < SMALL_CLASSES) {
    uint32_t c = b->size_class;
    uint64_t tail = h->free_small_tail[c];
    journal_set(h, block_word(b), block_word_of(BLOCK_FREE, c));
    journal_set(h, &b->next, 0);
    journal_set(h, tail ? &block_at(tail)->next : &h->free_small[c],
                offset_of(b));
    journal_set(h, &h->free_small_tail[c], offset_of(b));
    journal_set(h, &h->free_small_count[c], h->free_small_count[c] + 1);
  } else {
    free_large(h, b);
  }
  arena_unlock(h);
}

_Atomic(void *) *mp__shm_root(enum mp__root which) {
  if (mp__arena_ensure() < 0)
    return NULL;
  return &header()->roots[which];
}

_Atomic uint32_t *mp__arena_lock_word(void) {
  return arena.base ? &header()->lock : NULL;
}

uint32_t mp__arena_generation(void) {
  if (mp__arena_ensure() < 0)
    return 0;
  uint32_t g;
  do
    g = (atomic_fetch_add(&header()->generation, 1) + 1) & MP__GENERATION_MASK;
  while (g == 0);
  return g;
}

uint64_t mp__arena_in_use(void) {
  if (!arena.base)
    return 0;
  arena_header_t *h = header();
  arena_lock(h);
  uint64_t n = h->in_use;
  arena_unlock(h);
  return n;
}

/* ---- the consistency check (tests) ------------------------------------------
 * Walks every block from the first to top (blocks tile that range) and
 * every free list, under the lock. */

/* Counts the blocks on the free lists; false if a list holds a block that
 * is not FREE, of another class, or loops. */
static bool free_lists_ok(arena_header_t *h, uint64_t blocks,
                          uint64_t *listed) {
  *listed = 0;
  for (int c = 0; c <= SMALL_CLASSES; c++) {
    uint64_t off = c < SMALL_CLASSES ? h->free_small[c] : h->free_large;
    uint64_t steps = 0, last = 0;
    for (; off; steps++, off = block_at(off)->next) {
      block_t *b = block_at(off);
      if (steps > blocks || off >= h->top || b->magic != BLOCK_FREE ||
          b->size_class != (uint32_t)c)
        return false;
      last = off;
      (*listed)++;
    }
    if (c < SMALL_CLASSES &&
        (steps != h->free_small_count[c] || last != h->free_small_tail[c]))
      return false;
  }
  return true;
}

int mp__arena_check(void (*each_used)(void *ptr, void *arg), void *arg) {
  if (!arena.base)
    return 0;
  arena_header_t *h = header();
  arena_lock(h);
  uint64_t first = (sizeof *h + PAGE - 1) & ~(uint64_t)(PAGE - 1);
  uint64_t used = 0, blocks = 0, free_blocks = 0, listed = 0;
  int rc = 0;
  for (uint64_t off = first; off < h->top && rc == 0;) {
    block_t *b = block_at(off);
    if ((b->magic != BLOCK_USED && b->magic != BLOCK_FREE) || b->size == 0 ||
        off + b->size > h->top) {
      fprintf(stderr, "mproc: arena block at offset %llu is torn\n",
              (unsigned long long)off);
      rc = -1;
      break;
    }
    if (b->magic == BLOCK_USED) {
      used += b->size;
      if (each_used)
        each_used((char *)b + HEADER, arg);
    } else {
      free_blocks++;
    }
    blocks++;
    off += b->size;
  }
  if (rc == 0 && used != h->in_use) {
    fprintf(stderr, "mproc: arena in_use %llu, blocks in use %llu\n",
            (unsigned long long)h->in_use, (unsigned long long)used);
    rc = -1;
  }
  if (rc == 0 &&
      (!free_lists_ok(h, blocks, &listed) || listed != free_blocks)) {
    fprintf(stderr, "mproc: arena free lists hold %llu of %llu free blocks\n",
            (unsigned long long)listed, (unsigned long long)free_blocks);
    rc = -1;
  }
  arena_unlock(h);
  return rc;
}
