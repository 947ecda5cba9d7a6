/* The tutorial's first example: three processes made from a function.
 *
 *   def task(params): ...
 *   for item in range(3):
 *       multiprocessing.Process(target=task, args=(item,)).start()
 *
 * The main process prints its last line at once and, as in Python, still
 * waits for the three children when it ends. */
#include <stdio.h>
#include <unistd.h>

#include <mproc.h>

static void task(void *arg) {
  int params = *(int *)arg;
  printf("sub process run\n");
  mp_process_t *current = mp_current_process();
  sleep(3);
  printf("current subProcess id : %d\ncurrent sub process name : %s\n"
         "current sub process params : %d\n",
         (int)mp_process_pid(current), mp_process_name(current), params);
}

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  printf("main Process run\n");
  for (int item = 0; item < 3; item++) {
    mp_process_t *sub = mp_process_new(task, &item, sizeof item, NULL);
    int rc = sub ? mp_process_start(sub) : -errno;
    if (rc != 0) { /* a code: errno is not set */
      fprintf(stderr, "start: %s\n", mp_strerror(rc));
      return 1;
    }
    mp_process_free(sub); /* still running: the library keeps track of it */
  }
  printf("main Process run end\n");
  return 0;
}
