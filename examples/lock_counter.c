/* The tutorial's Lock example ("锁的使用"): two processes, one adding and
 * one subtracting ten million times under a Lock. The counter is an
 * ordinary global, so each process changes its own copy and the parent's
 * stays 0: processes share nothing unless asked to. The Lock, made in
 * shared memory, travels to the children in their arg struct, as Python
 * passes it in args=.
 *
 * Python:
 *     lock = multiprocessing.Lock()
 *     subProcess01 = multiprocessing.Process(target=add)
 *     ...
 *     print("num result : %s" % num)
 */
#include <stdio.h>

#include "mproc.h"

#define ROUNDS 10000000L

static long num = 0;

struct counter_args {
  mp_lock_t *lock;
};

static void add(void *arg) {
  struct counter_args *a = arg;
  mp_lock_acquire(a->lock, MP_FOREVER);
  for (long i = 0; i < ROUNDS; i++)
    num += 1;
  mp_lock_release(a->lock);
}

static void sub(void *arg) {
  struct counter_args *a = arg;
  mp_lock_acquire(a->lock, MP_FOREVER);
  for (long i = 0; i < ROUNDS; i++)
    num -= 1;
  mp_lock_release(a->lock);
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  struct counter_args args = {.lock = mp_lock_new()};
  if (!args.lock) {
    perror("mp_lock_new");
    return 1;
  }
  mp_process_t *p1 = mp_process_new(add, &args, sizeof args, NULL);
  mp_process_t *p2 = mp_process_new(sub, &args, sizeof args, NULL);
  if (!p1 || !p2 || mp_process_start(p1) != 0 || mp_process_start(p2) != 0) {
    fprintf(stderr, "could not start the processes\n");
    return 1;
  }
  mp_process_join(p1, MP_FOREVER);
  mp_process_join(p2, MP_FOREVER);
  printf("num result : %ld\n", num);
  mp_process_free(p1);
  mp_process_free(p2);
  mp_lock_free(args.lock);
  return 0;
}
