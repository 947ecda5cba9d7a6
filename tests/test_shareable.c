/* ShareableList: the layout, get and set of every kind, the errors, a
 * child that attaches by name (under every start method), and Python's
 * ShareableList on the other side in both directions, with every Python
 * 3.11-3.13 found on the machine. Every name contains "mproc" and is
 * unlinked, so `make test`'s leftover check sees none. */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "python/pypeer.h"
#include "sync_fixtures.h"

static void test_name(char *buf, size_t cap, const char *what) {
  snprintf(buf, cap, "mproc_test_%d_sl_%s", (int)getpid(), what);
}

/* A test that fails leaves its segments: they go here. */
static int shareable_teardown(void **state) {
  static const char *const names[] = {"items", "errors", "child", "to_py",
                                      "from_py"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char name[64];
    test_name(name, sizeof name, names[i]);
    mp_shm_unlink_name(name);
  }
  return sync_teardown(state);
}

#define shareable_test(f)                                                      \
  cmocka_unit_test_setup_teardown(f, mpt_setup, shareable_teardown)

/* A str or bytes item (a macro, so that a failure names the caller's
 * line). */
#define assert_bytes_item(l, i, kind_, want, len_)                             \
  do {                                                                         \
    mp_shareable_item_t it_;                                                   \
    assert_mp_ok(mp_shareable_list_get((l), (i), &it_));                       \
    assert_int_equal((kind_), it_.kind);                                       \
    assert_int_equal((len_), it_.u.bytes.len);                                 \
    if ((len_) > 0)                                                            \
      assert_memory_equal((want), it_.u.bytes.ptr, (len_));                    \
  } while (0)

static mp_shareable_item_t get(const mp_shareable_list_t *l, ptrdiff_t i) {
  mp_shareable_item_t it;
  assert_mp_ok(mp_shareable_list_get(l, i, &it));
  return it;
}

/* The items of the list C makes, and the format Python reports for it. */
static mp_shareable_list_t *make_list(const char *name) {
  mp_shareable_item_t items[] = {
      mp_shareable_int(42),
      mp_shareable_int(-7),
      mp_shareable_float(3.5),
      mp_shareable_bool(true),
      mp_shareable_bool(false),
      mp_shareable_none(),
      mp_shareable_str("hello, world"),
      mp_shareable_bytes("by\0tes", 6),
      mp_shareable_str(""),
      mp_shareable_str("\xc3\xbcn\xc3\xaf"), /* "ünï" */
  };
  return mp_shareable_list_new(name, items, sizeof items / sizeof items[0]);
}

#define C_FORMAT "qqdxxxxxxx?xxxxxxx?xxxxxx?x16s8s8s8s"

static void test_layout_and_items(void **state) {
  (void)state;
  char name[64];
  test_name(name, sizeof name, "items");
  mp_shareable_list_t *l = make_list(name);
  assert_non_null(l);
  assert_string_equal(name, mp_shareable_list_name(l));
  assert_int_equal(10, mp_shareable_list_len(l));
  /* Python's size (274, checked against Python 3.11): the count, 11
   * offsets, the data (6 * 8 + 16 + 3 * 8), 10 formats, 10 codes. */
  assert_int_equal(8 + 88 + 88 + 80 + 10,
                   mp_shm_size(mp_shareable_list_shm(l)));
  char format[128];
  assert_int_equal(strlen(C_FORMAT),
                   mp_shareable_list_format(l, format, sizeof format));
  assert_string_equal(C_FORMAT, format);
  assert_mp(MP_EOVERFLOW, mp_shareable_list_format(l, format, 5));

  assert_int_equal(42, get(l, 0).u.i);
  assert_int_equal(-7, get(l, 1).u.i);
  assert_true(get(l, 2).u.f == 3.5);
  assert_int_equal(MP_SHAREABLE_BOOL, get(l, 3).kind);
  assert_true(get(l, 3).u.b);
  assert_false(get(l, 4).u.b);
  assert_int_equal(MP_SHAREABLE_NONE, get(l, 5).kind);
  assert_bytes_item(l, 6, MP_SHAREABLE_STR, "hello, world", 12);
  assert_bytes_item(l, 7, MP_SHAREABLE_BYTES, "by\0tes", 6);
  assert_bytes_item(l, 8, MP_SHAREABLE_STR, "", 0);
  assert_bytes_item(l, -1, MP_SHAREABLE_STR, "\xc3\xbcn\xc3\xaf", 5);

  /* Any kind replaces any other; str and bytes must fit the slot. */
  mp_shareable_item_t it = mp_shareable_str("12345678");
  assert_mp_ok(mp_shareable_list_set(l, 0, &it)); /* 8 bytes: fits */
  assert_bytes_item(l, 0, MP_SHAREABLE_STR, "12345678", 8);
  it = mp_shareable_str("123456789");
  assert_mp(MP_EOVERFLOW, mp_shareable_list_set(l, 0, &it));
  it = mp_shareable_float(-0.25);
  assert_mp_ok(mp_shareable_list_set(l, 6, &it));
  assert_true(get(l, 6).u.f == -0.25);
  it = mp_shareable_bytes("0123456789abcdef", 16);
  assert_mp_ok(mp_shareable_list_set(l, 6, &it)); /* the slot stays 16 */
  assert_bytes_item(l, 6, MP_SHAREABLE_BYTES, "0123456789abcdef", 16);
  it = mp_shareable_str("ab");
  assert_mp_ok(mp_shareable_list_set(l, 6, &it));
  assert_bytes_item(l, 6, MP_SHAREABLE_STR, "ab", 2); /* padded with NULs */
  it = mp_shareable_none();
  assert_mp_ok(mp_shareable_list_set(l, -10, &it));
  assert_int_equal(MP_SHAREABLE_NONE, get(l, 0).kind);
  assert_true(mp_shareable_list_format(l, format, sizeof format) > 0);
  assert_memory_equal("xxxxxx?xq", format, 9);

  /* IndexError, bad items. */
  mp_shareable_item_t out;
  assert_mp(MP_EINDEX, mp_shareable_list_get(l, 10, &out));
  assert_mp(MP_EINDEX, mp_shareable_list_get(l, -11, &out));
  assert_mp(MP_EINDEX, mp_shareable_list_set(l, 10, &it));
  assert_mp(MP_EINVAL, mp_shareable_list_set(l, 0, NULL));
  it.kind = (mp_shareable_kind_t)99;
  assert_mp(MP_EINVAL, mp_shareable_list_set(l, 0, &it));
  it = mp_shareable_bytes(NULL, 3);
  assert_mp(MP_EINVAL, mp_shareable_list_set(l, 0, &it));

  /* A second handle sees the same items. */
  mp_shareable_list_t *m = mp_shareable_list_open(name);
  assert_non_null(m);
  assert_int_equal(10, mp_shareable_list_len(m));
  assert_bytes_item(m, 6, MP_SHAREABLE_STR, "ab", 2);
  assert_mp_ok(mp_shareable_list_close(m));

  assert_mp_ok(mp_shm_unlink(mp_shareable_list_shm(l)));
  assert_mp_ok(mp_shareable_list_close(l));
  assert_mp_ok(mp_shareable_list_close(NULL));
}

static void test_errors(void **state) {
  (void)state;
  char name[64];
  test_name(name, sizeof name, "errors");
  errno = 0;
  assert_null(mp_shareable_list_new(name, NULL, 3));
  assert_int_equal(EINVAL, errno);
  static char big[9999993];
  mp_shareable_item_t too_long = mp_shareable_bytes(big, sizeof big);
  errno = 0;
  assert_null(mp_shareable_list_new(name, &too_long, 1)); /* "10000000s" */
  assert_int_equal(EINVAL, errno);
  errno = 0;
  assert_null(mp_shareable_list_open(name));
  assert_int_equal(ENOENT, errno);

  /* An empty list is fine (ShareableList([])). */
  mp_shareable_list_t *l = mp_shareable_list_new(name, NULL, 0);
  assert_non_null(l);
  assert_int_equal(0, mp_shareable_list_len(l));
  mp_shareable_list_t *m = mp_shareable_list_open(name);
  assert_non_null(m);
  assert_int_equal(0, mp_shareable_list_len(m));
  mp_shareable_list_close(m);
  errno = 0;
  assert_null(mp_shareable_list_new(name, NULL, 0)); /* FileExistsError */
  assert_int_equal(EEXIST, errno);
  /* A segment that is not a list is refused without reading past it. */
  int64_t *raw = mp_shm_buf(mp_shareable_list_shm(l));
  raw[0] = 1000;
  errno = 0;
  assert_null(mp_shareable_list_open(name));
  assert_int_equal(EPROTO, errno);
  assert_mp_ok(mp_shm_unlink(mp_shareable_list_shm(l)));
  mp_shareable_list_close(l);

  mp_shm_t *s = mp_shm_open(name, true, 64);
  assert_non_null(s);
  memset(mp_shm_buf(s), 0xff, 64);
  errno = 0;
  assert_null(mp_shareable_list_open(name));
  assert_int_equal(EPROTO, errno);
  int64_t bad_offsets[8] = {2, 0, 16, 8}; /* decreasing */
  memcpy(mp_shm_buf(s), bad_offsets, sizeof bad_offsets);
  assert_null(mp_shareable_list_open(name));
  assert_mp_ok(mp_shm_unlink(s));
  mp_shm_close(s);
}

/* ---- a child attaches by name ------------------------------------------- */

struct child_args {
  char name[64];
};

static void child_adds_one(void *arg) {
  struct child_args *a = arg;
  mp_shareable_list_t *l = mp_shareable_list_open(a->name);
  if (!l)
    exit(10);
  mp_shareable_item_t it;
  if (mp_shareable_list_get(l, 0, &it) != 0 || it.kind != MP_SHAREABLE_INT)
    exit(11);
  it.u.i += 1;
  mp_shareable_item_t s = mp_shareable_str("child");
  if (mp_shareable_list_set(l, 0, &it) != 0 ||
      mp_shareable_list_set(l, 1, &s) != 0)
    exit(12);
  mp_shareable_list_close(l);
}

static void test_child_attaches(void **state) {
  (void)state;
  struct child_args a;
  test_name(a.name, sizeof a.name, "child");
  mp_shareable_item_t items[] = {mp_shareable_int(41),
                                 mp_shareable_str("parent")};
  mp_shareable_list_t *l = mp_shareable_list_new(a.name, items, 2);
  assert_non_null(l);
  int code = finish_child(start_child(child_adds_one, &a, sizeof a));
  mp_shareable_item_t first = get(l, 0);
  mp_shareable_item_t second = get(l, 1);
  char text[16] = {0};
  memcpy(text, second.u.bytes.ptr,
         second.u.bytes.len < 15 ? second.u.bytes.len : 15);
  assert_mp_ok(mp_shm_unlink(mp_shareable_list_shm(l)));
  mp_shareable_list_close(l);
  assert_int_equal(0, code);
  assert_int_equal(42, first.u.i);
  assert_string_equal("child", text);
}

/* ---- Python on the other side ------------------------------------------- */

static char *run_peer(const char *exe, const char *mode, const char *name) {
  char *argv[] = {(char *)exe, PYPEER_SCRIPT("shareable_peer.py"), (char *)mode,
                  (char *)name, NULL};
  char *out = NULL;
  int status = -1;
  assert_mp_ok(mpt_run_command(argv, 60, &out, &status));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    fail_msg("%s %s failed: %s", exe, mode, out);
  return out;
}

static void python_reads(const char *exe, const char *version) {
  char name[64];
  test_name(name, sizeof name, "to_py");
  mp_shareable_list_t *l = make_list(name);
  assert_non_null(l);
  char *out = run_peer(exe, "read", name);
  bool items_ok =
      mpt_line_index(out, "[42, -7, 3.5, True, False, None, 'hello, world', "
                          "b'by\\x00tes', '', '\xc3\xbcn\xc3\xaf']") == 0;
  bool format_ok = mpt_line_index(out, C_FORMAT) == 1;
  mp_shareable_item_t i0 = get(l, 0), i2 = get(l, 2), i3 = get(l, 3),
                      i6 = get(l, 6), i7 = get(l, 7);
  bool back_ok = i0.kind == MP_SHAREABLE_STR && i0.u.bytes.len == 2 &&
                 memcmp(i0.u.bytes.ptr, "py", 2) == 0 &&
                 i2.kind == MP_SHAREABLE_NONE && i3.kind == MP_SHAREABLE_INT &&
                 i3.u.i == 12345678901234 && i6.kind == MP_SHAREABLE_BYTES &&
                 i6.u.bytes.len == 15 &&
                 memcmp(i6.u.bytes.ptr, "0123456789abcde", 15) == 0 &&
                 i7.kind == MP_SHAREABLE_FLOAT && i7.u.f == 2.25;
  assert_mp_ok(mp_shm_unlink(mp_shareable_list_shm(l)));
  mp_shareable_list_close(l);
  if (!items_ok || !format_ok || !back_ok)
    fail_msg("python %s: items %d format %d written back %d; printed:\n%s",
             version, items_ok, format_ok, back_ok, out);
  free(out);
}

static void test_python_reads_c_list(void **state) {
  (void)state;
  pypeer_each_version(python_reads);
}

static void python_writes(const char *exe, const char *version) {
  (void)version;
  char name[64];
  test_name(name, sizeof name, "from_py");
  char *out = run_peer(exe, "create", name);
  mp_shareable_list_t *l = mp_shareable_list_open(name);
  mp_shm_unlink_name(name);
  assert_non_null(l);
  char format[128];
  assert_true(mp_shareable_list_format(l, format, sizeof format) > 0);
  assert_int_equal(0, mpt_line_index(out, format));
  free(out);
  assert_int_equal(10, mp_shareable_list_len(l));
  assert_int_equal(7, get(l, 0).u.i);
  assert_true(get(l, 1).u.f == -1.5);
  assert_int_equal(MP_SHAREABLE_BOOL, get(l, 2).kind);
  assert_false(get(l, 2).u.b);
  assert_true(get(l, 3).u.b);
  assert_int_equal(MP_SHAREABLE_NONE, get(l, 4).kind);
  assert_bytes_item(l, 5, MP_SHAREABLE_STR, "from python", 11);
  assert_bytes_item(l, 6, MP_SHAREABLE_BYTES, "\x01\x00\x02", 3);
  assert_bytes_item(l, 7, MP_SHAREABLE_STR, "", 0);
  assert_int_equal(INT64_MAX, get(l, 8).u.i);
  assert_bytes_item(l, 9, MP_SHAREABLE_STR, "h\xc3\xa9", 3);
  mp_shareable_item_t it = mp_shareable_str("12345678901");
  assert_mp(MP_EOVERFLOW, mp_shareable_list_set(l, 9, &it)); /* slot 8 */
  mp_shareable_list_close(l);
}

static void test_c_reads_python_list(void **state) {
  (void)state;
  pypeer_each_version(python_writes);
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      shareable_test(test_layout_and_items),
      shareable_test(test_errors),
      shareable_test(test_child_attaches),
      shareable_test(test_python_reads_c_list),
      shareable_test(test_c_reads_python_list),
  };
  return MPT_RUN(argc, argv, tests);
}
