/* The manager's server side (Python docs: "Using a remote manager"): a
 * manager listening on TCP shares a queue of jobs and a dict of results
 * with programs that connect to it (examples/manager_client.c). It puts
 * the jobs, waits until a client reported every result, prints them and
 * shuts down.
 *   manager_server [ADDRESS]     (default tcp:127.0.0.1:0: a free port) */
#include <stdio.h>
#include <string.h>

#include <mproc.h>

#define KEY  "manager demo key"
#define JOBS 5

int main(int argc, char **argv) {
  if (mp_main(argc, argv) != 0)
    return 1;
  const char *address = argc > 1 ? argv[1] : "tcp:127.0.0.1:0";
  mp_manager_t *m = mp_manager_new(address, KEY, strlen(KEY));
  if (!m) {
    perror("mp_manager_new");
    return 1;
  }
  /* This process is of the server's family: these are the shared objects
   * themselves, no round trip. */
  mp_queue_t *jobs = mp_manager_queue(m, "jobs", 0);
  mp_queue_t *done = mp_manager_queue(m, "done", 0);
  mp_dict_t *results = mp_manager_dict(m, "results");
  for (int i = 1; i <= JOBS; i++)
    mp_queue_put(jobs, &i, sizeof i, MP_FOREVER);
  printf("listening on %s\n", mp_manager_address(m));
  fflush(stdout);
  /* Every job done, then the client's goodbye (0): only then may the
   * server go away, or the client's last call would find it gone. */
  for (int i = 0; i <= JOBS; i++) {
    int job;
    size_t len;
    if (mp_queue_get_into(done, &job, sizeof job, &len, 60.0) != 0) {
      fprintf(stderr, "manager_server: no client came\n");
      mp_manager_free(m);
      return 1;
    }
  }
  for (int i = 1; i <= JOBS; i++) {
    long square = 0;
    size_t len;
    mp_dict_get_into(results, &i, sizeof i, &square, sizeof square, &len);
    printf("%d * %d = %ld\n", i, i, square);
  }
  mp_manager_free(m);
  return 0;
}
