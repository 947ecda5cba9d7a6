/* A C server that Python talks to: the Listener example of Python's
 * multiprocessing docs, in C. examples/listener_client.py is the other end
 * (Python's own Client, unchanged); scripts/demo_listener.sh runs the pair.
 *
 *   listener_server [ADDRESS [CLIENTS]]
 *
 * ADDRESS defaults to "tcp:127.0.0.1:0" (a free port: the real address is
 * printed first). For each of CLIENTS clients (default 1) it sends "hello"
 * and an array of two ints, then answers every message in capitals until
 * the client hangs up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc.h"

#define AUTHKEY "secret password"

static int serve(mp_conn_t *conn) {
  /* Python: conn.send_bytes(b'hello'); conn.send_bytes(array('i', ...)). */
  const int numbers[] = {42, 1729};
  int rc = mp_conn_send_bytes(conn, "hello", 5);
  if (rc == 0)
    rc = mp_conn_send_bytes(conn, numbers, sizeof numbers);
  while (rc == 0) {
    char *msg;
    size_t len;
    rc = mp_conn_recv_bytes(conn, (void **)&msg, &len);
    if (rc == MP_ECLOSED)
      return 0; /* the client is done */
    if (rc < 0)
      break;
    printf("got %zu bytes: %.*s\n", len, (int)len, msg);
    for (size_t i = 0; i < len; i++)
      if (msg[i] >= 'a' && msg[i] <= 'z')
        msg[i] = (char)(msg[i] - 'a' + 'A');
    rc = mp_conn_send_bytes(conn, msg, len);
    mp_free(msg);
  }
  return rc;
}

int main(int argc, char **argv) {
  int rc = mp_main(argc, argv);
  if (rc < 0)
    return 1;
  const char *address = argc > 1 ? argv[1] : "tcp:127.0.0.1:0";
  int clients = argc > 2 ? atoi(argv[2]) : 1;
  mp_listener_t *listener = mp_listener_new(address, AUTHKEY, strlen(AUTHKEY));
  if (!listener) {
    perror("mp_listener_new");
    return 1;
  }
  printf("listening on %s\n", mp_listener_address(listener));
  fflush(stdout);
  for (int served = 0; served < clients;) {
    mp_conn_t *conn;
    rc = mp_listener_accept(listener, 30.0, &conn);
    if (rc == MP_EAUTH) {
      printf("a client failed to authenticate\n");
      continue; /* Python raises AuthenticationError; we serve the next */
    }
    if (rc < 0)
      break;
    printf("connection accepted\n");
    rc = serve(conn);
    mp_conn_free(conn);
    if (rc < 0)
      break;
    served++;
  }
  if (rc < 0)
    fprintf(stderr, "listener_server: %s\n", mp_strerror(rc));
  mp_listener_free(listener);
  return rc < 0 ? 1 : 0;
}
