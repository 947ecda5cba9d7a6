/* A C server that Python talks to: the Listener example of Python's
 * multiprocessing docs, in C. examples/listener_client.py is the other end
 * (Python's own Client, unchanged); scripts/demo_listener.sh runs the pair.
 *
 *   listener_server [ADDRESS [CLIENTS]]
 *
 * ADDRESS defaults to "tcp:127.0.0.1:0" (a free port: the real address is
 * printed first). For each of CLIENTS clients (default 1) it sends "hello"
 * and an array of two ints, answers one message in capitals, then serves
 * Python objects (the client's conn.send / conn.recv): a dict
 * {"op": "sum", "numbers": [...]} is answered with {"sum": s, "count": n},
 * anything else is sent back as it came, until the client hangs up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mproc.h"

#define AUTHKEY "secret password"

/* {"op": "sum", "numbers": [...]} -> {"sum": s, "count": n}; NULL for
 * anything else. */
static mp_obj_t *answer_sum(const mp_obj_t *request) {
  mp_obj_t *op_key = mp_obj_str("op", 2),
           *numbers_key = mp_obj_str("numbers", 7);
  const mp_obj_t *op = mp_obj_dict_get(request, op_key);
  const mp_obj_t *numbers = mp_obj_dict_get(request, numbers_key);
  mp_obj_free(op_key);
  mp_obj_free(numbers_key);
  const char *name = mp_obj_as_str(op, NULL);
  if (!name || strcmp(name, "sum") != 0 || mp_obj_kind(numbers) != MP_OBJ_LIST)
    return NULL;
  double sum = 0;
  for (size_t i = 0; i < mp_obj_len(numbers); i++) {
    double x;
    if (mp_obj_as_float(mp_obj_item(numbers, i), &x) == 0)
      sum += x;
  }
  mp_obj_t *reply = mp_obj_dict();
  mp_obj_dict_set(reply, mp_obj_str("sum", 3), mp_obj_float(sum));
  mp_obj_dict_set(reply, mp_obj_str("count", 5),
                  mp_obj_int((int64_t)mp_obj_len(numbers)));
  return reply;
}

/* Python: obj = conn.recv(); conn.send(answer), until the client is done. */
static int serve_objects(mp_conn_t *conn) {
  for (;;) {
    mp_obj_t *obj;
    int rc = mp_conn_recv(conn, &obj);
    if (rc == MP_ECLOSED)
      return 0; /* the client is done */
    if (rc < 0)
      return rc;
    printf("got an object of kind %d with %zu items\n", mp_obj_kind(obj),
           mp_obj_len(obj));
    mp_obj_t *reply = answer_sum(obj);
    rc = mp_conn_send(conn, reply ? reply : obj);
    mp_obj_free(reply);
    mp_obj_free(obj);
    if (rc < 0)
      return rc;
  }
}

static int serve(mp_conn_t *conn) {
  /* Python: conn.send_bytes(b'hello'); conn.send_bytes(array('i', ...)). */
  const int numbers[] = {42, 1729};
  int rc = mp_conn_send_bytes(conn, "hello", 5);
  if (rc == 0)
    rc = mp_conn_send_bytes(conn, numbers, sizeof numbers);
  char *msg;
  size_t len;
  if (rc == 0)
    rc = mp_conn_recv_bytes(conn, (void **)&msg, &len);
  if (rc < 0)
    return rc == MP_ECLOSED ? 0 : rc;
  printf("got %zu bytes: %.*s\n", len, (int)len, msg);
  for (size_t i = 0; i < len; i++)
    if (msg[i] >= 'a' && msg[i] <= 'z')
      msg[i] = (char)(msg[i] - 'a' + 'A');
  rc = mp_conn_send_bytes(conn, msg, len);
  mp_free(msg);
  return rc < 0 ? rc : serve_objects(conn);
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
