/* A task in a library the program loads with dlopen: built twice
 * (PLUGIN_VARIANT 0 and 1), so the two builds have different build ids.
 * The test shows ranks 1 and 2 the other build at the same path. */
#include <stdint.h>

int mpt_plugin_square(const void *in, void *out);

int mpt_plugin_square(const void *in, void *out) {
  int64_t x = *(const int64_t *)in;
  *(int64_t *)out = x * x + PLUGIN_VARIANT;
  return 0;
}
