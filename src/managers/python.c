/* Python's BaseManager protocol (python.h): a manager's queues for Python
 * programs, and a Python manager's queues for mproc programs.
 *
 * Items. An mproc queue holds bytes; a queue shared with Python holds the
 * pickles of its items (Python's default protocol, as mp_obj_dumps writes
 * them). A message that is not a pickle (bytes put by a plain
 * mp_queue_put) reaches Python as a bytes object. Everything read from the
 * network is loaded with limits, and nothing in it is ever imported or
 * called. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "managers/python.h"

/* Seconds: a waiting get or put checks its client this often. */
#define SLICE       0.05
#define LOAD_DEPTH  100 /* nesting a request, reply or item may have */
#define ERROR_MAX   512
#define FOREIGN_MAX ((size_t)1 << 20) /* the longest exception read */
#define CLIENT_NAME "mproc"
#define IDENT_QUEUE "queue:" /* the idents the server gives its queues */

static const mp_obj_limits_t load_limits = {.max_depth = LOAD_DEPTH};

/* ---- items and values -----------------------------------------------------
 */

static bool is_pickle(const void *buf, size_t len) {
  const unsigned char *b = buf;
  return len >= 2 && b[0] == 0x80 && b[1] >= 2 && b[1] <= 5;
}

bool mp__python_request(const void *buf, size_t len) {
  return is_pickle(buf, len);
}

/* A queue's message as a Python value: a pickle is loaded, other bytes are
 * a bytes object. */
static int item_to_obj(const void *buf, size_t len, mp_obj_t **out) {
  if (is_pickle(buf, len))
    return mp_obj_loads_limits(buf, len, &load_limits, out);
  *out = mp_obj_bytes(buf, len);
  return *out ? 0 : -ENOMEM;
}

int mp_queue_put_obj(mp_queue_t *q, const mp_obj_t *o, double timeout) {
  void *buf;
  size_t len;
  if (!q || !o)
    return MP_EINVAL;
  int rc = mp_obj_dumps(o, MP_OBJ_PROTOCOL_DEFAULT, &buf, &len);
  if (rc == 0) {
    rc = mp_queue_put(q, buf, len, timeout);
    mp_free(buf);
  }
  return rc;
}

int mp_queue_get_obj(mp_queue_t *q, mp_obj_t **out, double timeout) {
  void *buf;
  size_t len;
  if (!q || !out)
    return MP_EINVAL;
  int rc = mp_queue_get(q, &buf, &len, timeout);
  if (rc == 0) {
    rc = item_to_obj(buf, len, out);
    mp_free(buf);
  }
  return rc;
}

/* The tuple (a, b), taking both (also on failure: NULL). */
static mp_obj_t *pair(mp_obj_t *a, mp_obj_t *b) {
  mp_obj_t *t = mp_obj_tuple();
  int rc = mp_obj_append(t, a);
  int rc2 = mp_obj_append(t, b);
  if (rc == 0 && rc2 == 0)
    return t;
  mp_obj_free(t);
  return NULL;
}

static mp_obj_t *str(const char *s) {
  return mp_obj_str(s, strlen(s));
}

/* A str item of a tuple or NULL. */
static const char *str_item(const mp_obj_t *t, size_t i) {
  return mp_obj_as_str(mp_obj_item(t, i), NULL);
}

/* ---- the server: answering Python clients ---------------------------------
 */

typedef struct request {
  const char *ident; /* NULL: None, a public function of the server */
  const char *method;
  const mp_obj_t *args, *kwds;
} request_t;

static bool parse_request(const mp_obj_t *o, request_t *r) {
  if (mp_obj_kind(o) != MP_OBJ_TUPLE || mp_obj_len(o) != 4)
    return false;
  const mp_obj_t *ident = mp_obj_item(o, 0);
  r->ident = mp_obj_as_str(ident, NULL);
  r->method = str_item(o, 1);
  r->args = mp_obj_item(o, 2);
  r->kwds = mp_obj_item(o, 3);
  return (r->ident || mp_obj_kind(ident) == MP_OBJ_NONE) && r->method &&
         mp_obj_kind(r->args) == MP_OBJ_TUPLE &&
         mp_obj_kind(r->kwds) == MP_OBJ_DICT;
}

/* Argument i, or the keyword argument of that name; NULL if neither. */
static const mp_obj_t *argument(const request_t *r, size_t i,
                                const char *name) {
  if (i < mp_obj_len(r->args))
    return mp_obj_item(r->args, i);
  mp_obj_t *key = str(name);
  const mp_obj_t *v = key ? mp_obj_dict_get(r->kwds, key) : NULL;
  mp_obj_free(key);
  return v;
}

static int send_reply(mp_conn_t *conn, const char *kind, mp_obj_t *value) {
  mp_obj_t *msg = pair(str(kind), value);
  int rc = msg ? mp_conn_send(conn, msg) : -ENOMEM;
  mp_obj_free(msg);
  return rc;
}

/* ('#TRACEBACK', text): what a Python server sends when a request itself
 * fails (an unknown method, a malformed request); the client raises
 * RemoteError with the text. */
static int send_traceback(mp_conn_t *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int send_traceback(mp_conn_t *conn, const char *fmt, ...) {
  char text[ERROR_MAX];
  int at = snprintf(text, sizeof text,
                    "Traceback (most recent call last):\n"
                    "  File \"<mproc manager server>\"\n");
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text + at, sizeof text - (size_t)at - 1, fmt, ap);
  va_end(ap);
  strcat(text, "\n");
  return send_reply(conn, "#TRACEBACK", str(text));
}

static unsigned char *put_bytes(unsigned char *at, const void *p, size_t n) {
  memcpy(at, p, n);
  return at + n;
}

/* BINUNICODE: a str of utf-8 bytes. */
static unsigned char *put_str(unsigned char *at, const char *s, size_t n) {
  *at++ = 'X';
  for (int i = 0; i < 4; i++)
    *at++ = (unsigned char)(n >> (8 * i));
  return put_bytes(at, s, n);
}

/* ('#ERROR', module.name(msg)): the exception the method raised, which the
 * client raises as it is (queue.Empty for a get that found nothing). Written
 * by hand in protocol 2, as a call of the exception's class (a global),
 * which mp_obj_dumps rightly cannot write. */
static int send_exception(mp_conn_t *conn, const char *module, const char *name,
                          const char *msg) {
  size_t ml = strlen(module), nl = strlen(name), sl = msg ? strlen(msg) : 0;
  unsigned char *buf = malloc(32 + ml + nl + sl), *at = buf;
  if (!buf)
    return -ENOMEM;
  at = put_bytes(at, "\x80\x02", 2);
  at = put_str(at, "#ERROR", 6);
  *at++ = 'c'; /* GLOBAL module\nname\n */
  at = put_bytes(at, module, ml);
  *at++ = '\n';
  at = put_bytes(at, name, nl);
  *at++ = '\n';
  if (msg) {
    at = put_str(at, msg, sl);
    *at++ = 0x85; /* TUPLE1 */
  } else {
    *at++ = ')'; /* EMPTY_TUPLE */
  }
  at = put_bytes(at, "R\x86.", 3); /* REDUCE, TUPLE2, STOP */
  int rc = mp_conn_send_bytes(conn, buf, (size_t)(at - buf));
  free(buf);
  return rc;
}

/* A queue operation's error as Python's queue would raise it. */
static int send_queue_error(mp_conn_t *conn, const char *method, int rc) {
  switch (rc) {
  case MP_EEMPTY:
    return send_exception(conn, "queue", "Empty", NULL);
  case MP_EFULL:
    return send_exception(conn, "queue", "Full", NULL);
  case MP_ECLOSED:
    return send_exception(conn, "builtins", "ValueError",
                          "the mproc queue is closed");
  }
  return send_traceback(conn, "OSError: %s: %s (%s)", method, mp_strerror(rc),
                        mp_errname(rc));
}

/* The timeout of put(item, block=True, timeout=None) or get(block=True,
 * timeout=None), whose block is argument `first`: 0 for a non-blocking
 * call, MP_FOREVER for None. false for a bad argument (Python's
 * ValueError). */
static bool wait_timeout(const request_t *r, size_t first, double *timeout) {
  const mp_obj_t *block = argument(r, first, "block");
  const mp_obj_t *limit = argument(r, first + 1, "timeout");
  bool blocking = true;
  int64_t i;
  if (block && mp_obj_as_bool(block, &blocking) < 0) {
    if (mp_obj_as_int(block, &i) < 0)
      return false;
    blocking = i != 0;
  }
  *timeout = MP_FOREVER;
  if (!blocking)
    *timeout = 0;
  else if (limit && mp_obj_kind(limit) != MP_OBJ_NONE)
    return mp_obj_as_float(limit, timeout) == 0 && *timeout >= 0;
  return true;
}

typedef struct attempt {
  mp_queue_t *q;
  const void *item;
  size_t item_len;
  void *out;
  size_t out_len;
} attempt_t;

static int try_put(void *arg, double timeout) {
  attempt_t *a = arg;
  return mp_queue_put(a->q, a->item, a->item_len, timeout);
}

static int try_get(void *arg, double timeout) {
  attempt_t *a = arg;
  return mp_queue_get(a->q, &a->out, &a->out_len, timeout);
}

static const char *const exposed[] = {
    "empty", "full", "get", "get_nowait", "put", "put_nowait", "qsize"};

static int queue_put(mp_conn_t *conn, attempt_t *a, const request_t *r,
                     bool nowait) {
  const mp_obj_t *item = argument(r, 0, "item");
  double timeout = 0;
  if (!item || (!nowait && !wait_timeout(r, 1, &timeout)))
    return send_exception(conn, "builtins", "ValueError",
                          "put(item, block=True, timeout=None): bad arguments");
  void *buf;
  int rc = mp_obj_dumps(item, MP_OBJ_PROTOCOL_DEFAULT, &buf, &a->item_len);
  if (rc < 0)
    return send_queue_error(conn, r->method, rc);
  a->item = buf;
  rc = mp__manager_wait_sliced(conn, timeout, SLICE, try_put, a);
  mp_free(buf);
  if (rc == MP__CLIENT_GONE)
    return MP_ECLOSED;
  return rc == 0 ? send_reply(conn, "#RETURN", mp_obj_none())
                 : send_queue_error(conn, r->method, rc);
}

static int queue_get(mp_conn_t *conn, attempt_t *a, const request_t *r,
                     bool nowait) {
  double timeout = 0;
  if (!nowait && !wait_timeout(r, 0, &timeout))
    return send_exception(conn, "builtins", "ValueError",
                          "get(block=True, timeout=None): bad arguments");
  int rc = mp__manager_wait_sliced(conn, timeout, SLICE, try_get, a);
  if (rc == MP__CLIENT_GONE)
    return MP_ECLOSED;
  if (rc < 0)
    return send_queue_error(conn, r->method, rc);
  mp_obj_t *value = NULL;
  rc = item_to_obj(a->out, a->out_len, &value);
  if (rc < 0) /* taken, but not a value Python can have: say so */
    rc = send_traceback(conn,
                        "ValueError: the message is not a pickle of "
                        "basic values: %s",
                        mp_obj_last_error());
  else
    rc = send_reply(conn, "#RETURN", value);
  if (rc < 0 && value) /* the client is gone: nobody has the message */
    mp_queue_put(a->q, a->out, a->out_len, MP_FOREVER);
  mp_free(a->out);
  return rc;
}

static bool is(const char *method, const char *name) {
  return strcmp(method, name) == 0;
}

static const char *queue_name(const char *ident) {
  size_t n = strlen(IDENT_QUEUE);
  return ident && strncmp(ident, IDENT_QUEUE, n) == 0 ? ident + n : NULL;
}

/* A method call on a queue (a proxy's _callmethod). */
static int call_method(mp__family_manager_t *m, mp_conn_t *conn,
                       const request_t *r) {
  const char *name = queue_name(r->ident);
  attempt_t a = {.q = name ? mp__manager_open(m, MP__REMOTE_QUEUE, name, 0)
                           : NULL};
  const char *method = r->method;
  if (!a.q)
    return send_traceback(conn, "KeyError: %s", r->ident);
  if (is(method, "put") || is(method, "put_nowait"))
    return queue_put(conn, &a, r, method[3] != 0);
  if (is(method, "get") || is(method, "get_nowait"))
    return queue_get(conn, &a, r, method[3] != 0);
  if (is(method, "qsize"))
    return send_reply(conn, "#RETURN",
                      mp_obj_int((int64_t)mp_queue_qsize(a.q)));
  if (is(method, "empty") || is(method, "full"))
    return send_reply(conn, "#RETURN",
                      mp_obj_bool(method[0] == 'e' ? mp_queue_empty(a.q)
                                                   : mp_queue_full(a.q)));
  if (is(method, "__repr__") || is(method, "__str__")) {
    char text[MP__MANAGER_NAME_MAX + 32];
    snprintf(text, sizeof text, "<mproc queue '%s'>", name);
    return send_reply(conn, "#RETURN", str(text));
  }
  char names[128] = "";
  for (size_t i = 0; i < sizeof exposed / sizeof exposed[0]; i++)
    snprintf(names + strlen(names), sizeof names - strlen(names), "%s'%s'",
             i ? ", " : "", exposed[i]);
  return send_traceback(conn,
                        "AttributeError: method '%.100s' of mproc queue "
                        "'%s' is not in exposed=(%s)",
                        method, name, names);
}

/* create(typeid): the typeid "get_<name>" (or any other, as the name)
 * gives the queue <name>, made on first use. */
static int create(mp__family_manager_t *m, mp_conn_t *conn,
                  const request_t *r) {
  const char *typeid = str_item(r->args, 0);
  if (!typeid)
    return send_traceback(conn, "TypeError: create() needs a typeid");
  const char *name = strncmp(typeid, "get_", 4) == 0 ? typeid + 4 : typeid;
  if (!*name || !mp__manager_open(m, MP__REMOTE_QUEUE, name, 0))
    return send_traceback(conn, "KeyError: '%.200s': no such queue", typeid);
  char ident[MP__MANAGER_NAME_MAX + sizeof IDENT_QUEUE];
  snprintf(ident, sizeof ident, "%s%s", IDENT_QUEUE, name);
  mp_obj_t *names = mp_obj_tuple();
  for (size_t i = 0; i < sizeof exposed / sizeof exposed[0]; i++)
    mp_obj_append(names, str(exposed[i]));
  return send_reply(conn, "#RETURN", pair(str(ident), names));
}

/* The server's public functions (Server.public). The references incref
 * and decref count are not kept: a named queue lives as long as the
 * manager. */
static int call_public(mp__family_manager_t *m, mp_conn_t *conn,
                       const request_t *r) {
  if (is(r->method, "create"))
    return create(m, conn, r);
  if (is(r->method, "shutdown")) {
    atomic_store(&m->stop, 1);
    send_reply(conn, "#RETURN", mp_obj_none());
    return MP_ECLOSED; /* no more requests */
  }
  if (is(r->method, "dummy") || is(r->method, "accept_connection") ||
      is(r->method, "incref") || is(r->method, "decref"))
    return send_reply(conn, "#RETURN", mp_obj_none());
  if (is(r->method, "number_of_objects"))
    return send_reply(conn, "#RETURN", mp_obj_int(0));
  return send_traceback(conn, "AssertionError: '%.100s' unrecognized",
                        r->method);
}

bool mp__python_answer(mp__family_manager_t *m, mp_conn_t *conn,
                       const void *buf, size_t len) {
  mp_obj_t *o = NULL;
  request_t r;
  int rc = mp_obj_loads_limits(buf, len, &load_limits, &o);
  if (rc < 0)
    rc = send_traceback(conn, "UnpicklingError: refused by mproc: %s",
                        mp_obj_last_error());
  else if (!parse_request(o, &r))
    rc = send_traceback(conn, "ValueError: not a request (ident, "
                              "methodname, args, kwds)");
  else if (r.ident)
    rc = call_method(m, conn, &r);
  else
    rc = call_public(m, conn, &r);
  mp_obj_free(o);
  return rc == 0;
}

/* ---- the client: a foreign view of a reply --------------------------------
 * A '#ERROR' reply carries an exception: a call of its class (a global)
 * with its args, maybe followed by its state. mp_obj_loads refuses every
 * such global, as it should. To read which exception it is, the pickle is
 * first rewritten so that each opcode that would build an object builds a
 * tuple instead: a global becomes (module, name), REDUCE and NEWOBJ
 * (callable, args), NEWOBJ_EX (class, args, kwargs), BUILD (object,
 * state). What remains is a pickle of basic values, which mp_obj_loads
 * reads under its usual limits: nothing is imported or called. */

static uint64_t read_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}

/* The length of opcode op's argument at p (before end); -EPROTO for an
 * unknown opcode or one cut short. */
static int argument_length(unsigned char op, const unsigned char *p,
                           const unsigned char *end, size_t *n) {
  size_t avail = (size_t)(end - p), width = 0, lines = 0;
  *n = 0;
  if (op == 0) /* not an opcode (and strchr would find the NUL) */
    return -EPROTO;
  if (strchr("(.012NQRabdelostu)]}", op) || (op >= 0x85 && op <= 0x89) ||
      (op >= 0x8f && op <= 0x94) || op == 0x81 || op == 0x97 || op == 0x98)
    return 0;
  if (strchr("Khq", op) || op == 0x80 || op == 0x82)
    *n = 1;
  else if (op == 'M' || op == 0x83)
    *n = 2;
  else if (strchr("Jjr", op) || op == 0x84)
    *n = 4;
  else if (op == 'G' || op == 0x95)
    *n = 8;
  else if (strchr("UC", op) || op == 0x8c || op == 0x8a)
    width = 1;
  else if (strchr("TBX", op) || op == 0x8b)
    width = 4;
  else if (op == 0x8d || op == 0x8e || op == 0x96)
    width = 8;
  else if (strchr("ILFSVPpg", op))
    lines = 1;
  else if (op == 'c' || op == 'i')
    lines = 2;
  else
    return -EPROTO;
  if (width) {
    if (avail < width || read_le(p, (int)width) > avail - width)
      return -EPROTO;
    *n = width + (size_t)read_le(p, (int)width);
  }
  for (size_t i = 0; i < lines; i++) {
    const unsigned char *nl = memchr(p + *n, '\n', avail - *n);
    if (!nl)
      return -EPROTO;
    *n = (size_t)(nl - p) + 1;
  }
  return *n <= avail ? 0 : -EPROTO;
}

static int foreign_loads(const void *buf, size_t len, mp_obj_t **out) {
  /* A GLOBAL of k >= 3 bytes becomes at most k + 8 bytes: 4x is room. */
  unsigned char *copy = malloc(4 * len + 16), *o = copy;
  const unsigned char *p = buf, *end = p + len;
  if (!copy)
    return -ENOMEM;
  int rc = 0;
  while (rc == 0 && p < end) {
    unsigned char op = *p++;
    size_t n;
    if ((rc = argument_length(op, p, end, &n)) < 0)
      break;
    if (op == 'c') { /* GLOBAL module\nname\n */
      const unsigned char *nl = memchr(p, '\n', n);
      o = put_str(o, (const char *)p, (size_t)(nl - p));
      o = put_str(o, (const char *)nl + 1, (size_t)(p + n - nl - 2));
      *o++ = 0x86;
    } else if (op == 0x93 || op == 'R' || op == 0x81 || op == 'b') {
      *o++ = 0x86; /* STACK_GLOBAL, REDUCE, NEWOBJ, BUILD: TUPLE2 */
    } else if (op == 0x92) {
      *o++ = 0x87;           /* NEWOBJ_EX: TUPLE3 */
    } else if (op != 0x95) { /* FRAME, a hint, is dropped */
      *o++ = op;
      o = put_bytes(o, p, n);
    }
    p += n;
    if (op == '.')
      break;
  }
  if (rc == 0)
    rc = mp_obj_loads_limits(copy, (size_t)(o - copy), &load_limits, out);
  free(copy);
  return rc;
}

/* ---- the client: errors ---------------------------------------------------
 */

static _Thread_local char last_error[ERROR_MAX] = "no error";

const char *mp_manager_last_error(void) {
  return last_error;
}

static int set_error(int rc, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int set_error(int rc, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return rc;
}

/* Python exceptions with a code of their own; the others: -EREMOTEIO. */
static const struct {
  const char *name;
  int code;
} exception_codes[] = {
    {"Empty", MP_EEMPTY},     {"Full", MP_EFULL},
    {"KeyError", MP_EKEY},    {"IndexError", MP_EINDEX},
    {"EOFError", MP_ECLOSED}, {"TimeoutError", MP_ETIMEDOUT},
};

/* The code of an exception in its foreign view: ((module, name), args),
 * maybe inside (that, state). Sets the last error to "name: message". */
static int exception_code(const mp_obj_t *e) {
  const mp_obj_t *cls = NULL, *args = NULL;
  for (int depth = 0; depth < 3 && !cls && mp_obj_len(e) >= 2; depth++) {
    const mp_obj_t *first = mp_obj_item(e, 0);
    if (mp_obj_len(first) == 2 && str_item(first, 0) && str_item(first, 1)) {
      cls = first;
      args = mp_obj_item(e, 1);
    }
    e = first;
  }
  if (!cls)
    return set_error(-EREMOTEIO, "an exception mproc cannot read");
  const char *name = str_item(cls, 1), *msg = str_item(args, 0);
  set_error(0, "%s.%s%s%s", str_item(cls, 0), name, msg ? ": " : "",
            msg ? msg : "");
  for (size_t i = 0; i < sizeof exception_codes / sizeof exception_codes[0];
       i++)
    if (strcmp(name, exception_codes[i].name) == 0)
      return exception_codes[i].code;
  return -EREMOTEIO;
}

/* The last line of a traceback that says something. */
static int traceback_error(const char *kind, const char *text) {
  size_t len = strlen(text);
  while (len && (text[len - 1] == '\n' || text[len - 1] == ' '))
    len--;
  size_t start = len;
  while (start && text[start - 1] != '\n')
    start--;
  return set_error(-EREMOTEIO, "RemoteError (%s): %.*s", kind,
                   (int)(len - start), text + start);
}

/* Reads a reply: ('#RETURN', value) gives 0 and the pair in *reply; the
 * others their error. */
static int read_reply(const void *buf, size_t len, mp_obj_t **reply) {
  mp_obj_t *o = NULL;
  int rc = mp_obj_loads_limits(buf, len, &load_limits, &o);
  bool foreign =
      rc == -EPROTO && len <= FOREIGN_MAX && foreign_loads(buf, len, &o) == 0;
  if (rc < 0 && !foreign)
    return set_error(rc, "unreadable reply: %s", mp_obj_last_error());
  const char *kind = str_item(o, 0);
  const mp_obj_t *value = mp_obj_item(o, 1);
  if (!kind || mp_obj_len(o) != 2)
    rc = set_error(-EPROTO, "not a reply of a Python manager");
  else if (strcmp(kind, "#RETURN") == 0 && !foreign)
    rc = 0;
  else if (strcmp(kind, "#ERROR") == 0)
    rc = exception_code(value);
  else if (mp_obj_as_str(value, NULL))
    rc = traceback_error(kind, mp_obj_as_str(value, NULL));
  else
    rc = set_error(-EPROTO,
                   "a %s reply mproc cannot read (not basic "
                   "values)",
                   kind);
  if (rc == 0)
    *reply = o;
  else
    mp_obj_free(o);
  return rc;
}

/* ---- the client: calls ----------------------------------------------------
 */

struct mp__pyclient {
  pthread_mutex_t lock; /* the calls of the threads take turns */
  mp_conn_t *conn;      /* the proxies' connection, made on first call */
  bool broken;          /* it broke: the server is gone for good */
  char **idents;        /* of the objects opened: mp__remote_t id - 1 */
  size_t n_idents;
  size_t key_len;
  unsigned char key[MP__MANAGER_KEY_MAX];
  char address[MP__MANAGER_ADDRESS_MAX];
};

/* Sends (ident, method, args, {}) on conn (args taken) and reads the
 * reply. A broken connection is MP_ECLOSED, with *broken set. */
static int call_on(mp_conn_t *conn, const char *ident, const char *method,
                   mp_obj_t *args, mp_obj_t **reply, bool *broken) {
  mp_obj_t *req = mp_obj_tuple();
  mp_obj_append(req, ident ? str(ident) : mp_obj_none());
  mp_obj_append(req, str(method));
  mp_obj_append(req, args);
  int rc = mp_obj_append(req, mp_obj_dict());
  if (rc < 0 || mp_obj_len(req) != 4) {
    mp_obj_free(req);
    return set_error(-ENOMEM, "out of memory");
  }
  void *buf = NULL;
  size_t len;
  rc = mp_conn_send(conn, req);
  mp_obj_free(req);
  if (rc == 0)
    rc = mp_conn_recv_bytes(conn, &buf, &len);
  if (rc < 0) {
    *broken = true;
    return set_error(MP_ECLOSED, "the Python manager is out of reach (%s)",
                     mp_strerror(rc));
  }
  rc = read_reply(buf, len, reply);
  mp_free(buf);
  return rc;
}

/* A connection to the server; a failure is the server out of reach. */
static int open_conn(mp__pyclient_t *pc, mp_conn_t **conn) {
  int rc = mp_client(pc->address, pc->key, pc->key_len, conn);
  return rc < 0 ? set_error(rc, "cannot connect to the Python manager: %s",
                            mp_strerror(rc))
                : 0;
}

/* args: a tuple of the n items given (taken); NULL on failure. */
static mp_obj_t *tuple_of(int n, ...) {
  mp_obj_t *t = mp_obj_tuple();
  int rc = t ? 0 : -ENOMEM;
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++)
    if (mp_obj_append(t, va_arg(ap, mp_obj_t *)) < 0)
      rc = -ENOMEM;
  va_end(ap);
  if (rc == 0)
    return t;
  mp_obj_free(t);
  return NULL;
}

/* A public function on a connection of its own, as Python's server wants:
 * it answers one and closes. reply may be NULL. */
static int call_once(mp__pyclient_t *pc, const char *method, mp_obj_t *args,
                     mp_obj_t **reply) {
  mp_conn_t *conn;
  bool broken = false;
  mp_obj_t *ignored = NULL;
  int rc = open_conn(pc, &conn);
  if (rc == 0) {
    rc = call_on(conn, NULL, method, args, reply ? reply : &ignored, &broken);
    mp_conn_free(conn);
  } else {
    mp_obj_free(args);
  }
  mp_obj_free(ignored);
  return rc;
}

mp__pyclient_t *mp__pyclient_connect(const char *address, const void *key,
                                     size_t key_len) {
  mp__pyclient_t *pc = calloc(1, sizeof *pc);
  if (!pc)
    return NULL;
  snprintf(pc->address, sizeof pc->address, "%s", address);
  memcpy(pc->key, key, key_len);
  pc->key_len = key_len;
  int rc = call_once(pc, "dummy", mp_obj_tuple(), NULL);
  if (rc < 0) {
    free(pc);
    errno = mp__manager_errno(rc);
    return NULL;
  }
  pthread_mutex_init(&pc->lock, NULL);
  return pc;
}

int mp__pyclient_open(mp__pyclient_t *pc, uint32_t kind, const char *typeid,
                      int64_t *id) {
  if (kind != MP__REMOTE_QUEUE)
    return set_error(-ENOTSUP, "only queues are shared with Python managers");
  mp_obj_t *reply = NULL;
  int rc = call_once(pc, "create", tuple_of(1, str(typeid)), &reply);
  const char *ident = rc == 0 ? str_item(mp_obj_item(reply, 1), 0) : NULL;
  if (rc == 0 && !ident)
    rc = set_error(-EPROTO, "create() gave no ident");
  char *copy = ident ? strdup(ident) : NULL;
  mp_obj_free(reply);
  if (rc < 0)
    return rc;
  pthread_mutex_lock(&pc->lock);
  char **more =
      copy ? realloc(pc->idents, (pc->n_idents + 1) * sizeof *more) : NULL;
  if (more) {
    pc->idents = more;
    pc->idents[pc->n_idents++] = copy;
    *id = (int64_t)pc->n_idents;
  }
  pthread_mutex_unlock(&pc->lock);
  if (more)
    return 0;
  free(copy);
  return -ENOMEM;
}

/* The proxies' connection: accept_connection makes the server serve
 * method calls on it (lock held). */
static int proxy_conn(mp__pyclient_t *pc) {
  mp_obj_t *reply = NULL;
  if (pc->conn)
    return 0;
  int rc = open_conn(pc, &pc->conn);
  if (rc == 0)
    rc = call_on(pc->conn, NULL, "accept_connection",
                 tuple_of(1, str(CLIENT_NAME)), &reply, &pc->broken);
  mp_obj_free(reply);
  return rc;
}

/* A method call on an object (lock held). A connection that broke stays
 * broken: MP_ECLOSED from then on, as for mproc's own proxies. */
static int call_method_locked(mp__pyclient_t *pc, uint64_t id,
                              const char *method, mp_obj_t *args,
                              mp_obj_t **reply) {
  int rc = pc->broken ? set_error(MP_ECLOSED, "the Python manager is gone")
                      : proxy_conn(pc);
  if (rc == 0 && (id == 0 || id > pc->n_idents))
    rc = MP_EINVAL;
  if (rc == 0)
    return call_on(pc->conn, pc->idents[id - 1], method, args, reply,
                   &pc->broken);
  mp_obj_free(args);
  if (rc != MP_EINVAL) /* no connection: the server is out of reach */
    pc->broken = true;
  return rc != MP_EINVAL ? MP_ECLOSED : rc;
}

/* The arguments (block, timeout) of Python's Queue.get and put after
 * `first` (taken): (False,) for 0, () for MP_FOREVER. */
static mp_obj_t *wait_args(mp_obj_t *first, double timeout) {
  mp_obj_t *args = tuple_of(first ? 1 : 0, first);
  if (args && timeout == 0) {
    mp_obj_append(args, mp_obj_bool(false));
  } else if (args && timeout > 0) {
    mp_obj_append(args, mp_obj_bool(true));
    mp_obj_append(args, mp_obj_float(timeout));
  }
  return args;
}

static int py_put(mp__pyclient_t *pc, const mp__remote_req_t *req) {
  mp_obj_t *item = NULL, *reply = NULL;
  int rc = item_to_obj(req->a, req->alen, &item);
  if (rc < 0)
    return set_error(rc, "not a pickle of basic values: %s",
                     mp_obj_last_error());
  rc = call_method_locked(pc, req->id, "put", wait_args(item, req->timeout),
                          &reply);
  mp_obj_free(reply);
  return rc;
}

/* get, and get_into (req->m: at most req->n bytes, else MP_EOVERFLOW with
 * the size in rep->n; the message goes back to the end of the queue, as
 * Python's queue cannot leave it at the front). */
static int py_get(mp__pyclient_t *pc, const mp__remote_req_t *req,
                  mp__remote_reply_t *rep) {
  mp_obj_t *reply = NULL;
  int rc = call_method_locked(pc, req->id, "get", wait_args(NULL, req->timeout),
                              &reply);
  if (rc == 0)
    rc = mp_obj_dumps(mp_obj_item(reply, 1), MP_OBJ_PROTOCOL_DEFAULT, &rep->out,
                      &rep->out_len);
  if (rc == 0 && req->m && rep->out_len > (size_t)req->n) {
    mp_obj_t *back = NULL, *again = NULL;
    rc = item_to_obj(rep->out, rep->out_len, &again);
    if (rc == 0)
      rc = call_method_locked(pc, req->id, "put", tuple_of(1, again), &back);
    rep->n = (int64_t)rep->out_len;
    mp_free(rep->out);
    rep->out = NULL;
    rep->out_len = 0;
    rc = rc < 0 ? rc : MP_EOVERFLOW;
    mp_obj_free(back);
  }
  mp_obj_free(reply);
  return rc;
}

int mp__pyclient_call(mp__pyclient_t *pc, const mp__remote_req_t *req,
                      mp__remote_reply_t *rep) {
  mp_obj_t *reply = NULL;
  int64_t n = 0;
  int rc;
  pthread_mutex_lock(&pc->lock);
  switch (req->op) {
  case MP__OP_QUEUE_PUT:
    rc = py_put(pc, req);
    break;
  case MP__OP_QUEUE_GET:
    rc = py_get(pc, req, rep);
    break;
  case MP__OP_QUEUE_QSIZE:
  case MP__OP_QUEUE_FULL:
    rc = call_method_locked(pc, req->id,
                            req->op == MP__OP_QUEUE_FULL ? "full" : "qsize",
                            mp_obj_tuple(), &reply);
    if (rc == 0 && mp_obj_as_int(mp_obj_item(reply, 1), &n) < 0)
      rc = set_error(-EPROTO, "qsize() or full() gave no int");
    rep->n = n;
    break;
  default: /* close: Python's queue.Queue has no such thing */
    rc = set_error(-ENOTSUP, "not supported by a Python manager's queue");
  }
  pthread_mutex_unlock(&pc->lock);
  mp_obj_free(reply);
  return rc;
}

/* Calls after it are MP_ECLOSED (the server may still answer them for a
 * moment, on connections it has: not counted on). */
int mp__pyclient_shutdown(mp__pyclient_t *pc) {
  pthread_mutex_lock(&pc->lock);
  int rc =
      pc->broken ? MP_ECLOSED : call_once(pc, "shutdown", mp_obj_tuple(), NULL);
  pc->broken = true;
  pthread_mutex_unlock(&pc->lock);
  return rc;
}

void mp__pyclient_free(mp__pyclient_t *pc) {
  if (!pc)
    return;
  /* create() counted a reference for each object opened: give them back
   * (a server already gone just refuses). */
  for (size_t i = 0; i < pc->n_idents; i++) {
    if (!pc->broken)
      call_once(pc, "decref", tuple_of(1, str(pc->idents[i])), NULL);
    free(pc->idents[i]);
  }
  free(pc->idents);
  mp_conn_free(pc->conn);
  pthread_mutex_destroy(&pc->lock);
  free(pc);
}
