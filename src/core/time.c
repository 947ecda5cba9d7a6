/* Monotonic deadlines shared by every wait in the library. */
#include <limits.h>
#include <math.h> /* isnan: a macro, no libm */

#include "core/internal.h"

uint64_t mp__now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

mp__deadline_t mp__deadline_in(double timeout) {
  mp__deadline_t d = {.forever = timeout < 0 || isnan(timeout),
                      .interruptible = true};
  clock_gettime(CLOCK_MONOTONIC, &d.at);
  if (d.forever)
    return d;
  /* Ten years is forever for every practical purpose and keeps the
   * arithmetic far from overflow. */
  if (timeout > 315360000.0) {
    d.forever = true;
    return d;
  }
  double whole = (double)(long long)timeout; /* timeout >= 0: truncation */
  d.at.tv_sec += (time_t)whole;
  d.at.tv_nsec += (long)((timeout - whole) * 1e9);
  if (d.at.tv_nsec >= 1000000000L) {
    d.at.tv_sec++;
    d.at.tv_nsec -= 1000000000L;
  }
  return d;
}

static int64_t deadline_left_ns(const mp__deadline_t *d) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (int64_t)(d->at.tv_sec - now.tv_sec) * 1000000000 +
         (d->at.tv_nsec - now.tv_nsec);
}

mp__deadline_t mp__deadline_earlier(const mp__deadline_t *a,
                                    const mp__deadline_t *b) {
  if (a->forever)
    return *b;
  if (b->forever || a->at.tv_sec < b->at.tv_sec ||
      (a->at.tv_sec == b->at.tv_sec && a->at.tv_nsec < b->at.tv_nsec))
    return *a;
  return *b;
}

bool mp__deadline_expired(const mp__deadline_t *d) {
  return !d->forever && deadline_left_ns(d) <= 0;
}

int mp__deadline_poll_ms(const mp__deadline_t *d) {
  if (d->forever)
    return -1;
  int64_t left = deadline_left_ns(d);
  if (left <= 0)
    return 0;
  int64_t ms = (left + 999999) / 1000000;
  return ms > INT_MAX ? INT_MAX : (int)ms;
}
