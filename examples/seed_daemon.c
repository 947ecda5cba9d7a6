/* The tutorial's daemon example: three daemonic processes, and a main
 * process that ends without waiting for them.
 *
 *   for ins in processLst:
 *       ins.daemon = True
 *       ins.start()
 *
 * At the main process's normal exit its daemonic children are terminated,
 * so none of them prints "run end". Which of them got to print "start run"
 * first depends on timing, as in Python: in the tutorial's run only
 * TaskClass-1 did. */
#include <stdio.h>
#include <unistd.h>

#include <mproc.h>

static void task_class_run(mp_process_t *self) {
  (void)self;
  const char *name = mp_process_name(mp_current_process());
  printf("%s start run\n", name);
  fflush(stdout);
  sleep(3);
  printf("%s run end\n", name);
}

static const mp_process_type_t task_class = {
    .name = "TaskClass",
    .run = task_class_run,
};

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  printf("main process start run\n");
  mp_process_t *processes[3];
  for (int i = 0; i < 3; i++)
    processes[i] = mp_process_new_type(&task_class, NULL);
  for (int i = 0; i < 3; i++) {
    /* As in Python, daemon must be set before start. */
    int rc = processes[i] ? mp_process_set_daemon(processes[i], true) : -errno;
    if (rc == 0)
      rc = mp_process_start(processes[i]);
    if (rc != 0) { /* a code: errno is not set */
      fprintf(stderr, "start: %s\n", mp_strerror(rc));
      return 1;
    }
  }
  printf("main process carry on run\n");
  printf("main process run end\n");
  for (int i = 0; i < 3; i++)
    mp_process_free(processes[i]);
  return 0;
}
