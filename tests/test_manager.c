/* Managers: the family handle (shared-memory objects, also in children
 * under each start method), connected handles whose proxies take the same
 * calls, over unix: and tcp:, wrong keys, and failures: a server killed, a
 * client killed in the middle of a call or while its get waits. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "sync_fixtures.h"

static const char KEY[] = "manager test key";

static mp_manager_t *new_manager(const char *address) {
  mp_manager_t *m = mp_manager_new(address, KEY, sizeof KEY - 1);
  assert_non_null(m);
  return m;
}

static mp_manager_t *connect_to(mp_manager_t *m) {
  mp_manager_t *c =
      mp_manager_connect(mp_manager_address(m), KEY, sizeof KEY - 1);
  assert_non_null(c);
  return c;
}

static void expect_bytes(const void *buf, size_t len, const char *want) {
  assert_int_equal(strlen(want), len);
  assert_memory_equal(want, buf, len);
}

static void expect_get(mp_dict_t *d, const char *key, const char *want) {
  void *val;
  size_t len;
  assert_mp_ok(mp_dict_get(d, key, strlen(key), &val, &len));
  expect_bytes(val, len, want);
  mp_free(val);
}

/* ---- the family handle -----------------------------------------------------
 */

struct family_args {
  mp_manager_t *m;
  int id;
};

static void family_child(void *arg) {
  struct family_args *a = arg;
  mp_dict_t *d = mp_manager_dict(a->m, "shared");
  mp_queue_t *q = mp_manager_queue(a->m, "jobs", 0);
  char key[16];
  int kl = snprintf(key, sizeof key, "child-%d", a->id);
  if (!d || !q || mp_dict_set(d, key, (size_t)kl, "here", 4) != 0 ||
      mp_queue_put(q, key, (size_t)kl, MP_FOREVER) != 0)
    _exit(2);
}

static void test_family_handles(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  assert_non_null(mp_manager_address(m));
  mp_dict_t *d = mp_manager_dict(m, "shared");
  assert_non_null(d);
  assert_ptr_equal(d, mp_manager_dict(m, "shared")); /* the same object */
  assert_ptr_not_equal((void *)d, (void *)mp_manager_list(m, "shared"));
  mp_process_t *p[2];
  for (int i = 0; i < 2; i++) {
    struct family_args a = {m, i};
    p[i] = start_child(family_child, &a, sizeof a);
  }
  for (int i = 0; i < 2; i++)
    assert_int_equal(0, finish_child(p[i]));
  expect_get(d, "child-0", "here");
  expect_get(d, "child-1", "here");
  assert_int_equal(2, mp_queue_qsize(mp_manager_queue(m, "jobs", 0)));
  assert_null(mp_manager_dict(m, NULL));
  assert_mp_ok(mp_manager_shutdown(m));
  assert_mp(MP_ECLOSED, mp_manager_shutdown(m));
  expect_get(d, "child-0", "here"); /* usable until free */
  mp_manager_free(m);
}

/* A process that exits without freeing its manager does not wait for the
 * server forever: the server is a daemon, ended at the exit. */
static void forgetful_child(void *arg) {
  (void)arg;
  mp_manager_t *m = mp_manager_new(NULL, KEY, sizeof KEY - 1);
  if (!m || !mp_manager_dict(m, "d"))
    _exit(2);
}

static void test_exit_without_free(void **state) {
  (void)state;
  mp_process_t *p = start_child(forgetful_child, NULL, 0);
  assert_int_equal(0, finish_child(p));
}

/* ---- proxies
 * ------------------------------------------------------------------ */

static int append_x(const void *old, size_t old_len, bool found,
                    const void **new_val, size_t *new_len, void *arg) {
  char *buf = arg;
  size_t len = found ? old_len : 0;
  if (len > 30)
    return MP_EOVERFLOW;
  if (len)
    memcpy(buf, old, len);
  buf[len] = 'x';
  *new_val = buf;
  *new_len = len + 1;
  return MP_DICT_STORE;
}

static void proxy_dict_calls(mp_dict_t *d, mp_dict_t *local) {
  void *val;
  size_t len;
  char small[4];
  assert_mp_ok(mp_dict_set(d, "a", 1, "one", 3));
  expect_get(local, "a", "one"); /* the server's own object */
  expect_get(d, "a", "one");
  assert_mp(MP_EKEY, mp_dict_get(d, "zz", 2, &val, &len));
  assert_mp_ok(mp_dict_get_into(d, "a", 1, small, sizeof small, &len));
  expect_bytes(small, len, "one");
  assert_mp_ok(mp_dict_set(d, "big", 3, "123456789", 9));
  assert_mp(MP_EOVERFLOW,
            mp_dict_get_into(d, "big", 3, small, sizeof small, &len));
  assert_int_equal(9, len);
  assert_int_equal(1, mp_dict_contains(d, "a", 1));
  assert_int_equal(0, mp_dict_contains(d, "b", 1));
  size_t n;
  assert_mp_ok(mp_dict_len(d, &n));
  assert_int_equal(2, n);
  assert_int_equal(1, mp_dict_setdefault(d, "s", 1, "dflt", 4, &val, &len));
  expect_bytes(val, len, "dflt");
  mp_free(val);
  assert_int_equal(0, mp_dict_setdefault(d, "s", 1, "other", 5, NULL, NULL));
  assert_mp_ok(mp_dict_pop(d, "s", 1, &val, &len));
  expect_bytes(val, len, "dflt");
  mp_free(val);
  assert_mp(MP_EKEY, mp_dict_del(d, "s", 1));
  assert_mp_ok(mp_dict_del(d, "big", 3));
  mp_dict_item_t in[] = {{"k1", 2, "v1", 2}, {"k2", 2, "", 0}};
  assert_mp_ok(mp_dict_update(d, in, 2));
  mp_dict_item_t *items;
  assert_mp_ok(mp_dict_items(d, &items, &n));
  assert_int_equal(3, n);
  for (size_t i = 0; i < n; i++)
    if (items[i].klen == 2 && memcmp(items[i].key, "k1", 2) == 0)
      expect_bytes(items[i].val, items[i].vlen, "v1");
  mp_free(items);
  assert_mp_ok(mp_dict_keys(d, &items, &n));
  assert_int_equal(3, n);
  assert_null(items[0].val);
  mp_free(items);
  char scratch[32];
  for (int i = 0; i < 3; i++)
    assert_mp_ok(mp_dict_modify(d, "m", 1, append_x, scratch));
  expect_get(local, "m", "xxx");
  assert_mp_ok(mp_dict_clear(d));
  assert_mp_ok(mp_dict_len(d, &n));
  assert_int_equal(0, n);
}

static void proxy_list_calls(mp_list_t *l) {
  void *buf;
  size_t len, n;
  assert_mp_ok(mp_list_append(l, "b", 1));
  assert_mp_ok(mp_list_insert(l, 0, "a", 1));
  mp_list_item_t more[] = {{"c", 1}, {"d", 1}};
  assert_mp_ok(mp_list_extend(l, more, 2));
  assert_mp_ok(mp_list_len(l, &n));
  assert_int_equal(4, n);
  assert_mp_ok(mp_list_get(l, -1, &buf, &len));
  expect_bytes(buf, len, "d");
  mp_free(buf);
  assert_mp(MP_EINDEX, mp_list_get(l, 9, &buf, &len));
  assert_mp_ok(mp_list_set(l, 1, "B", 1));
  mp_list_item_t *items;
  assert_mp_ok(mp_list_slice(l, 1, LONG_MAX, &items, &n));
  assert_int_equal(3, n);
  expect_bytes(items[0].buf, items[0].len, "B");
  expect_bytes(items[2].buf, items[2].len, "d");
  mp_free(items);
  assert_mp_ok(mp_list_pop(l, 0, &buf, &len));
  expect_bytes(buf, len, "a");
  mp_free(buf);
  assert_mp_ok(mp_list_pop(l, -1, NULL, NULL));
  assert_mp_ok(mp_list_clear(l));
  assert_mp(MP_EINDEX, mp_list_pop(l, -1, &buf, &len));
}

static void proxy_queue_calls(mp_queue_t *q) {
  void *buf;
  size_t len;
  char small[4];
  assert_true(mp_queue_empty(q));
  assert_mp_ok(mp_queue_put(q, "first", 5, MP_FOREVER));
  assert_mp_ok(mp_queue_put(q, "2nd", 3, 0));
  assert_true(mp_queue_full(q)); /* maxsize 2 */
  assert_mp(MP_EFULL, mp_queue_put(q, "3rd", 3, 0));
  assert_mp(MP_EFULL, mp_queue_put(q, "3rd", 3, 0.05));
  assert_int_equal(2, mp_queue_qsize(q));
  /* Too large for the buffer: it stays in the queue. */
  assert_mp(MP_EOVERFLOW, mp_queue_get_into(q, small, sizeof small, &len, 0));
  assert_int_equal(5, len);
  assert_mp_ok(mp_queue_get(q, &buf, &len, 0));
  expect_bytes(buf, len, "first");
  mp_free(buf);
  assert_mp_ok(mp_queue_get_into(q, small, sizeof small, &len, MP_FOREVER));
  expect_bytes(small, len, "2nd");
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &len, 0));
  assert_mp(MP_EEMPTY, mp_queue_get(q, &buf, &len, 0.08));
}

static void run_proxies(const char *address) {
  mp_manager_t *m = new_manager(address);
  mp_manager_t *c = connect_to(m);
  mp_dict_t *d = mp_manager_dict(c, "d");
  mp_list_t *l = mp_manager_list(c, "l");
  mp_queue_t *q = mp_manager_queue(c, "q", 2);
  assert_non_null(d);
  assert_non_null(l);
  assert_non_null(q);
  proxy_dict_calls(d, mp_manager_dict(m, "d"));
  proxy_list_calls(l);
  proxy_queue_calls(q);
  /* A remote queue is closed for everyone. */
  assert_mp_ok(mp_queue_close(q));
  assert_mp(MP_ECLOSED, mp_queue_put(mp_manager_queue(m, "q", 0), "x", 1, 0));
  mp_dict_free(d);
  mp_list_free(l);
  mp_queue_free(q);
  mp_manager_free(c);
  mp_manager_free(m);
}

static void test_proxies_unix(void **state) {
  (void)state;
  run_proxies(NULL);
}

static void test_proxies_tcp(void **state) {
  (void)state;
  run_proxies("tcp:127.0.0.1:0");
}

static void test_wrong_key(void **state) {
  (void)state;
  mp_manager_t *m = new_manager("tcp:127.0.0.1:0");
  assert_non_null(strstr(mp_manager_address(m), "tcp:127.0.0.1:"));
  errno = 0;
  assert_null(mp_manager_connect(mp_manager_address(m), "wrong", 5));
  assert_int_equal(EACCES, errno);
  assert_null(mp_manager_connect("tcp:127.0.0.1:1", KEY, sizeof KEY - 1));
  assert_null(mp_manager_connect(NULL, KEY, sizeof KEY - 1));
  /* Bad handles. */
  assert_null(mp_manager_dict(NULL, "x"));
  assert_mp(MP_EINVAL, mp_manager_shutdown(NULL));
  mp_manager_free(NULL);
  mp_manager_free(m);
}

/* Shut down by a client: the other clients' calls fail, never hang. */
static void test_shutdown_by_client(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_manager_t *a = connect_to(m), *b = connect_to(m);
  mp_dict_t *d = mp_manager_dict(b, "d");
  assert_mp_ok(mp_dict_set(d, "k", 1, "v", 1));
  assert_mp_ok(mp_manager_shutdown(a));
  void *val;
  size_t len;
  assert_mp(MP_ECLOSED, mp_dict_get(d, "k", 1, &val, &len));
  assert_mp(MP_ECLOSED, mp_dict_set(d, "k", 1, "w", 1));
  mp_dict_free(d);
  mp_manager_free(a);
  mp_manager_free(b);
  mp_manager_free(m);
}

/* ---- failures
 * ------------------------------------------------------------------ */

/* The server killed: every proxy call returns MP_ECLOSED at once. */
static void test_server_killed(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_manager_t *c = connect_to(m);
  mp_queue_t *q = mp_manager_queue(c, "q", 0);
  mp_dict_t *d = mp_manager_dict(c, "d");
  assert_mp_ok(mp_dict_set(d, "k", 1, "v", 1));
  mp_process_t *server[4];
  assert_int_equal(1, mp_active_children(server, 4));
  assert_mp_ok(mp_process_kill(server[0]));
  assert_mp_ok(mp_process_join(server[0], JOIN_TIMEOUT));
  void *val;
  size_t len;
  assert_mp(MP_ECLOSED, mp_queue_get(q, &val, &len, MP_FOREVER));
  assert_mp(MP_ECLOSED, mp_dict_get(d, "k", 1, &val, &len));
  assert_mp(MP_ECLOSED, mp_queue_put(q, "x", 1, MP_FOREVER));
  assert_null(mp_manager_list(c, "l"));
  assert_mp(MP_ECLOSED, mp_manager_shutdown(c));
  mp_queue_free(q);
  mp_dict_free(d);
  mp_manager_free(c);
  mp_manager_free(m);
}

struct client_args {
  char address[256];
  _Atomic int *started;
};

/* Connects and gets from "q" forever (killed while it waits). */
static void blocked_getter(void *arg) {
  struct client_args *a = arg;
  mp_manager_t *c = mp_manager_connect(a->address, KEY, sizeof KEY - 1);
  mp_queue_t *q = c ? mp_manager_queue(c, "q", 0) : NULL;
  if (!q)
    _exit(2);
  atomic_store(a->started, 1);
  void *buf;
  size_t len;
  mp_queue_get(q, &buf, &len, MP_FOREVER);
  _exit(3);
}

/* Sets keys as fast as it can (killed in the middle of calls). */
static void busy_setter(void *arg) {
  struct client_args *a = arg;
  mp_manager_t *c = mp_manager_connect(a->address, KEY, sizeof KEY - 1);
  mp_dict_t *d = c ? mp_manager_dict(c, "d") : NULL;
  if (!d)
    _exit(2);
  atomic_store(a->started, 1);
  for (unsigned i = 0;; i++)
    mp_dict_set(d, &i, sizeof i, "value", 5);
}

static bool flag_set(void *arg) {
  return atomic_load((_Atomic int *)arg) != 0;
}

static void test_clients_killed(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  struct client_args a = {{0}, shared(64)};
  snprintf(a.address, sizeof a.address, "%s", mp_manager_address(m));
  /* Killed while their gets wait in the server. */
  for (int i = 0; i < 3; i++) {
    atomic_store(a.started, 0);
    mp_process_t *p = start_child(blocked_getter, &a, sizeof a);
    assert_true(poll_until(flag_set, (void *)a.started));
    sleep_us(20000); /* provoke: let its get reach the server */
    assert_int_equal(-SIGKILL, kill_child(p));
  }
  /* Killed while setting, again and again. */
  for (int i = 0; i < 3; i++) {
    atomic_store(a.started, 0);
    mp_process_t *p = start_child(busy_setter, &a, sizeof a);
    assert_true(poll_until(flag_set, (void *)a.started));
    sleep_us(5000);
    assert_int_equal(-SIGKILL, kill_child(p));
  }
  /* The server goes on, and no dead getter swallows a message. */
  mp_manager_t *c = connect_to(m);
  mp_queue_t *q = mp_manager_queue(c, "q", 0);
  mp_dict_t *d = mp_manager_dict(c, "d");
  for (int i = 0; i < 5; i++)
    assert_mp_ok(mp_queue_put(q, "msg", 3, 0));
  for (int i = 0; i < 5; i++) {
    void *buf;
    size_t len;
    assert_mp_ok(mp_queue_get(q, &buf, &len, JOIN_TIMEOUT));
    expect_bytes(buf, len, "msg");
    mp_free(buf);
  }
  assert_mp_ok(mp_dict_set(d, "after", 5, "ok", 2));
  expect_get(mp_manager_dict(m, "d"), "after", "ok");
  mp_queue_free(q);
  mp_dict_free(d);
  mp_manager_free(c);
  mp_manager_free(m);
  mp_raw_free((void *)a.started);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      sync_test(test_family_handles), sync_test(test_exit_without_free),
      sync_test(test_proxies_unix),   sync_test(test_proxies_tcp),
      sync_test(test_wrong_key),      sync_test(test_shutdown_by_client),
      sync_test(test_server_killed),  sync_test(test_clients_killed),
  };
  return MPT_RUN(argc, argv, tests);
}
