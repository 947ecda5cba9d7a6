/* A task in a library the program loads with dlopen: built twice
 * (PLUGIN_VARIANT 0 and 1), so the two builds have different build ids.
 * The test shows ranks 1 and 2 the other build at the same path. */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */
#include <stdint.h>
#include <time.h>

int mpt_plugin_square(const void *in, void *out);

int mpt_plugin_square(const void *in, void *out) {
  /* Each item takes a while, so that rank 0's one worker cannot finish
   * the whole map before the other ranks (slow to start under the
   * sanitizers) claim their share: the test needs items to land there.
   * The result does not depend on it. */
  nanosleep(&(struct timespec){0, 20 * 1000 * 1000}, NULL);
  int64_t x = *(const int64_t *)in;
  *(int64_t *)out = x * x + PLUGIN_VARIANT;
  return 0;
}
