/* The manager's client side (examples/manager_server.c): connects to the
 * server over TCP, takes jobs from its queue, puts the results in its dict
 * and reports each one, holding the server's lock "print" while it prints
 * (Manager().Lock(): several clients would not mix their lines). The
 * handles are proxies: the same mp_queue_*, mp_dict_* and mp_lock_* calls
 * as on local objects, each a request to the server.
 *   manager_client ADDRESS */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

#define KEY "manager demo key"

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  if (argc < 2) {
    fprintf(stderr, "usage: manager_client ADDRESS\n");
    return 2;
  }
  mp_manager_t *m = mp_manager_connect(argv[1], KEY, strlen(KEY));
  if (!m) {
    perror("mp_manager_connect");
    return 1;
  }
  mp_queue_t *jobs = mp_manager_queue(m, "jobs", 0);
  mp_queue_t *done = mp_manager_queue(m, "done", 0);
  mp_dict_t *results = mp_manager_dict(m, "results");
  mp_lock_t *print = mp_manager_lock(m, "print");
  int job, rc;
  size_t len;
  while ((rc = mp_queue_get_into(jobs, &job, sizeof job, &len, 0)) == 0) {
    long square = (long)job * job;
    mp_dict_set(results, &job, sizeof job, &square, sizeof square);
    mp_queue_put(done, &job, sizeof job, MP_FOREVER);
    mp_lock_acquire(print, MP_FOREVER);
    printf("job %d done\n", job);
    fflush(stdout);
    mp_lock_release(print);
  }
  int goodbye = 0; /* the server waits for it before it shuts down */
  mp_queue_put(done, &goodbye, sizeof goodbye, MP_FOREVER);
  mp_queue_free(jobs);
  mp_queue_free(done);
  mp_dict_free(results);
  mp_lock_free(print);
  mp_manager_free(m);
  if (rc != MP_EEMPTY) /* the queue is drained: anything else is an error */
    fprintf(stderr, "manager_client: get: %s\n", mp_strerror(rc));
  return rc == MP_EEMPTY ? 0 : 1;
}
