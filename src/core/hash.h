/* The 64-bit mixer the library's hash functions share (internal): the
 * finaliser of splitmix64, a bijection that spreads every input bit over
 * the whole word. Used by the shared dict's keyed hash (containers/) and
 * by the hash of Python values (obj/). */
#ifndef MPROC_HASH_H
#define MPROC_HASH_H

#include <stdint.h>

static inline uint64_t mp__mix64(uint64_t h) {
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

#endif
