/* Python's BaseManager and mproc's manager, both ways, with every Python
 * 3.11-3.13 found: a Python client of an mproc manager's queue (items put
 * and got by mproc processes of the family under each start method), an
 * mproc client of a Python manager's queue, Python's exceptions as codes,
 * methods the server does not have, and malformed requests. */
#include <stdio.h>
#include <string.h>

#include "python/pypeer.h"
#include "sync_fixtures.h"

static const char KEY[] = "python manager key";

/* ---- values ------------------------------------------------------------- */

static mp_obj_t *str(const char *s) {
  return mp_obj_str(s, strlen(s));
}

static mp_obj_t *tuple2(mp_obj_t *a, mp_obj_t *b, bool list) {
  mp_obj_t *t = list ? mp_obj_list() : mp_obj_tuple();
  if (mp_obj_append(t, a) < 0 || mp_obj_append(t, b) < 0) {
    mp_obj_free(t);
    return NULL;
  }
  return t;
}

/* PY_ITEMS of manager_peer.py, item i (of PY_COUNT). */
#define PY_COUNT 10
static mp_obj_t *py_item(int i) {
  static const unsigned char two_70[9] = {0, 0, 0, 0, 0, 0, 0, 0, 0x40};
  mp_obj_t *d;
  switch (i) {
  case 0:
    return mp_obj_none();
  case 1:
    return mp_obj_bool(true);
  case 2:
    return mp_obj_int(-3);
  case 3:
    return mp_obj_int_from_bytes(two_70, sizeof two_70);
  case 4:
    return mp_obj_float(2.5);
  case 5:
    return str("p\xc3\xbdthon");
  case 6:
    return mp_obj_bytes("\0by", 3);
  case 7:
    return tuple2(mp_obj_int(1), str("t"), false);
  case 8:
    d = mp_obj_list();
    mp_obj_append(d, mp_obj_int(2));
    return tuple2(mp_obj_int(1), d, true);
  default:
    d = mp_obj_dict();
    mp_obj_dict_set(d, str("k"), str("v"));
    mp_obj_dict_set(d, mp_obj_int(1), mp_obj_none());
    return d;
  }
}

/* Whether the next message of q is item `want`. */
static bool next_is(mp_queue_t *q, const mp_obj_t *want) {
  mp_obj_t *got = NULL;
  bool ok =
      mp_queue_get_obj(q, &got, JOIN_TIMEOUT) == 0 && mp_obj_equal(got, want);
  mp_obj_free(got);
  return ok;
}

static bool next_is_py_item(mp_queue_t *q, int i) {
  mp_obj_t *want = py_item(i);
  bool ok = next_is(q, want);
  mp_obj_free(want);
  return ok;
}

static bool next_is_str(mp_queue_t *q, const char *s) {
  mp_obj_t *want = str(s);
  bool ok = next_is(q, want);
  mp_obj_free(want);
  return ok;
}

/* Puts s and gets it back (also if a server thread takes it first and
 * puts it back). */
static bool next_is_str_after_put(mp_queue_t *q, const char *s) {
  mp_obj_t *o = str(s);
  bool ok = mp_queue_put_obj(q, o, 0) == 0;
  mp_obj_free(o);
  return ok && next_is_str(q, s);
}

/* What C puts for Python, and how Python prints each. */
static mp_obj_t *c_item(int i) {
  switch (i) {
  case 0:
    return mp_obj_int(42);
  case 1:
    return str("h\xc3\xa9llo");
  case 2:
    return mp_obj_bytes("\x01\x02", 2);
  case 3: {
    mp_obj_t *t = tuple2(mp_obj_none(), mp_obj_bool(false), false);
    mp_obj_append(t, mp_obj_float(1.5));
    return t;
  }
  default: {
    mp_obj_t *d = mp_obj_dict();
    mp_obj_dict_set(d, str("a"), tuple2(mp_obj_int(1), mp_obj_int(2), true));
    return d;
  }
  }
}
#define C_COUNT 5
static const char *const c_reprs[] = {"42",
                                      "'h\xc3\xa9llo'",
                                      "b'\\x01\\x02'",
                                      "(None, False, 1.5)",
                                      "{'a': [1, 2]}",
                                      "b'raw bytes'",
                                      "'end'"};

/* Puts c_item 0..C_COUNT, a raw message, then "end" (if end). */
static int put_c_items(mp_queue_t *q, bool end) {
  int rc = 0;
  for (int i = 0; i < C_COUNT && rc == 0; i++) {
    mp_obj_t *o = c_item(i);
    rc = mp_queue_put_obj(q, o, JOIN_TIMEOUT);
    mp_obj_free(o);
  }
  if (rc == 0)
    rc = mp_queue_put(q, "raw bytes", 9, JOIN_TIMEOUT);
  mp_obj_t *e = str("end");
  if (rc == 0 && end)
    rc = mp_queue_put_obj(q, e, JOIN_TIMEOUT);
  mp_obj_free(e);
  return rc;
}

/* Every line of want, in order, among the lines of out. */
static void expect_lines(const char *out, const char *const *want, size_t n,
                         const char *version) {
  int last = -1;
  for (size_t i = 0; i < n; i++) {
    int at = mpt_line_index(out, want[i]);
    if (at <= last)
      fail_msg("python %s: line \"%s\" missing or out of order in:\n%s",
               version, want[i], out);
    last = at;
  }
}

/* ---- (a) a Python client of an mproc manager ------------------------------
 */

struct family_args {
  mp_manager_t *m;
};

static void child_puts(void *arg) {
  struct family_args *a = arg;
  mp_queue_t *q = mp_manager_queue(a->m, "queue", 0);
  _exit(q && put_c_items(q, true) == 0 ? 0 : 2);
}

/* Python's items, after the one its second proxy put from a thread. */
static void child_gets(void *arg) {
  struct family_args *a = arg;
  mp_queue_t *q = mp_manager_queue(a->m, "queue", 0);
  if (!q || !next_is_str(q, "from a thread"))
    _exit(2);
  for (int i = 0; i < PY_COUNT; i++)
    if (!next_is_py_item(q, i))
      _exit(10 + i);
  _exit(next_is_str(q, "end") && mp_queue_empty(q) ? 0 : 3);
}

/* Puts into "late" once Python says it is about to wait for it. */
static void child_late(void *arg) {
  struct family_args *a = arg;
  mp_queue_t *ready = mp_manager_queue(a->m, "late_ready", 0);
  mp_queue_t *late = mp_manager_queue(a->m, "late", 0);
  mp_obj_t *o = NULL, *item = str("late item");
  int rc = ready && late ? mp_queue_get_obj(ready, &o, 120) : -1;
  if (rc == 0)
    rc = mp_queue_put_obj(late, item, 0);
  mp_obj_free(o);
  mp_obj_free(item);
  _exit(rc == 0 ? 0 : 2);
}

static void python_client(const char *exe, const char *version) {
  mp_manager_t *m = mp_manager_new("tcp:127.0.0.1:0", KEY, sizeof KEY - 1);
  assert_non_null(m);
  struct family_args a = {m};
  assert_int_equal(0, finish_child(start_child(child_puts, &a, sizeof a)));
  mp_process_t *late = start_child(child_late, &a, sizeof a);
  char port[16];
  snprintf(port, sizeof port, "%s", strrchr(mp_manager_address(m), ':') + 1);
  char *argv[] = {(char *)exe, PYPEER_SCRIPT("manager_peer.py"),
                  "client",    port,
                  (char *)KEY, NULL};
  char *out = NULL;
  int status = -1;
  assert_mp_ok(mpt_run_command(argv, 120, &out, &status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("python %s client failed:\n%s", version, out);
  expect_lines(out, c_reprs, sizeof c_reprs / sizeof c_reprs[0], version);
  static const char *const after[] = {"Empty",
                                      "Empty after timeout",
                                      "qsize 0 True False",
                                      "RemoteError True",
                                      "Fraction RemoteError True",
                                      "garbage #TRACEBACK",
                                      "os.system #TRACEBACK",
                                      "unknown #TRACEBACK",
                                      "dummy ('#RETURN', None)",
                                      "done"};
  expect_lines(out, after, sizeof after / sizeof after[0], version);
  free(out);
  assert_int_equal(0, finish_child(late));
  assert_int_equal(0, finish_child(start_child(child_gets, &a, sizeof a)));
  mp_manager_free(m);
}

static void test_python_client(void **state) {
  (void)state;
  pypeer_each_version(python_client);
}

/* A Python client killed while its get waits in the server: the message
 * put afterwards is not lost (the server stops waiting when the
 * connection closes, or puts back what it took for a client it cannot
 * answer). */
static void python_killed(const char *exe, const char *version) {
  mp_manager_t *m = mp_manager_new("tcp:127.0.0.1:0", KEY, sizeof KEY - 1);
  assert_non_null(m);
  char port[16], line[64];
  snprintf(port, sizeof port, "%s", strrchr(mp_manager_address(m), ':') + 1);
  char *argv[] = {(char *)exe, PYPEER_SCRIPT("manager_peer.py"),
                  "blocked",   port,
                  (char *)KEY, NULL};
  pypeer_t peer;
  assert_mp_ok(pypeer_start(&peer, argv, NULL, 0, true));
  bool waiting = pypeer_read_line(&peer, line, sizeof line, 60) == 0 &&
                 strcmp(line, "waiting") == 0;
  kill(peer.pid, SIGKILL);
  pypeer_finish(&peer, 30);
  if (!waiting)
    fail_msg("python %s did not get to its get()", version);
  mp_queue_t *idle = mp_manager_queue(m, "idle", 0);
  assert_non_null(idle);
  assert_true(mp_queue_empty(idle));
  assert_true(next_is_str_after_put(idle, "kept"));
  mp_manager_free(m);
}

static void test_python_client_killed(void **state) {
  (void)state;
  pypeer_each_version(python_killed);
}

/* Requests no Python would send, on a raw connection: each gets a
 * '#TRACEBACK' reply, and the server goes on answering. */
static const char *reply_kind(mp_conn_t *c, const void *req, size_t len,
                              char *kind, size_t cap) {
  mp_obj_t *reply = NULL;
  assert_mp_ok(mp_conn_send_bytes(c, req, len));
  assert_mp_ok(mp_conn_recv(c, &reply));
  snprintf(kind, cap, "%s", mp_obj_as_str(mp_obj_item(reply, 0), NULL));
  mp_obj_free(reply);
  return kind;
}

static void test_malformed_requests(void **state) {
  (void)state;
  mp_manager_t *m = mp_manager_new("tcp:127.0.0.1:0", KEY, sizeof KEY - 1);
  assert_non_null(m);
  mp_conn_t *c;
  assert_mp_ok(mp_client(mp_manager_address(m), KEY, sizeof KEY - 1, &c));
  char kind[32], deep[2 + 2 * 500 + 1];
  /* Lists nested 500 deep, beyond the server's limit. */
  size_t n = 0;
  deep[n++] = '\x80';
  deep[n++] = 4;
  memset(deep + n, ']', 500);
  memset(deep + n + 500, 'a', 499);
  n += 999;
  deep[n++] = '.';
  assert_string_equal("#TRACEBACK", reply_kind(c, deep, n, kind, sizeof kind));
  static const char truncated[] = "\x80\x04\x95\x10";
  assert_string_equal(
      "#TRACEBACK",
      reply_kind(c, truncated, sizeof truncated - 1, kind, sizeof kind));
  /* A request of the wrong shape, a method on an object that is not. */
  mp_obj_t *req = tuple2(mp_obj_none(), str("dummy"), false);
  void *buf;
  size_t len;
  assert_mp_ok(mp_obj_dumps(req, 4, &buf, &len));
  assert_string_equal("#TRACEBACK", reply_kind(c, buf, len, kind, sizeof kind));
  mp_free(buf);
  mp_obj_append(req, mp_obj_tuple());
  mp_obj_append(req, mp_obj_dict());
  assert_mp_ok(mp_obj_dumps(req, 4, &buf, &len));
  assert_string_equal("#RETURN", reply_kind(c, buf, len, kind, sizeof kind));
  mp_free(buf);
  mp_obj_free(req);
  req = tuple2(str("no such"), str("get"), false);
  mp_obj_append(req, mp_obj_tuple());
  mp_obj_append(req, mp_obj_dict());
  assert_mp_ok(mp_obj_dumps(req, 4, &buf, &len));
  assert_string_equal("#TRACEBACK", reply_kind(c, buf, len, kind, sizeof kind));
  mp_free(buf);
  mp_obj_free(req);
  mp_conn_free(c);
  /* mproc's own clients are still served. */
  mp_manager_t *mc =
      mp_manager_connect(mp_manager_address(m), KEY, sizeof KEY - 1);
  assert_non_null(mc);
  mp_queue_t *q = mp_manager_queue(mc, "queue", 0);
  assert_non_null(q);
  assert_mp_ok(mp_queue_put(q, "x", 1, 0));
  assert_int_equal(1, mp_queue_qsize(q));
  mp_queue_free(q);
  mp_manager_free(mc);
  mp_manager_free(m);
}

/* ---- (b) an mproc client of a Python manager ------------------------------
 */

struct connect_args {
  char address[64];
};

/* A process of the family connects by itself (a connected handle is
 * process-local). */
static void child_connects(void *arg) {
  struct connect_args *a = arg;
  mp_manager_t *m = mp_manager_connect_python(a->address, KEY, sizeof KEY - 1);
  mp_queue_t *r = m ? mp_manager_queue(m, "get_results", 0) : NULL;
  mp_obj_t *o = str("from a child");
  int rc = r ? mp_queue_put_obj(r, o, JOIN_TIMEOUT) : -1;
  mp_obj_free(o);
  mp_queue_free(r);
  mp_manager_free(m);
  _exit(rc == 0 ? 0 : 2);
}

/* The Python server of the test under way: killed by the teardown if the
 * test fails before it stops it. */
static pypeer_t server_peer = {-1, -1};

static int python_teardown(void **state) {
  if (server_peer.pid > 0) {
    kill(server_peer.pid, SIGKILL);
    pypeer_finish(&server_peer, 5);
  }
  server_peer = (pypeer_t){-1, -1};
  return sync_teardown(state);
}

/* Starts manager_peer.py's server (server_peer) and connects to it: the
 * manager, its address in address (64 bytes). */
static mp_manager_t *start_python_server(const char *exe, const char *version,
                                         char *address) {
  char *argv[] = {(char *)exe, PYPEER_SCRIPT("manager_peer.py"), "server",
                  (char *)KEY, NULL};
  char line[64];
  assert_mp_ok(pypeer_start(&server_peer, argv, NULL, 0, true));
  if (pypeer_read_line(&server_peer, line, sizeof line, 60) != 0)
    fail_msg("python %s server did not start", version);
  snprintf(address, 64, "tcp:127.0.0.1:%.16s", line);
  mp_manager_t *m = mp_manager_connect_python(address, KEY, sizeof KEY - 1);
  assert_non_null(m);
  return m;
}

static void python_server(const char *exe, const char *version) {
  struct connect_args a;
  mp_manager_t *m = start_python_server(exe, version, a.address);
  pypeer_t *peer = &server_peer;
  char line[256];
  mp_queue_t *q = mp_manager_queue(m, "get_queue", 0);
  assert_non_null(q);
  for (int i = 0; i < PY_COUNT; i++)
    assert_true(next_is_py_item(q, i));
  mp_obj_t *o = NULL;
  assert_mp(MP_EEMPTY, mp_queue_get_obj(q, &o, 0));
  assert_non_null(strstr(mp_manager_last_error(), "Empty"));
  void *buf;
  size_t len;
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &len, 0.01));
  assert_int_equal(0, mp_queue_qsize(q));
  assert_false(mp_queue_full(q));
  /* get_into a buffer too small: the size, and the message kept. */
  char small[4];
  o = str("longer than four");
  assert_mp_ok(mp_queue_put_obj(q, o, 0));
  assert_mp(MP_EOVERFLOW, mp_queue_get_into(q, small, sizeof small, &len, 0));
  assert_true(len > sizeof small);
  assert_true(next_is(q, o));
  mp_obj_free(o);
  assert_mp(-ENOTSUP, mp_queue_close(q));
  /* A typeid the server does not have: its KeyError, as text. */
  assert_null(mp_manager_queue(m, "get_nothing", 0));
  assert_int_equal(EREMOTEIO, errno);
  assert_non_null(strstr(mp_manager_last_error(), "KeyError"));
  assert_null(mp_manager_dict(m, "get_queue"));
  /* Items for Python, from here and from a child. */
  mp_queue_t *r = mp_manager_queue(m, "get_results", 0);
  assert_non_null(r);
  assert_mp_ok(put_c_items(r, false));
  assert_int_equal(0, finish_child(start_child(child_connects, &a, sizeof a)));
  assert_int_equal(C_COUNT + 2, mp_queue_qsize(r));
  assert_mp_ok(mp_manager_shutdown(m));
  assert_mp(MP_ECLOSED, mp_queue_put(r, "x", 1, 0));
  mp_queue_free(q);
  mp_queue_free(r);
  mp_manager_free(m);
  /* What the server printed of get_results when it stopped. */
  char out[4096] = "";
  while (pypeer_read_line(peer, line, sizeof line, 60) == 0 &&
         strcmp(line, "served") != 0)
    snprintf(out + strlen(out), sizeof out - strlen(out), "%s\n", line);
  int status = pypeer_finish(peer, 30);
  server_peer.pid = -1;
  if (!pypeer_exited_ok(status))
    fail_msg("python %s server failed; it printed:\n%s", version, out);
  expect_lines(out, c_reprs, C_COUNT + 1, version);
  assert_int_equal(C_COUNT + 1, mpt_line_index(out, "'from a child'"));
}

static void test_python_server(void **state) {
  (void)state;
  pypeer_each_version(python_server);
}

/* The Python server killed: calls on its queues are MP_ECLOSED at once
 * and from then on, never a hang. */
static void python_server_killed(const char *exe, const char *version) {
  char address[64];
  mp_manager_t *m = start_python_server(exe, version, address);
  mp_queue_t *q = mp_manager_queue(m, "get_queue", 0);
  assert_non_null(q);
  assert_true(next_is_py_item(q, 0));
  kill(server_peer.pid, SIGKILL);
  pypeer_finish(&server_peer, 30);
  server_peer.pid = -1;
  void *buf;
  size_t len;
  assert_mp(MP_ECLOSED, mp_queue_get(q, &buf, &len, MP_FOREVER));
  assert_mp(MP_ECLOSED, mp_queue_put(q, "x", 1, MP_FOREVER));
  assert_mp(MP_ECLOSED, mp_manager_shutdown(m));
  mp_queue_free(q);
  mp_manager_free(m);
}

static void test_python_server_killed(void **state) {
  (void)state;
  pypeer_each_version(python_server_killed);
}

/* A Python manager that is not there, and an mproc server for a Python
 * client: errors, never a hang. */
static void test_connect_errors(void **state) {
  (void)state;
  mp_manager_t *m = mp_manager_new("tcp:127.0.0.1:0", KEY, sizeof KEY - 1);
  assert_non_null(m);
  /* An mproc server answers Python's dummy() too: it is a manager. */
  mp_manager_t *c =
      mp_manager_connect_python(mp_manager_address(m), KEY, sizeof KEY - 1);
  if (!c)
    fail_msg("%s: %s", strerror(errno), mp_manager_last_error());
  mp_queue_t *q = mp_manager_queue(c, "get_jobs", 0);
  assert_non_null(q);
  mp_obj_t *o = mp_obj_int(7);
  assert_mp_ok(mp_queue_put_obj(q, o, 0));
  mp_obj_free(o);
  /* The family sees it as the queue "jobs". */
  mp_queue_t *local = mp_manager_queue(m, "jobs", 0);
  assert_int_equal(1, mp_queue_qsize(local));
  void *buf;
  size_t len;
  int64_t v = 0;
  assert_mp_ok(mp_queue_get(local, &buf, &len, 0)); /* as its pickle */
  assert_mp_ok(mp_obj_loads(buf, len, &o));
  mp_free(buf);
  assert_mp_ok(mp_obj_as_int(o, &v));
  assert_int_equal(7, v);
  mp_obj_free(o);
  assert_mp(MP_EEMPTY, mp_queue_get_obj(q, &o, 0));
  assert_non_null(strstr(mp_manager_last_error(), "Empty"));
  mp_queue_free(q);
  mp_manager_free(c);
  assert_null(mp_manager_connect_python(mp_manager_address(m), "wrong", 5));
  mp_manager_free(m);
}

/* ---- a hostile "Python" server ---------------------------------------------
 * Scripted replies to mp_manager_connect_python's dummy(): garbage, an
 * exception that names os.system (read, never called), a value that is
 * not a basic one, nesting beyond the limit. Each is an error with a
 * code, never a crash or a call. */

typedef struct scripted {
  const char *reply;
  size_t len;
  int err;          /* the errno mp_manager_connect_python gives */
  const char *text; /* in mp_manager_last_error() */
} scripted_t;

#define REPLY(s) s, sizeof s - 1
static const scripted_t script[] = {
    {REPLY("\x80\x04\x95garbage"), EPROTO, "unreadable"},
    {REPLY("\x80\x02X\x06\x00\x00\x00#ERRORcos\nsystem\nX\x05\x00\x00\x00"
           "rm -r\x85R\x86."),
     EREMOTEIO, "os.system: rm -r"},
    {REPLY("\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00\x8c\x05queue\x94"
           "\x8c\x05"
           "Empty\x94\x93\x94)\x81\x94."),
     EPROTO, "not a reply"},
    {REPLY("\x80\x02X\x07\x00\x00\x00#RETURNcos\ngetcwd\n)R\x86."), EPROTO,
     "cannot read"},
    {REPLY("\x80\x02X\x06\x00\x00\x00#ERRORcqueue\nEmpty\n)R\x86."),
     EIO /* MP_EEMPTY has no errno */, "queue.Empty"},
};
#define SCRIPT_LEN (sizeof script / sizeof script[0])

static void *hostile_server(void *arg) {
  mp_listener_t *l = arg;
  for (size_t i = 0; i < SCRIPT_LEN; i++) {
    mp_conn_t *c;
    void *req;
    size_t len;
    if (mp_listener_accept(l, JOIN_TIMEOUT, &c) != 0)
      break;
    if (mp_conn_recv_bytes(c, &req, &len) == 0) {
      mp_free(req);
      mp_conn_send_bytes(c, script[i].reply, script[i].len);
    }
    mp_conn_free(c);
  }
  return NULL;
}

static void test_hostile_server(void **state) {
  (void)state;
  mp_listener_t *l = mp_listener_new("tcp:127.0.0.1:0", KEY, sizeof KEY - 1);
  assert_non_null(l);
  pthread_t t;
  assert_int_equal(0, pthread_create(&t, NULL, hostile_server, l));
  for (size_t i = 0; i < SCRIPT_LEN; i++) {
    errno = 0;
    mp_manager_t *m =
        mp_manager_connect_python(mp_listener_address(l), KEY, sizeof KEY - 1);
    int err = errno;
    mp_manager_free(m);
    if (m || err != script[i].err ||
        !strstr(mp_manager_last_error(), script[i].text))
      fail_msg("reply %zu: manager %p errno %d (%s), last error \"%s\"", i,
               (void *)m, err, strerror(err), mp_manager_last_error());
  }
  pthread_join(t, NULL);
  mp_listener_free(l);
}

#define python_test(f)                                                         \
  cmocka_unit_test_setup_teardown(f, mpt_setup, python_teardown)

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      python_test(test_python_client),
      python_test(test_python_client_killed),
      python_test(test_malformed_requests),
      python_test(test_python_server),
      python_test(test_python_server_killed),
      python_test(test_connect_errors),
      python_test(test_hostile_server),
  };
  return MPT_RUN(argc, argv, tests);
}
