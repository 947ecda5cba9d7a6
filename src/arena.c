/* Shared memory for shared objects.
 *
 * TEMPORARY: one anonymous shared mapping per allocation, valid in children
 * started by fork after the allocation. The real arena (one memfd mapped at
 * the same address in every process of the family) replaces it. */
#include <sys/mman.h>

#include "internal.h"

typedef struct arena_header {
  size_t mapped;
  char pad[64 - sizeof(size_t)];
} arena_header_t;

static _Atomic(void *) *roots;

_Atomic(void *) *mp__shm_root(enum mp__root which) {
  if (!roots) {
    void *map = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
      return NULL;
    roots = map;
  }
  return &roots[which];
}

void *mp__shm_alloc(size_t size) {
  size_t total = size + sizeof(arena_header_t);
  void *map = mmap(NULL, total, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED)
    return NULL;
  arena_header_t *h = map;
  h->mapped = total;
  return h + 1;
}

void mp__shm_free(void *ptr) {
  if (!ptr)
    return;
  arena_header_t *h = (arena_header_t *)ptr - 1;
  munmap(h, h->mapped);
}

void *mp_raw_alloc(size_t size) {
  if (size == 0) {
    errno = EINVAL;
    return NULL;
  }
  return mp__shm_alloc(size);
}

void mp_raw_free(void *ptr) {
  mp__shm_free(ptr);
}
