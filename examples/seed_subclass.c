/* The tutorial's second example: a Process subclass overriding run().
 *
 *   class TaskClass(multiprocessing.Process):
 *       def __init__(self, params): self.params = params; ...
 *       def run(self): ...
 *
 * In C the subclass is an mp_process_type_t: its name gives the default
 * process names (TaskClass-1, ...), run() is called in the child, and the
 * attributes live in the type's data block, copied into the child. */
#include <stdio.h>
#include <unistd.h>

#include <mproc.h>

typedef struct task_class {
  int params;
} task_class_t;

static void task_class_run(mp_process_t *self) {
  task_class_t *data = mp_process_data(self);
  printf("sub process run\n");
  mp_process_t *current = mp_current_process();
  sleep(3);
  printf("current sub process id : %d\ncurrent sub process name : %s\n"
         "current sub process params : %d\n",
         (int)mp_process_pid(current), mp_process_name(current), data->params);
}

static const mp_process_type_t task_class = {
    .name = "TaskClass",
    .run = task_class_run,
    .data_size = sizeof(task_class_t),
};

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  printf("main process run\n");
  for (int item = 0; item < 3; item++) {
    mp_process_t *sub = mp_process_new_type(&task_class, NULL);
    if (!sub) {
      perror("mp_process_new_type");
      return 1;
    }
    ((task_class_t *)mp_process_data(sub))->params = item;
    int rc = mp_process_start(sub);
    if (rc != 0) { /* a code: errno is not set */
      fprintf(stderr, "start: %s\n", mp_strerror(rc));
      return 1;
    }
    mp_process_free(sub);
  }
  printf("main process run end\n");
  return 0;
}
