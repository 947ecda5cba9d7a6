/* A task in a library the program loads with dlopen: built twice
 * (PLUGIN_VARIANT 0 and 1), so the two builds have different build ids.
 * The test shows ranks 1 and 2 the other build at the same path. */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int mpt_plugin_square(const void *in, void *out);

/* Only rank 0 runs this build (the others refuse it). Its worker waits
 * until rank 0's program saw an item refused (marker "go", mpi_pool_test.c),
 * so that the other ranks get work whatever the timing: the test needs
 * items to land there. A deadline only ends a broken run. */
static void wait_for_go(void) {
  const char *tag = getenv("MPT_TAG");
  char path[256];
  if (!tag)
    return;
  snprintf(path, sizeof path, "/tmp/mpt-%s-go", tag);
  for (int i = 0; i < 6000 && access(path, F_OK) != 0; i++)
    nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
}

int mpt_plugin_square(const void *in, void *out) {
  wait_for_go();
  int64_t x = *(const int64_t *)in;
  *(int64_t *)out = x * x + PLUGIN_VARIANT;
  return 0;
}
