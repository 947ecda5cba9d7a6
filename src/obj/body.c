/* The lowest layer of the value type: bodies (the reference-counted
 * storage of str, bytes, big ints and containers), the explicit stacks
 * that every walk uses, and prefaulting of large buffers. */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "obj/obj_internal.h"

bool mp__frames_grow(void **frames, const void *small, size_t *cap,
                     size_t elem) {
  if (*cap > SIZE_MAX / 2 / elem)
    return false;
  void *grown = malloc(2 * *cap * elem);
  if (!grown)
    return false;
  memcpy(grown, *frames, *cap * elem);
  if (*frames != small)
    free(*frames);
  *frames = grown;
  *cap *= 2;
  return true;
}

void mp__body_init(mp__body_t *b, size_t len) {
  b->refs = 1;
  b->kind = 0;
  b->sealed = 0;
  b->hash_state = MP__HASH_UNKNOWN;
  b->len = len;
}

mp__body_t *mp__body_new(size_t data_len) {
  if (data_len > SIZE_MAX - MP__LEAF_DATA - 1) {
    errno = ENOMEM;
    return NULL;
  }
  mp__body_t *b = malloc(MP__LEAF_DATA + data_len + 1);
  if (!b)
    return NULL;
  mp__prefault(b, MP__LEAF_DATA + data_len + 1);
  mp__body_init(b, data_len);
  b->u.chars = 0;
  mp__body_data(b)[data_len] = 0;
  return b;
}

#define PREFAULT_MIN ((size_t)1 << 20)

void mp__prefault(void *buf, size_t len) {
#ifdef MADV_POPULATE_WRITE
  static _Atomic bool unsupported; /* kernels before 5.14: EINVAL */
  if (len < PREFAULT_MIN ||
      atomic_load_explicit(&unsupported, memory_order_relaxed))
    return;
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)buf + page - 1) & ~(page - 1);
  uintptr_t end = ((uintptr_t)buf + len) & ~(page - 1);
  if (end > start &&
      madvise((void *)start, end - start, MADV_POPULATE_WRITE) != 0 &&
      errno == EINVAL)
    atomic_store_explicit(&unsupported, true, memory_order_relaxed);
#else
  (void)buf;
  (void)len;
#endif
}
