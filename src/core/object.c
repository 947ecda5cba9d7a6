/* Handles of shared objects (see mp__object_open in internal.h): their
 * making and the retirement of a freed object. */
#include <stdio.h>
#include <stdlib.h>

#include "testing.h"
#include "core/internal.h"

void *mp__object_publish(void *obj, uint32_t magic) {
  if (!obj)
    return NULL;
  mp__object_t *o = obj;
  /* An arena above 2^48 has no free bits for a generation (internal.h). */
  uint32_t generation = mp__arena_span.address_mask == MP__HANDLE_ADDRESS
                            ? mp__arena_generation()
                            : 0;
  o->generation = generation;
  atomic_store_explicit((_Atomic uint32_t *)&o->magic, magic,
                        memory_order_release);
  return (void *)((uintptr_t)obj | (uintptr_t)generation << MP__HANDLE_SHIFT);
}

void *mp__object_retire(const void *handle, uint32_t magic, const char *kind) {
  uintptr_t h = (uintptr_t)handle, addr = h & mp__arena_span.address_mask;
  uint64_t generation = (uint64_t)(h ^ addr) >> (MP__HANDLE_SHIFT - 32);
  uint64_t seen = magic | generation;
  bool word = mp__arena_word(addr);
  /* One thread retires it: a second free, even a concurrent one, sees the
   * freed mark. */
  if (word && __atomic_compare_exchange_n((uint64_t *)addr, &seen,
                                          MP__FREED(magic) | generation, false,
                                          __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
    return (void *)addr;
  /* Freed: its mark, or (a stale handle) the memory holds a newer object
   * of the kind, or one freed since. */
  uint32_t seen_magic = (uint32_t)seen;
  if (word && (seen_magic == MP__FREED(magic) || seen_magic == magic))
    fprintf(stderr, "mproc: mp_%s_free: this %s was already freed\n", kind,
            kind);
  else
    fprintf(stderr, "mproc: mp_%s_free: %p is not a %s\n", kind, handle, kind);
  abort();
}

void *mp__object_address(const void *handle) {
  return (void *)((uintptr_t)handle & mp__arena_span.address_mask);
}
