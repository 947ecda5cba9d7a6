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
 * aligned. */
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
#define SMALL_CLASSES      6 /* 128, 256, ..., 4096 bytes with the header */
#define COMMIT_STEP        (2u << 20)
#define DEFAULT_ARENA_SIZE (32ull << 30)

typedef struct block {
  uint32_t magic;      /* BLOCK_USED or BLOCK_FREE */
  uint32_t size_class; /* SMALL_CLASSES for a run of pages */
  uint64_t size;       /* bytes, header included */
  uint64_t next;       /* free: offset of the next free block, 0 = none */
  char pad[HEADER - 24];
} block_t;

typedef struct arena_header {
  uint64_t magic;
  uint64_t size;
  /* Lock word: the holder's tid, 0 when free. */
  _Atomic uint32_t lock;
  uint32_t pad;
  _Atomic(void *) roots[MP__ROOT_COUNT];
  /* Guarded by lock: */
  uint64_t top;       /* offset of the first byte never handed out */
  uint64_t committed; /* fallocated bytes from the start of the bump area */
  uint64_t free_small[SMALL_CLASSES];
  uint64_t free_large; /* sorted by offset */
  uint64_t in_use;     /* bytes handed out, headers included */
} arena_header_t;

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
  int fd = memfd_create("mproc-arena", MFD_CLOEXEC);
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
  if (((arena_header_t *)base)->magic != ARENA_MAGIC) {
    munmap(base, size);
    return MP_EINVAL;
  }
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
  FILE *f = fopen(path, "re");
  if (!f)
    return errno == ENOENT;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  /* "tid (comm) S ...": the state follows the last ')'. */
  char *end = strrchr(buf, ')');
  return end && (end[2] == 'Z' || end[2] == 'X');
}

static void arena_lock(arena_header_t *h) {
  uint32_t self = (uint32_t)syscall(SYS_gettid); /* glibc < 2.30 */
  for (;;) {
    uint32_t holder = 0;
    if (atomic_compare_exchange_strong(&h->lock, &holder, self))
      return;
    mp__deadline_t d = mp__deadline_in(0.05);
    if (mp__futex_wait(&h->lock, holder, &d) == MP_ETIMEDOUT &&
        thread_gone((pid_t)holder))
      atomic_compare_exchange_strong(&h->lock, &holder, 0);
  }
}

static void arena_unlock(arena_header_t *h) {
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
    h->committed = want;
  }
  block_t *b = block_at(h->top);
  h->top = end;
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
  if (!h->free_small[c]) {
    /* Carve a page worth of blocks (one block for 4 KiB). */
    block_t *page = bump(h, PAGE);
    if (!page)
      return NULL;
    uint64_t first = offset_of(page);
    for (uint64_t off = first + PAGE - size; off >= first; off -= size) {
      block_t *b = block_at(off);
      b->magic = BLOCK_FREE;
      b->size_class = (uint32_t)c;
      b->size = size;
      b->next = h->free_small[c];
      h->free_small[c] = off;
      if (off == first)
        break;
    }
  }
  block_t *b = block_at(h->free_small[c]);
  h->free_small[c] = b->next;
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
      rest->magic = BLOCK_FREE;
      rest->size_class = SMALL_CLASSES;
      rest->size = run->size - len;
      rest->next = run->next;
      *link = off + len;
    } else {
      *link = run->next;
    }
    /* Invariant of free runs: only their first page may hold old bytes,
     * every other page was punched and reads as zero. */
    memset((char *)run + HEADER, 0, PAGE - HEADER);
    run->size = len;
    return run;
  }
  block_t *b = bump(h, len);
  if (b)
    b->size = len;
  return b;
}

void *mp__shm_alloc(size_t size) {
  if (size > ((uint64_t)1 << 48)) {
    errno = ENOMEM;
    return NULL;
  }
  int rc = mp__arena_ensure();
  if (rc < 0) {
    errno = -rc;
    return NULL;
  }
  arena_header_t *h = header();
  uint64_t total = (uint64_t)size + HEADER;
  int c = small_class(total);
  arena_lock(h);
  block_t *b = c >= 0 ? alloc_small(h, c) : alloc_large(h, total);
  if (b) {
    b->magic = BLOCK_USED;
    b->size_class = c >= 0 ? (uint32_t)c : SMALL_CLASSES;
    if (c >= 0)
      b->size = 128u << c;
    b->next = 0;
    h->in_use += b->size;
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
  run->magic = BLOCK_FREE;
  run->next = *link;
  *link = off;
  if (run->next && off + run->size == run->next) {
    block_t *after = block_at(run->next);
    run->size += after->size;
    run->next = after->next;
  }
  if (prev && offset_of(prev) + prev->size == off) {
    prev->size += run->size;
    prev->next = run->next;
    run = prev;
  }
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
  h->in_use -= b->size;
  if (b->size_class < SMALL_CLASSES) {
    b->magic = BLOCK_FREE;
    b->next = h->free_small[b->size_class];
    h->free_small[b->size_class] = offset_of(b);
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

bool mp__arena_contains(const void *ptr) {
  return arena.base && (const char *)ptr >= arena.base &&
         (const char *)ptr < arena.base + arena.size;
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
