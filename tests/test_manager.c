/* Managers: the family handle (shared-memory objects, also in children
 * under each start method), connected handles whose proxies take the same
 * calls, over unix: and tcp:, wrong keys, and failures: a server killed, a
 * client killed in the middle of a call or while its get waits. Locks,
 * semaphores and events through a manager (a lock of a killed client is
 * released), and segments of a SharedMemoryManager (unlinked at shutdown
 * and after the server is killed). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

static bool flag_set(void *arg) {
  return atomic_load((_Atomic int *)arg) != 0;
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

/* A proxy's blocking get or put waits its whole timeout, not one of the
 * server's slices (50 ms): a family child puts (or takes) only after a
 * pause longer than a slice. The pause only provokes the case: if the
 * child is early the calls succeed all the same. */
static void late_partner(void *arg) {
  mp_manager_t *m = *(mp_manager_t **)arg;
  mp_queue_t *in = mp_manager_queue(m, "late", 0);
  mp_queue_t *full = mp_manager_queue(m, "full", 1);
  void *buf;
  size_t len;
  usleep(300 * 1000);
  if (!in || !full || mp_queue_put(in, "late", 4, MP_FOREVER) != 0)
    _exit(2);
  usleep(300 * 1000);
  if (mp_queue_get(full, &buf, &len, MP_FOREVER) != 0)
    _exit(3);
  mp_free(buf);
}

static void test_proxy_waits_past_a_slice(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_manager_t *c = connect_to(m);
  mp_queue_t *in = mp_manager_queue(c, "late", 0);
  mp_queue_t *full = mp_manager_queue(c, "full", 1);
  assert_non_null(in);
  assert_non_null(full);
  assert_mp_ok(mp_queue_put(full, "x", 1, 0));
  mp_process_t *p = start_child(late_partner, &m, sizeof m);
  void *buf;
  size_t len;
  assert_mp_ok(mp_queue_get(in, &buf, &len, 30.0));
  expect_bytes(buf, len, "late");
  mp_free(buf);
  assert_mp_ok(mp_queue_put(full, "y", 1, MP_FOREVER));
  assert_int_equal(0, finish_child(p));
  mp_queue_free(in);
  mp_queue_free(full);
  mp_manager_free(c);
  mp_manager_free(m);
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

/* ---- locks, semaphores, events ---------------------------------------------
 */

struct sync_args {
  mp_manager_t *m;
  char address[256];
  _Atomic int *started;
};

/* A child's connection to the server (exit code 2 if it cannot). */
static mp_manager_t *child_connect(const char *address) {
  mp_manager_t *c = mp_manager_connect(address, KEY, sizeof KEY - 1);
  if (!c)
    _exit(2);
  return c;
}

/* In the family: the objects themselves, in a child. */
static void family_sync_child(void *arg) {
  struct sync_args *a = arg;
  mp_lock_t *l = mp_manager_lock(a->m, "L");
  mp_event_t *e = mp_manager_event(a->m, "E");
  mp_semaphore_t *s = mp_manager_semaphore(a->m, "S", 0);
  if (!l || !e || !s || mp_lock_acquire(l, 0) != MP_ETIMEDOUT ||
      mp_semaphore_release(s) != 0 || mp_event_set(e) != 0)
    _exit(2);
}

static void test_family_sync(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_lock_t *l = mp_manager_lock(m, "L");
  assert_non_null(l);
  assert_ptr_equal(l, mp_manager_lock(m, "L"));
  mp_event_t *e = mp_manager_event(m, "E");
  mp_semaphore_t *s = mp_manager_semaphore(m, "S", 0);
  mp_rlock_t *r = mp_manager_rlock(m, "R");
  assert_non_null(r);
  assert_mp_ok(mp_rlock_acquire(r, 0));
  assert_true(mp_rlock_is_mine(r)); /* the real object */
  assert_mp_ok(mp_rlock_release(r));
  assert_mp_ok(mp_lock_acquire(l, 0));
  struct sync_args a = {.m = m};
  assert_int_equal(0,
                   finish_child(start_child(family_sync_child, &a, sizeof a)));
  assert_true(mp_event_is_set(e));
  assert_int_equal(1, mp_semaphore_value(s));
  assert_mp_ok(mp_lock_release(l));
  assert_null(mp_manager_semaphore(m, "big", UINT_MAX));
  mp_manager_free(m);
}

static void proxy_lock_calls(mp_manager_t *a, mp_manager_t *b) {
  mp_lock_t *la = mp_manager_lock(a, "L"), *lb = mp_manager_lock(b, "L");
  assert_non_null(la);
  assert_non_null(lb);
  assert_false(mp_lock_locked(la));
  assert_mp_ok(mp_lock_acquire(la, MP_FOREVER));
  assert_true(mp_lock_locked(lb));
  assert_mp(MP_ETIMEDOUT, mp_lock_acquire(lb, 0));
  assert_mp(MP_ETIMEDOUT, mp_lock_acquire(lb, 0.15)); /* over a slice */
  assert_mp(MP_EINVAL, mp_lock_acquire(lb, 0.0 / 0.0));
  assert_mp_ok(mp_lock_release(lb)); /* a Lock: anyone may release it */
  assert_mp(MP_EOVERFLOW, mp_lock_release(la));
  assert_mp_ok(mp_lock_acquire(lb, 0));
  assert_mp_ok(mp_lock_release(lb));
  mp_lock_free(la);
  mp_lock_free(lb);

  mp_rlock_t *ra = mp_manager_rlock(a, "R"), *rb = mp_manager_rlock(b, "R");
  assert_mp_ok(mp_rlock_acquire(ra, 0));
  assert_mp_ok(mp_rlock_acquire(ra, 0)); /* recursion */
  assert_true(mp_rlock_locked(rb));
  assert_mp(MP_ETIMEDOUT, mp_rlock_acquire(rb, 0));
  assert_mp(MP_ENOTOWNER, mp_rlock_release(rb));
  assert_mp_ok(mp_rlock_release(ra));
  assert_mp_ok(mp_rlock_release(ra));
  assert_mp(MP_ENOTOWNER, mp_rlock_release(ra));
  assert_false(mp_rlock_locked(rb));
  mp_rlock_free(ra);
  mp_rlock_free(rb);

  mp_semaphore_t *s = mp_manager_semaphore(a, "S", 2);
  assert_int_equal(2, mp_semaphore_value(s));
  assert_mp_ok(mp_semaphore_acquire(s, 0));
  assert_mp_ok(mp_semaphore_acquire(s, 0));
  assert_mp(MP_ETIMEDOUT, mp_semaphore_acquire(s, 0.05));
  assert_mp_ok(mp_semaphore_release(s));
  assert_int_equal(1, mp_semaphore_value(s));
  mp_semaphore_free(s);

  mp_event_t *ea = mp_manager_event(a, "E"), *eb = mp_manager_event(b, "E");
  assert_false(mp_event_is_set(eb));
  assert_mp(MP_ETIMEDOUT, mp_event_wait(eb, 0.05));
  assert_mp_ok(mp_event_set(ea));
  assert_true(mp_event_is_set(eb));
  assert_mp_ok(mp_event_wait(eb, MP_FOREVER));
  assert_mp_ok(mp_event_clear(eb));
  assert_false(mp_event_is_set(ea));
  mp_event_free(ea);
  mp_event_free(eb);
}

/* A proxy of one kind is not a handle of another. */
static void proxy_kinds(mp_manager_t *a) {
  mp_lock_t *l = mp_manager_lock(a, "L");
  mp_dict_t *d = mp_manager_dict(a, "L");
  assert_mp(MP_EINVAL, mp_event_set((mp_event_t *)l));
  assert_mp(MP_EINVAL, mp_rlock_acquire((mp_rlock_t *)l, 0));
  assert_mp(MP_EINVAL, mp_lock_acquire((mp_lock_t *)d, 0));
  mp_dict_free(d);
  mp_lock_free(l);
}

/* Sets the event from another process while the proxy waits for it. */
static void event_setter(void *arg) {
  struct sync_args *a = arg;
  mp_manager_t *c = child_connect(a->address);
  mp_event_t *e = mp_manager_event(c, "wake");
  mp_event_t *ready = mp_manager_event(c, "ready");
  if (!e || !ready || mp_event_wait(ready, JOIN_TIMEOUT) != 0 ||
      mp_event_set(e) != 0)
    _exit(2);
  mp_event_free(e);
  mp_event_free(ready);
  mp_manager_free(c);
}

static void test_proxy_sync(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_manager_t *a = connect_to(m), *b = connect_to(m);
  proxy_lock_calls(a, b);
  proxy_kinds(a);
  /* A wait woken by another, unrelated-style client (connected). */
  struct sync_args args = {.m = m};
  snprintf(args.address, sizeof args.address, "%s", mp_manager_address(m));
  mp_process_t *p = start_child(event_setter, &args, sizeof args);
  mp_event_t *e = mp_manager_event(a, "wake");
  assert_mp_ok(mp_event_set(mp_manager_event(m, "ready")));
  assert_mp_ok(mp_event_wait(e, JOIN_TIMEOUT));
  assert_int_equal(0, finish_child(p));
  mp_event_free(e);
  mp_manager_free(a);
  mp_manager_free(b);
  mp_manager_free(m);
}

/* Threads of one connected manager: a thread waiting for the lock does not
 * keep the holder's release off the connection. */
struct thread_args {
  mp_lock_t *l;
  _Atomic int state;
};

static void *lock_taker(void *arg) {
  struct thread_args *t = arg;
  atomic_store(&t->state, 1);
  int rc = mp_lock_acquire(t->l, JOIN_TIMEOUT);
  atomic_store(&t->state, rc == 0 ? 2 : 3);
  return NULL;
}

static bool state_at_least_2(void *arg) {
  return atomic_load(&((struct thread_args *)arg)->state) >= 2;
}

static void test_proxy_threads(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_manager_t *c = connect_to(m);
  struct thread_args t = {mp_manager_lock(c, "L"), 0};
  assert_mp_ok(mp_lock_acquire(t.l, 0));
  pthread_t th;
  assert_int_equal(0, pthread_create(&th, NULL, lock_taker, &t));
  sleep_us(20000); /* provoke: let the taker's acquire reach the server */
  assert_mp_ok(mp_lock_release(t.l));
  assert_true(poll_until(state_at_least_2, &t));
  pthread_join(th, NULL);
  assert_int_equal(2, atomic_load(&t.state));
  assert_true(mp_lock_locked(t.l));
  mp_lock_free(t.l);
  mp_manager_free(c);
  mp_manager_free(m);
}

/* Takes the lock and the rlock (twice) and waits to be killed. */
static void lock_holder(void *arg) {
  struct sync_args *a = arg;
  mp_manager_t *c = child_connect(a->address);
  mp_lock_t *l = mp_manager_lock(c, "L");
  mp_rlock_t *r = mp_manager_rlock(c, "R");
  if (!l || !r || mp_lock_acquire(l, 0) != 0 || mp_rlock_acquire(r, 0) != 0 ||
      mp_rlock_acquire(r, 0) != 0)
    _exit(2);
  atomic_store(a->started, 1);
  for (;;)
    pause();
}

static void test_lock_holder_killed(void **state) {
  (void)state;
  mp_manager_t *m = new_manager("tcp:127.0.0.1:0");
  struct sync_args a = {.started = shared(64)};
  snprintf(a.address, sizeof a.address, "%s", mp_manager_address(m));
  mp_process_t *p = start_child(lock_holder, &a, sizeof a);
  assert_true(poll_until(flag_set, (void *)a.started));
  mp_manager_t *c = connect_to(m);
  mp_lock_t *l = mp_manager_lock(c, "L");
  mp_rlock_t *r = mp_manager_rlock(c, "R");
  assert_mp(MP_ETIMEDOUT, mp_lock_acquire(l, 0));
  assert_int_equal(-SIGKILL, kill_child(p));
  /* The server sees the connection close and releases both. */
  assert_mp_ok(mp_lock_acquire(l, JOIN_TIMEOUT));
  assert_mp_ok(mp_rlock_acquire(r, JOIN_TIMEOUT));
  assert_mp_ok(mp_rlock_release(r));
  assert_mp_ok(mp_lock_release(l));
  mp_lock_free(l);
  mp_rlock_free(r);
  mp_manager_free(c);
  mp_manager_free(m);
  mp_raw_free((void *)a.started);
}

/* Waits on an event of a server that is killed meanwhile. */
static void doomed_waiter(void *arg) {
  struct sync_args *a = arg;
  mp_manager_t *c = child_connect(a->address);
  mp_event_t *e = mp_manager_event(c, "never");
  if (!e)
    _exit(2);
  atomic_store(a->started, 1);
  _exit(mp_event_wait(e, MP_FOREVER) == MP_ECLOSED ? 0 : 3);
}

/* ---- SharedMemoryManager ---------------------------------------------------
 */

static bool shm_exists(const char *name) {
  char path[300];
  snprintf(path, sizeof path, "/dev/shm/%s", name);
  return access(path, F_OK) == 0;
}

/* A segment from the manager: the client's mapping and the server's
 * family's (attached by name) are the same memory. */
static char *use_segment(mp_manager_t *c) {
  mp_shm_t *s = mp_manager_shm(c, 1000);
  assert_non_null(s);
  assert_true(mp_shm_size(s) >= 1000);
  char *name = strdup(mp_shm_name(s));
  assert_true(shm_exists(name));
  memcpy(mp_shm_buf(s), "hello", 5);
  mp_shm_t *other = mp_shm_open(name, false, 0);
  assert_non_null(other);
  assert_memory_equal("hello", mp_shm_buf(other), 5);
  assert_mp_ok(mp_shm_close(other));
  assert_mp_ok(mp_shm_close(s));
  return name;
}

/* A ShareableList from the manager, read back by name. */
static char *use_shareable_list(mp_manager_t *c) {
  mp_shareable_item_t items[] = {mp_shareable_int(42), mp_shareable_str("hi")};
  mp_shareable_list_t *l = mp_manager_shareable_list(c, items, 2);
  assert_non_null(l);
  char *name = strdup(mp_shareable_list_name(l));
  mp_shareable_list_t *other = mp_shareable_list_open(name);
  assert_non_null(other);
  mp_shareable_item_t it;
  assert_mp_ok(mp_shareable_list_get(other, 0, &it));
  assert_int_equal(42, it.u.i);
  assert_int_equal(2, mp_shareable_list_len(other));
  assert_mp_ok(mp_shareable_list_close(other));
  assert_mp_ok(mp_shareable_list_close(l));
  return name;
}

static void test_shared_memory(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_manager_t *c = connect_to(m);
  char *remote = use_segment(c), *local = use_segment(m);
  char *remote_list = use_shareable_list(c),
       *local_list = use_shareable_list(m);
  assert_true(shm_exists(remote_list));
  assert_true(shm_exists(local_list));
  assert_null(mp_manager_shm(c, 0));
  assert_null(mp_manager_shm(NULL, 10));
  /* A client's shutdown stops the server, which unlinks both. */
  assert_mp_ok(mp_manager_shutdown(c));
  mp_manager_free(c);
  mp_manager_free(m);
  assert_false(shm_exists(remote));
  assert_false(shm_exists(local));
  assert_false(shm_exists(remote_list));
  assert_false(shm_exists(local_list));
  free(remote);
  free(local);
  free(remote_list);
  free(local_list);
}

static void test_shared_memory_server_killed(void **state) {
  (void)state;
  mp_manager_t *m = new_manager(NULL);
  mp_manager_t *c = connect_to(m);
  char *name = use_segment(c), *list = use_shareable_list(c);
  mp_process_t *server[4];
  assert_int_equal(1, mp_active_children(server, 4));
  assert_mp_ok(mp_process_kill(server[0]));
  assert_mp_ok(mp_process_join(server[0], JOIN_TIMEOUT));
  assert_true(shm_exists(name)); /* the server had no time to */
  assert_null(mp_manager_shm(c, 10));
  assert_null(mp_manager_shareable_list(c, NULL, 0));
  mp_manager_free(c);
  mp_manager_free(m); /* the creator unlinks what the server left */
  assert_false(shm_exists(name));
  assert_false(shm_exists(list));
  free(name);
  free(list);
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
  mp_lock_t *l = mp_manager_lock(c, "l");
  mp_event_t *e = mp_manager_event(c, "e");
  assert_mp_ok(mp_dict_set(d, "k", 1, "v", 1));
  /* A client waiting on an event when the server dies. */
  struct sync_args a = {.started = shared(64)};
  snprintf(a.address, sizeof a.address, "%s", mp_manager_address(m));
  mp_process_t *waiter = start_child(doomed_waiter, &a, sizeof a);
  assert_true(poll_until(flag_set, (void *)a.started));
  mp_process_t *server[4];
  assert_int_equal(2, mp_active_children(server, 4));
  if (server[0] == waiter)
    server[0] = server[1];
  assert_mp_ok(mp_process_kill(server[0]));
  assert_mp_ok(mp_process_join(server[0], JOIN_TIMEOUT));
  void *val;
  size_t len;
  assert_mp(MP_ECLOSED, mp_queue_get(q, &val, &len, MP_FOREVER));
  assert_mp(MP_ECLOSED, mp_dict_get(d, "k", 1, &val, &len));
  assert_mp(MP_ECLOSED, mp_queue_put(q, "x", 1, MP_FOREVER));
  assert_null(mp_manager_list(c, "l"));
  assert_mp(MP_ECLOSED, mp_lock_acquire(l, MP_FOREVER));
  assert_mp(MP_ECLOSED, mp_lock_release(l));
  assert_false(mp_lock_locked(l));
  assert_mp(MP_ECLOSED, mp_event_wait(e, MP_FOREVER));
  assert_int_equal(0, finish_child(waiter));
  assert_mp(MP_ECLOSED, mp_manager_shutdown(c));
  mp_lock_free(l);
  mp_event_free(e);
  mp_raw_free((void *)a.started);
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
  mp_manager_t *c = child_connect(a->address);
  mp_queue_t *q = mp_manager_queue(c, "q", 0);
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
  mp_manager_t *c = child_connect(a->address);
  mp_dict_t *d = mp_manager_dict(c, "d");
  if (!d)
    _exit(2);
  atomic_store(a->started, 1);
  for (unsigned i = 0;; i++)
    mp_dict_set(d, &i, sizeof i, "value", 5);
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
      sync_test(test_family_handles),
      sync_test(test_exit_without_free),
      sync_test(test_proxies_unix),
      sync_test(test_proxies_tcp),
      sync_test(test_proxy_waits_past_a_slice),
      sync_test(test_wrong_key),
      sync_test(test_shutdown_by_client),
      sync_test(test_server_killed),
      sync_test(test_clients_killed),
      sync_test(test_family_sync),
      sync_test(test_proxy_sync),
      sync_test(test_proxy_threads),
      sync_test(test_lock_holder_killed),
      sync_test(test_shared_memory),
      sync_test(test_shared_memory_server_killed),
  };
  return MPT_RUN(argc, argv, tests);
}
