/* Python values and pickle (issue 15): every kind through every protocol,
 * Python's == semantics, hostile pickles, large values, and Python 3.8 to
 * 3.13 (those found) on the other end of pipes, socketpairs and Listener/Client
 * (tests/python/obj_peer.py). Runs once: nothing here depends on the start
 * method (the Python peers are plain fork+exec). */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"
#include "python/pypeer.h"

#define PEER_TIMEOUT 120.0
#define KEY          "secret password"
#define KEY_HEX      "7365637265742070617373776f7264"

static const int protocols[] = {MP_OBJ_PROTOCOL_0, 1, 2, 3, 4, 5};
#define N_PROTOCOLS 6
#define VIA_SEND    99 /* mp_conn_send/recv, Python's Connection.send/recv */

/* ---- Building values tersely ------------------------------------------ */

static mp_obj_t *S(const char *s) {
  mp_obj_t *o = mp_obj_str(s, strlen(s));
  assert_non_null(o);
  return o;
}

static mp_obj_t *I(int64_t v) {
  mp_obj_t *o = mp_obj_int(v);
  assert_non_null(o);
  return o;
}

static mp_obj_t *F(double v) {
  mp_obj_t *o = mp_obj_float(v);
  assert_non_null(o);
  return o;
}

static mp_obj_t *BIG(const char *le, size_t len) {
  mp_obj_t *o = mp_obj_int_from_bytes(le, len);
  assert_non_null(o);
  return o;
}

static mp_obj_t *BYTES(const void *b, size_t len) {
  mp_obj_t *o = mp_obj_bytes(b, len);
  assert_non_null(o);
  return o;
}

/* A container of kind with n items (a dict: n keys and values alternate). */
static mp_obj_t *C(mp_obj_kind_t kind, int n, ...) {
  mp_obj_t *c = kind == MP_OBJ_TUPLE  ? mp_obj_tuple()
                : kind == MP_OBJ_LIST ? mp_obj_list()
                : kind == MP_OBJ_DICT ? mp_obj_dict()
                : kind == MP_OBJ_SET  ? mp_obj_set()
                                      : mp_obj_frozenset();
  assert_non_null(c);
  va_list ap;
  va_start(ap, n);
  for (int i = 0; i < n; i++) {
    mp_obj_t *a = va_arg(ap, mp_obj_t *);
    if (kind == MP_OBJ_DICT)
      assert_mp_ok(mp_obj_dict_set(c, a, va_arg(ap, mp_obj_t *)));
    else if (kind == MP_OBJ_SET || kind == MP_OBJ_FROZENSET)
      assert_mp_ok(mp_obj_set_add(c, a));
    else
      assert_mp_ok(mp_obj_append(c, a));
  }
  va_end(ap);
  return c;
}

/* The first values of obj_peer.py's SAMPLES, built in C. */
static size_t c_samples(mp_obj_t **out) {
  char all[256];
  for (int i = 0; i < 256; i++)
    all[i] = (char)i;
  size_t n = 0;
  out[n++] = mp_obj_none();
  out[n++] = mp_obj_bool(true);
  out[n++] = mp_obj_bool(false);
  const int64_t ints[] = {0,          1,         -1,       255,       256,
                          65535,      65536,     -65536,   INT32_MAX, INT32_MIN,
                          2147483648, INT64_MAX, INT64_MIN};
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    out[n++] = I(ints[i]);
  out[n++] = BIG("\0\0\0\0\0\0\0\x80\0", 9);                 /* 2**63 */
  out[n++] = BIG("\xff\xff\xff\xff\xff\xff\xff\x7f\xff", 9); /* -2**63-1 */
  out[n++] = BIG("\0\0\0\0\0\0\0\0\x01", 9);                 /* 2**64 */
  const double floats[] = {0.0,   -0.0,     1.5,       0.1,
                           1e300, INFINITY, -INFINITY, NAN};
  for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
    out[n++] = F(floats[i]);
  out[n++] = S("");
  out[n++] = S("hello");
  out[n++] = mp_obj_str("a\\b\nc\r\0\x1a\\u0041", 14);
  out[n++] = S("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
  out[n++] = BYTES("", 0);
  out[n++] = BYTES("abc", 3);
  out[n++] = BYTES(all, 256);
  out[n++] = BYTES("\\\n\r\0\x1a\\u0041", 11);
  out[n++] = C(MP_OBJ_TUPLE, 0);
  out[n++] = C(MP_OBJ_TUPLE, 1, I(1));
  out[n++] = C(MP_OBJ_TUPLE, 2, I(1), S("a"));
  out[n++] = C(MP_OBJ_TUPLE, 3, I(1), I(2), I(3));
  out[n++] = C(MP_OBJ_TUPLE, 4, I(1), I(2), I(3), I(4));
  out[n++] = C(MP_OBJ_LIST, 0);
  out[n++] = C(MP_OBJ_LIST, 3, I(1), S("a"), mp_obj_none());
  out[n++] = C(MP_OBJ_DICT, 0);
  out[n++] = C(MP_OBJ_DICT, 3, S("a"), I(1), I(2), S("b"),
               C(MP_OBJ_TUPLE, 2, I(1), I(2)), C(MP_OBJ_LIST, 1, I(3)));
  out[n++] = C(MP_OBJ_SET, 0);
  out[n++] = C(MP_OBJ_SET, 3, I(1), I(2), I(3));
  out[n++] = C(MP_OBJ_FROZENSET, 0);
  out[n++] =
      C(MP_OBJ_FROZENSET, 3, I(1), S("a"), C(MP_OBJ_TUPLE, 2, I(2), I(3)));
  for (size_t i = 0; i < n; i++)
    assert_non_null(out[i]);
  return n;
}

#define MAX_SAMPLES 64

static void free_all(mp_obj_t **objs, size_t n) {
  for (size_t i = 0; i < n; i++)
    mp_obj_free(objs[i]);
}

/* == but NaN is the same as NaN (as Python's identity check would). */
static bool same(const mp_obj_t *a, const mp_obj_t *b) {
  double x, y;
  if (mp_obj_kind(a) == MP_OBJ_FLOAT && mp_obj_kind(b) == MP_OBJ_FLOAT &&
      mp_obj_as_float(a, &x) == 0 && mp_obj_as_float(b, &y) == 0 && isnan(x) &&
      isnan(y))
    return true;
  return mp_obj_equal(a, b) && mp_obj_kind(a) == mp_obj_kind(b);
}

static mp_obj_t *round_trip(const mp_obj_t *o, int protocol) {
  void *buf = NULL;
  size_t len = 0;
  assert_mp_ok(mp_obj_dumps(o, protocol, &buf, &len));
  mp_obj_t *back = NULL;
  int rc = mp_obj_loads(buf, len, &back);
  if (rc < 0)
    print_message("loads of protocol %d: %s\n", protocol, mp_obj_last_error());
  assert_mp_ok(rc);
  mp_free(buf);
  return back;
}

/* ---- Values in C --------------------------------------------------------- */

static void test_every_kind_round_trips(void **state) {
  (void)state;
  mp_obj_t *samples[MAX_SAMPLES];
  size_t n = c_samples(samples);
  for (int p = 0; p < N_PROTOCOLS; p++) {
    for (size_t i = 0; i < n; i++) {
      mp_obj_t *back = round_trip(samples[i], protocols[p]);
      if (!same(samples[i], back))
        fail_msg("sample %zu differs after protocol %d", i, protocols[p]);
      mp_obj_free(back);
    }
  }
  /* All of them in one list, and the list in a dict in a tuple. */
  mp_obj_t *list = mp_obj_list();
  for (size_t i = 0; i < n; i++) {
    mp_obj_t *copy = round_trip(samples[i], 4);
    assert_mp_ok(mp_obj_append(list, copy));
  }
  mp_obj_t *outer = C(MP_OBJ_TUPLE, 1, C(MP_OBJ_DICT, 1, S("all"), list));
  for (int p = 0; p < N_PROTOCOLS; p++) {
    mp_obj_t *back = round_trip(outer, protocols[p]);
    const mp_obj_t *d = mp_obj_item(back, 0);
    const mp_obj_t *l = mp_obj_dict_value(d, 0);
    assert_int_equal(mp_obj_len(l), n);
    for (size_t i = 0; i < n; i++)
      assert_true(same(mp_obj_item(l, i), samples[i]));
    mp_obj_free(back);
  }
  mp_obj_free(outer);
  free_all(samples, n);
}

static void test_getters_and_wrong_kinds(void **state) {
  (void)state;
  mp_obj_t *s = S("h\xc3\xa9llo"), *b = BYTES("xy", 2), *i = I(-7);
  size_t len = 0;
  assert_int_equal(mp_obj_len(s), 5);
  assert_string_equal(mp_obj_as_str(s, &len), "h\xc3\xa9llo");
  assert_int_equal(len, 6);
  assert_int_equal(mp_obj_len(b), 2);
  assert_memory_equal(mp_obj_as_bytes(b, &len), "xy", 2);
  int64_t v = 0;
  bool flag;
  double d;
  assert_mp_ok(mp_obj_as_int(i, &v));
  assert_int_equal(v, -7);
  assert_mp_ok(mp_obj_as_float(i, &d));
  assert_true(d == -7.0);
  assert_mp(MP_EINVAL, mp_obj_as_int(s, &v));
  assert_mp(MP_EINVAL, mp_obj_as_bool(i, &flag));
  assert_mp(MP_EINVAL, mp_obj_as_float(b, &d));
  assert_null(mp_obj_as_str(b, &len));
  assert_null(mp_obj_as_bytes(s, &len));
  assert_null(mp_obj_item(s, 0));
  assert_null(mp_obj_dict_get(i, s));
  assert_null(mp_obj_dict_key(b, 0));
  assert_int_equal(mp_obj_len(i), 0);
  assert_int_equal(mp_obj_kind(NULL), MP_OBJ_NONE);
  /* Invalid UTF-8 and encoded surrogates are refused. */
  errno = 0;
  assert_null(mp_obj_str("\xff", 1));
  assert_int_equal(errno, EINVAL);
  assert_null(mp_obj_str("\xed\xa0\x80", 3));
  assert_null(mp_obj_str("\xc0\x80", 2));
  /* Insertion into a wrong kind fails and still takes the item. */
  assert_mp(MP_EINVAL, mp_obj_append(s, I(1)));
  assert_mp(MP_EINVAL, mp_obj_dict_set(b, I(1), I(2)));
  assert_mp(MP_EINVAL, mp_obj_set_add(i, I(1)));
  mp_obj_t *list = mp_obj_list();
  assert_mp(MP_EINVAL, mp_obj_append(list, list));
  assert_mp(MP_EINVAL, mp_obj_append(list, NULL));
  assert_null(mp_obj_item(list, 0));
  /* Protocols out of range. */
  void *buf;
  assert_mp(MP_EINVAL, mp_obj_dumps(list, 6, &buf, &len));
  assert_mp(MP_EINVAL, mp_obj_dumps(NULL, 4, &buf, &len));
  mp_obj_free(list);
  mp_obj_free(s);
  mp_obj_free(b);
  mp_obj_free(i);
}

static void test_python_equality(void **state) {
  (void)state;
  mp_obj_t *one = I(1), *onef = F(1.0), *yes = mp_obj_bool(true);
  assert_true(mp_obj_equal(one, onef));
  assert_true(mp_obj_equal(onef, yes));
  assert_true(mp_obj_equal(yes, one));
  mp_obj_t *nan = F(NAN);
  assert_false(mp_obj_equal(nan, nan));
  mp_obj_t *s = S("1"), *b = BYTES("1", 1);
  assert_false(mp_obj_equal(s, b));
  assert_false(mp_obj_equal(s, one));
  /* 2**70 == 2.0**70; 2**70 + 1 is not a double. */
  mp_obj_t *big = BIG("\0\0\0\0\0\0\0\0\x40", 9);
  mp_obj_t *bigf = F(ldexp(1, 70));
  mp_obj_t *big1 = BIG("\x01\0\0\0\0\0\0\0\x40", 9);
  assert_true(mp_obj_equal(big, bigf));
  assert_false(mp_obj_equal(big1, bigf));
  assert_false(mp_obj_equal(big, big1));
  /* Tuples and lists never equal; dicts and sets ignore order. */
  mp_obj_t *t = C(MP_OBJ_TUPLE, 2, I(1), I(2));
  mp_obj_t *l = C(MP_OBJ_LIST, 2, I(1), I(2));
  assert_false(mp_obj_equal(t, l));
  mp_obj_t *d1 = C(MP_OBJ_DICT, 2, S("a"), I(1), S("b"), F(2.0));
  mp_obj_t *d2 = C(MP_OBJ_DICT, 2, S("b"), I(2), S("a"), mp_obj_bool(true));
  mp_obj_t *d3 = C(MP_OBJ_DICT, 2, S("b"), I(3), S("a"), I(1));
  assert_true(mp_obj_equal(d1, d2));
  assert_false(mp_obj_equal(d1, d3));
  mp_obj_t *st = C(MP_OBJ_SET, 3, I(3), I(1), I(2));
  mp_obj_t *fs = C(MP_OBJ_FROZENSET, 3, F(1.0), I(2), I(3));
  mp_obj_t *fs2 = C(MP_OBJ_FROZENSET, 3, I(1), I(2), I(4));
  assert_true(mp_obj_equal(st, fs));
  assert_false(mp_obj_equal(fs, fs2));
  mp_obj_t *lnan = C(MP_OBJ_LIST, 1, F(NAN));
  assert_false(mp_obj_equal(lnan, lnan));
  mp_obj_t *objs[] = {one, onef, yes, nan, s,  b,  big, bigf, big1,
                      t,   l,    d1,  d2,  d3, st, fs,  fs2,  lnan};
  free_all(objs, sizeof objs / sizeof objs[0]);
}

static void test_dict_and_set_keys(void **state) {
  (void)state;
  mp_obj_t *d = mp_obj_dict();
  assert_mp_ok(mp_obj_dict_set(d, I(1), S("int")));
  assert_mp_ok(mp_obj_dict_set(d, F(1.0), S("float"))); /* same key */
  assert_mp_ok(mp_obj_dict_set(d, mp_obj_bool(true), S("bool")));
  assert_mp_ok(mp_obj_dict_set(d, C(MP_OBJ_TUPLE, 2, I(1), S("x")), I(5)));
  assert_mp_ok(mp_obj_dict_set(d, C(MP_OBJ_FROZENSET, 1, I(9)), I(6)));
  assert_int_equal(mp_obj_len(d), 3);
  assert_int_equal(mp_obj_kind(mp_obj_dict_key(d, 0)), MP_OBJ_INT);
  mp_obj_t *probe = F(1.0);
  assert_string_equal(mp_obj_as_str(mp_obj_dict_get(d, probe), NULL), "bool");
  mp_obj_t *tkey = C(MP_OBJ_TUPLE, 2, F(1.0), S("x"));
  int64_t v = 0;
  assert_mp_ok(mp_obj_as_int(mp_obj_dict_get(d, tkey), &v));
  assert_int_equal(v, 5);
  mp_obj_t *fkey = C(MP_OBJ_SET, 1, I(9)); /* a set finds a frozenset key */
  assert_null(mp_obj_dict_get(d, fkey));   /* unhashable probe: not found */
  /* Unhashable keys: lists, dicts, sets, tuples holding one. */
  assert_mp(MP_EINVAL, mp_obj_dict_set(d, mp_obj_list(), I(1)));
  assert_mp(MP_EINVAL,
            mp_obj_dict_set(d, C(MP_OBJ_TUPLE, 1, mp_obj_list()), I(1)));
  assert_mp(MP_EINVAL, mp_obj_set_add(fkey, mp_obj_dict()));
  assert_int_equal(mp_obj_len(d), 3);
  /* Sets keep one of equal elements. */
  mp_obj_t *s = C(MP_OBJ_SET, 4, I(0), mp_obj_bool(false), F(0.0), F(-0.0));
  assert_int_equal(mp_obj_len(s), 1);
  assert_true(mp_obj_set_contains(s, probe) == false);
  mp_obj_t *zero = I(0);
  assert_true(mp_obj_set_contains(s, zero));
  /* Many keys: the index grows. */
  mp_obj_t *big = mp_obj_dict();
  for (int i = 0; i < 5000; i++)
    assert_mp_ok(mp_obj_dict_set(big, I(i), I(-i)));
  for (int i = 0; i < 5000; i += 7) {
    mp_obj_t *k = F((double)i);
    assert_mp_ok(mp_obj_as_int(mp_obj_dict_get(big, k), &v));
    assert_int_equal(v, -i);
    mp_obj_free(k);
  }
  mp_obj_t *objs[] = {d, probe, tkey, fkey, s, zero, big};
  free_all(objs, sizeof objs / sizeof objs[0]);
}

static void test_big_ints(void **state) {
  (void)state;
  unsigned char le[600];
  for (size_t i = 0; i < sizeof le; i++)
    le[i] = (unsigned char)(i * 37 + 11);
  le[sizeof le - 1] = 0x95; /* negative */
  mp_obj_t *big = mp_obj_int_from_bytes(le, sizeof le);
  int64_t v;
  assert_mp(MP_EOVERFLOW, mp_obj_as_int(big, &v));
  size_t len = 0;
  assert_mp(MP_EOVERFLOW, mp_obj_int_to_bytes(big, NULL, 0, &len));
  assert_int_equal(len, sizeof le);
  unsigned char back[600];
  assert_mp_ok(mp_obj_int_to_bytes(big, back, sizeof back, &len));
  assert_memory_equal(back, le, sizeof le);
  for (int p = 0; p < N_PROTOCOLS; p++) {
    mp_obj_t *o = round_trip(big, protocols[p]);
    assert_true(mp_obj_equal(o, big));
    mp_obj_free(o);
  }
  /* Redundant sign bytes are dropped; small values come back as int64. */
  mp_obj_t *small = mp_obj_int_from_bytes("\xfe\xff\xff\xff\xff\xff\xff"
                                          "\xff\xff\xff\xff",
                                          11);
  assert_mp_ok(mp_obj_as_int(small, &v));
  assert_int_equal(v, -2);
  assert_mp_ok(mp_obj_int_to_bytes(small, back, sizeof back, &len));
  assert_int_equal(len, 1);
  mp_obj_t *zero = mp_obj_int_from_bytes(NULL, 0);
  assert_mp_ok(mp_obj_as_int(zero, &v));
  assert_int_equal(v, 0);
  /* More than 4300 digits cannot be written in protocols 0 and 1 (as in
   * Python), but can in 2+. */
  unsigned char huge[2000];
  memset(huge, 0x11, sizeof huge);
  mp_obj_t *h = mp_obj_int_from_bytes(huge, sizeof huge);
  void *buf;
  assert_mp(MP_EINVAL, mp_obj_dumps(h, MP_OBJ_PROTOCOL_0, &buf, &len));
  mp_obj_t *o = round_trip(h, 2);
  assert_true(mp_obj_equal(o, h));
  mp_obj_t *objs[] = {big, small, zero, h, o};
  free_all(objs, sizeof objs / sizeof objs[0]);
}

/* ---- Hostile pickles -------------------------------------------------------
 */

typedef struct hostile {
  const char *name;
  const char *data;
  size_t len;
  int want;
} hostile_t;

#define H(name, lit, want)                                                     \
  { name, lit, sizeof(lit) - 1, want }

static const hostile_t hostile[] = {
    H("empty", "", -EPROTO),
    H("no STOP", "\x80\x04K\x01", -EPROTO),
    H("STOP on empty stack", ".", -EPROTO),
    H("os.system via GLOBAL", "cos\nsystem\n(S'echo hi'\ntR.", -EPROTO),
    H("posix.system via STACK_GLOBAL",
      "\x80\x04\x8c\x05posix\x8c\x06system\x93\x8c\x02id\x85R.", -EPROTO),
    H("builtins.eval", "\x80\x04\x8c\x08builtins\x8c\x04eval\x93.", -EPROTO),
    H("a global as the value", "c__builtin__\nset\n.", -EPROTO),
    H("a global inside a list", "]c__builtin__\nset\na.", -EPROTO),
    H("set() of a str", "c__builtin__\nset\nX\x01\0\0\0a\x85R.", -EPROTO),
    H("encode to utf-8", "c_codecs\nencode\nX\x01\0\0\0aX\x05\0\0\0utf-8\x86R.",
      -EPROTO),
    H("INST", "(i__main__\nC\n.", -EPROTO),
    H("NEWOBJ", "\x80\x02c__builtin__\nset\n)\x81.", -EPROTO),
    H("BUILD", "}}b.", -EPROTO),
    H("PERSID", "Pid\n.", -EPROTO),
    H("EXT1", "\x80\x02\x82\x01.", -EPROTO),
    H("bytearray", "\x80\x05\x96\x01\0\0\0\0\0\0\0a.", -EPROTO),
    H("NEXT_BUFFER", "\x80\x05\x97.", -EPROTO),
    H("protocol 6", "\x80\x06N.", -EPROTO),
    H("unknown opcode", "\xff.", -EPROTO),
    H("BINBYTES8 of 2**62", "\x80\x04\x8e\0\0\0\0\0\0\0\x40.", -EPROTO),
    H("BINUNICODE of 2**31", "X\0\0\0\x80.", -EPROTO),
    H("LONG4 negative", "\x8b\0\0\0\x80.", -EPROTO),
    H("LONG4 huge", "\x8b\0\0\0\x7f.", -EPROTO),
    H("memo index huge", "N\x72\xff\xff\xff\xff.", -EPROTO),
    H("memo get missing", "h\x05.", -EPROTO),
    H("bad utf-8", "X\x01\0\0\0\xff.", -EPROTO),
    H("bad \\u escape", "V\\uzz\n.", -EPROTO),
    H("bad float", "Fabc\n.", -EPROTO),
    H("bad int", "I12x\n.", -EPROTO),
    H("APPEND to a dict", "}Na.", -EPROTO),
    H("SETITEM to a list", "]NNs.", -EPROTO),
    H("ADDITEMS to a frozenset", "(\x91(N\x90.", -EPROTO),
    H("list inside itself", "]q\0h\0a.", -EPROTO),
    H("list inside a list inside it", "]q\0]h\0ah\0\x85\x30h\0X\0\0\0\0a.",
      -EPROTO),
    H("unhashable key", "}]Ns.", -EPROTO),
    H("unhashable key, shared", /* found by fuzz_obj_loads: a leak */
      "c__builtin__\nset\np0\n((lp1\nI1\naI2\ndtp2\nRp3\n.", -EPROTO),
    H("odd dict", "(Nd.", -EPROTO),
    H("mark missing", "Nt.", -EPROTO),
    H("APPENDS below a mark", /* found by fuzz_obj_loads */
      "]q\0(q\1(K\1K\2eh\1]q\0(q\1(K\1h\1]q\0(qla", -EPROTO),
    H("APPEND below a mark", "](Na.", -EPROTO),
    H("stack underflow", "\x86.", -EPROTO),
};

static void test_hostile_pickles(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
    mp_obj_t *o = NULL;
    int rc = mp_obj_loads(hostile[i].data, hostile[i].len, &o);
    if (rc != hostile[i].want)
      fail_msg("%s: got %s (%s)", hostile[i].name, mp_errname(rc),
               mp_obj_last_error());
    assert_null(o);
  }
  mp_obj_t *o = NULL;
  assert_mp(-EPROTO, mp_obj_loads("cos\nsystem\n.", 12, &o));
  assert_string_equal(mp_obj_last_error(), "forbidden global os.system");
  assert_mp(MP_EINVAL, mp_obj_loads(NULL, 3, &o));
}

/* A pickle of n containers each inside the next: ]]]...aaa. */
static char *deep_lists(size_t n, size_t *len) {
  char *p = malloc(2 * n + 1);
  memset(p, ']', n);
  memset(p + n, 'a', n - 1);
  p[2 * n - 1] = '.';
  *len = 2 * n;
  return p;
}

static void test_limits(void **state) {
  (void)state;
  size_t len;
  mp_obj_t *o = NULL;
  char *p = deep_lists(999, &len);
  assert_mp_ok(mp_obj_loads(p, len, &o));
  /* Dumping and comparing walk it without recursion. */
  mp_obj_t *back = round_trip(o, 4);
  assert_true(mp_obj_equal(o, back));
  mp_obj_free(back);
  mp_obj_free(o);
  free(p);
  p = deep_lists(200000, &len);
  assert_mp(-E2BIG, mp_obj_loads(p, len, &o));
  mp_obj_limits_t deep = {.max_depth = 300000};
  assert_mp_ok(mp_obj_loads_limits(p, len, &deep, &o));
  void *buf;
  size_t buf_len;
  assert_mp_ok(mp_obj_dumps(o, 2, &buf, &buf_len));
  assert_mp(-E2BIG, mp_obj_loads(buf, buf_len, &back));
  assert_mp_ok(mp_obj_loads_limits(buf, buf_len, &deep, &back));
  mp_free(buf);
  assert_true(mp_obj_equal(o, back));
  mp_obj_free(back);
  mp_obj_free(o); /* freeing is iterative too */
  free(p);
  /* Nested tuples: ) then TUPLE1 again and again. */
  char t[100003];
  t[0] = ')';
  memset(t + 1, 0x85, 100000);
  t[100001] = '.';
  assert_mp(-E2BIG, mp_obj_loads(t, 100002, &o));
  /* The set limit applies to every call. */
  mp_obj_set_limits(&(mp_obj_limits_t){.max_depth = 2});
  assert_mp(-E2BIG, mp_obj_loads("]]]aa.", 6, &o));
  assert_mp_ok(mp_obj_loads("]]a.", 4, &o));
  mp_obj_free(o);
  mp_obj_set_limits(NULL);
  assert_mp_ok(mp_obj_loads("]]]aa.", 6, &o));
  mp_obj_free(o);
  /* A memo bomb: each tuple holds the previous one twice, 64 times over. */
  char bomb[1024];
  size_t n = 0;
  bomb[n++] = ']';
  bomb[n++] = 'q';
  bomb[n++] = 0;
  for (int i = 0; i < 64; i++) {
    memcpy(bomb + n, "h\0h\0\x86q\0", 7);
    n += 7;
  }
  bomb[n++] = '.';
  assert_mp(-E2BIG, mp_obj_loads(bomb, n, &o));
  /* A big bytes beyond an explicit size limit is refused (before it is
   * copied). */
  char bb[2006] = "B\xd0\x07\0\0";
  bb[2005] = '.';
  mp_obj_limits_t small = {.max_size = 1000};
  assert_mp(-E2BIG, mp_obj_loads_limits(bb, sizeof bb, &small, &o));
  assert_mp_ok(mp_obj_loads(bb, sizeof bb, &o));
  assert_int_equal(mp_obj_len(o), 2000);
  mp_obj_free(o);
}

/* Every prefix of a valid pickle, and random damage to it, fails cleanly
 * (and under ASan, without touching anything it should not). */
static void test_truncated_and_damaged(void **state) {
  (void)state;
  mp_obj_t *samples[MAX_SAMPLES];
  size_t n = c_samples(samples);
  mp_obj_t *all = mp_obj_list();
  for (size_t i = 0; i < n; i++)
    assert_mp_ok(mp_obj_append(all, samples[i]));
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  for (int p = 0; p < N_PROTOCOLS; p++) {
    void *buf;
    size_t len;
    assert_mp_ok(mp_obj_dumps(all, protocols[p], &buf, &len));
    for (size_t cut = 0; cut < len; cut++) {
      mp_obj_t *o = NULL;
      int rc = mp_obj_loads(buf, cut, &o);
      if (rc == 0) /* a prefix can be a whole pickle of its own */
        mp_obj_free(o);
      else
        assert_true(rc == -EPROTO || rc == -E2BIG);
    }
    unsigned char *copy = malloc(len);
    for (int round = 0; round < 3000; round++) {
      memcpy(copy, buf, len);
      for (int k = 0; k < 4; k++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        copy[rng % len] = (unsigned char)(rng >> 40);
      }
      mp_obj_t *o = NULL;
      if (mp_obj_loads(copy, len, &o) == 0) {
        void *again;
        size_t again_len;
        if (mp_obj_dumps(o, 4, &again, &again_len) == 0)
          mp_free(again);
        (void)mp_obj_equal(o, all);
        mp_obj_free(o);
      }
    }
    free(copy);
    mp_free(buf);
  }
  mp_obj_free(all);
}

/* ---- Large values ---------------------------------------------------------
 */

static void test_large_values(void **state) {
  (void)state;
  size_t big = 100u << 20;
  uint8_t *data = pypeer_pattern(big);
  mp_obj_t *b = mp_obj_bytes(data, big);
  assert_non_null(b);
  for (int p = 3; p <= 5; p++) {
    mp_obj_t *back = round_trip(b, p);
    size_t len = 0;
    const void *got = mp_obj_as_bytes(back, &len);
    assert_int_equal(len, big);
    assert_memory_equal(got, data, big);
    mp_obj_free(back);
  }
  mp_obj_free(b);
  free(data);
  mp_obj_t *list = mp_obj_list();
  for (int64_t i = 0; i < 1000000; i++)
    assert_mp_ok(mp_obj_append(list, I(i * 7919 - 3000000)));
  for (int p = 1; p <= 5; p++) {
    mp_obj_t *back = round_trip(list, p);
    assert_int_equal(mp_obj_len(back), 1000000);
    assert_true(mp_obj_equal(back, list));
    mp_obj_free(back);
  }
  mp_obj_free(list);
}

/* ---- Threads and misuse ------------------------------------------------- */

typedef struct reader_arg {
  const mp_obj_t *shared; /* read by every thread at once */
  const void *pickle;
  size_t len;
  bool ok;
} reader_arg_t;

static void *reader(void *p) {
  reader_arg_t *a = p;
  a->ok = true;
  for (int i = 0; i < 200 && a->ok; i++) {
    mp_obj_t *o = NULL;
    void *buf;
    size_t len;
    /* Lookups with keys taken from the shared value itself: their hashes
     * are computed and cached by several threads at once. */
    const mp_obj_t *key = mp_obj_dict_key(a->shared, (size_t)i % 3);
    a->ok = mp_obj_loads(a->pickle, a->len, &o) == 0 &&
            mp_obj_equal(o, a->shared) &&
            mp_obj_dict_get(a->shared, key) != NULL &&
            mp_obj_dumps(a->shared, i % 5 + 1, &buf, &len) == 0;
    if (a->ok)
      mp_free(buf);
    mp_obj_free(o);
  }
  return NULL;
}

static void test_threads_read_one_value(void **state) {
  (void)state;
  mp_obj_t *shared =
      C(MP_OBJ_DICT, 3, C(MP_OBJ_TUPLE, 2, S("a"), C(MP_OBJ_TUPLE, 1, I(1))),
        I(1), S("b"), C(MP_OBJ_LIST, 2, F(1.5), BYTES("x", 1)),
        C(MP_OBJ_FROZENSET, 2, S("c"), BIG("\0\0\0\0\0\0\0\0\x40", 9)),
        mp_obj_none());
  void *pickle;
  size_t len;
  assert_mp_ok(mp_obj_dumps(shared, 4, &pickle, &len));
  mp_obj_t *fresh; /* its hashes not computed yet */
  assert_mp_ok(mp_obj_loads(pickle, len, &fresh));
  pthread_t t[4];
  reader_arg_t args[4];
  for (int i = 0; i < 4; i++) {
    args[i] = (reader_arg_t){fresh, pickle, len, false};
    assert_int_equal(pthread_create(&t[i], NULL, reader, &args[i]), 0);
  }
  for (int i = 0; i < 4; i++) {
    pthread_join(t[i], NULL);
    assert_true(args[i].ok);
  }
  mp_free(pickle);
  mp_obj_free(fresh);
  mp_obj_free(shared);
}

/* Freeing an item that belongs to a container is caught, not a double
 * free later. */
static void test_free_of_an_item_aborts(void **state) {
  (void)state;
  mp_obj_t *list = C(MP_OBJ_LIST, 1, S("item"));
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDERR_FILENO);
    mp_obj_free((mp_obj_t *)mp_obj_item(list, 0));
    _exit(0);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
  mp_obj_free(list);
}

/* ---- Python on the other end -----------------------------------------------
 */

static int send_one(mp_conn_t *w, int protocol, const mp_obj_t *o) {
  if (protocol == VIA_SEND)
    return mp_conn_send(w, o);
  void *buf;
  size_t len;
  int rc = mp_obj_dumps(o, protocol, &buf, &len);
  if (rc == 0) {
    rc = mp_conn_send_bytes(w, buf, len);
    mp_free(buf);
  }
  return rc;
}

/* Answers obj_peer.py's run(): takes the count, echoes each value (checked
 * against the C sample of the same index where there is one), then sends
 * the C samples, in that protocol or VIA_SEND. 0 or a failure. */
static int c_side(mp_conn_t *r, mp_conn_t *w, int protocol) {
  mp_obj_t *samples[MAX_SAMPLES];
  size_t n = c_samples(samples);
  mp_obj_t *o = NULL;
  int64_t count = 0;
  int rc = mp_conn_recv(r, &o);
  if (rc == 0) {
    rc = mp_obj_as_int(o, &count);
    mp_obj_free(o);
  }
  for (int64_t k = 0; rc == 0 && k < count; k++) {
    rc = mp_conn_recv(r, &o);
    if (rc < 0) {
      print_message("echo %lld: %s (%s)\n", (long long)k, mp_errname(rc),
                    mp_obj_last_error());
      break;
    }
    if ((size_t)k < n && !same(o, samples[k])) {
      print_message("python sample %lld differs in C\n", (long long)k);
      rc = -EBADMSG;
    }
    if (rc == 0)
      rc = send_one(w, protocol, o);
    mp_obj_free(o);
  }
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = send_one(w, protocol, samples[i]);
  free_all(samples, n);
  return rc;
}

static const char *proto_arg(int protocol, char *buf) {
  if (protocol == VIA_SEND)
    return "send";
  snprintf(buf, 8, "%d", protocol == MP_OBJ_PROTOCOL_0 ? 0 : protocol & 7);
  return buf;
}

/* Checks the peer's closing line and exit. */
static void finish_peer(pypeer_t *peer, int rc, const char *what,
                        const char *version) {
  char line[128] = "";
  if (rc == 0)
    pypeer_read_line(peer, line, sizeof line, PEER_TIMEOUT);
  int status = pypeer_finish(peer, PEER_TIMEOUT);
  mp_obj_t *s[MAX_SAMPLES];
  size_t n = c_samples(s);
  free_all(s, n);
  char want[64];
  snprintf(want, sizeof want, "CHECKED %zu", n);
  bool ok = rc == 0 && pypeer_exited_ok(status) && strstr(line, want);
  print_message("interop python%s  %-40s %s\n", version, what,
                ok ? "ok" : "FAILED");
  if (!ok)
    fail_msg("%s: rc %s, peer said '%s'", what, mp_errname(rc), line);
}

static void over_socketpair(const char *exe, const char *version,
                            int protocol) {
  mp_conn_t *a, *b;
  assert_mp_ok(mp_pipe(&a, &b, true));
  int fd = mp_conn_fileno(b);
  char fdtext[16], pbuf[8], what[64];
  snprintf(fdtext, sizeof fdtext, "%d", fd);
  const char *parg = proto_arg(protocol, pbuf);
  char *argv[] = {(char *)exe,  PYPEER_SCRIPT("obj_peer.py"),
                  "echo",       fdtext,
                  (char *)parg, NULL};
  pypeer_t peer;
  assert_mp_ok(pypeer_start(&peer, argv, &fd, 1, true));
  mp_conn_close(b);
  int rc = c_side(a, a, protocol);
  mp_conn_close(a);
  snprintf(what, sizeof what, "socketpair, protocol %s", parg);
  finish_peer(&peer, rc, what, version);
  mp_conn_free(a);
  mp_conn_free(b);
}

static void over_pipes(const char *exe, const char *version, int protocol) {
  mp_conn_t *to_r, *to_w, *from_r, *from_w;
  assert_mp_ok(mp_pipe(&to_r, &to_w, false));
  assert_mp_ok(mp_pipe(&from_r, &from_w, false));
  int keep[2] = {mp_conn_fileno(to_r), mp_conn_fileno(from_w)};
  char rfd[16], wfd[16], pbuf[8], what[64];
  snprintf(rfd, sizeof rfd, "%d", keep[0]);
  snprintf(wfd, sizeof wfd, "%d", keep[1]);
  const char *parg = proto_arg(protocol, pbuf);
  char *argv[] = {(char *)exe, PYPEER_SCRIPT("obj_peer.py"),
                  "echo2",     rfd,
                  wfd,         (char *)parg,
                  NULL};
  pypeer_t peer;
  assert_mp_ok(pypeer_start(&peer, argv, keep, 2, true));
  mp_conn_close(to_r);
  mp_conn_close(from_w);
  int rc = c_side(from_r, to_w, protocol);
  mp_conn_close(to_w);
  snprintf(what, sizeof what, "one-way pipes, protocol %s", parg);
  finish_peer(&peer, rc, what, version);
  mp_conn_free(to_r);
  mp_conn_free(to_w);
  mp_conn_free(from_r);
  mp_conn_free(from_w);
}

static void over_listener(const char *exe, const char *version, int protocol) {
  mp_listener_t *l = mp_listener_new("tcp:127.0.0.1:0", KEY, strlen(KEY));
  assert_non_null(l);
  char pbuf[8], what[64];
  const char *parg = proto_arg(protocol, pbuf);
  char *argv[] = {(char *)exe, PYPEER_SCRIPT("obj_peer.py"),
                  "client",    (char *)mp_listener_address(l),
                  KEY_HEX,     (char *)parg,
                  NULL};
  pypeer_t peer;
  assert_mp_ok(pypeer_start(&peer, argv, NULL, 0, true));
  mp_conn_t *c = NULL;
  int rc = mp_listener_accept(l, PEER_TIMEOUT, &c);
  if (rc == 0) {
    rc = c_side(c, c, protocol);
    mp_conn_free(c);
  }
  snprintf(what, sizeof what, "Listener <- Client, protocol %s", parg);
  finish_peer(&peer, rc, what, version);
  mp_listener_free(l);
}

static void python_matrix(const char *version) {
  char exe[512];
  if (!pypeer_find_for_test(version, exe, sizeof exe))
    skip();
  for (int p = 0; p < N_PROTOCOLS; p++)
    over_socketpair(exe, version, protocols[p]);
  over_socketpair(exe, version, VIA_SEND);
  over_pipes(exe, version, VIA_SEND);
  over_pipes(exe, version, 2);
  over_listener(exe, version, VIA_SEND);
  over_listener(exe, version, MP_OBJ_PROTOCOL_0);
}

static void test_python_3_8(void **state) {
  (void)state;
  python_matrix("3.8");
}

static void test_python_3_9(void **state) {
  (void)state;
  python_matrix("3.9");
}

static void test_python_3_10(void **state) {
  (void)state;
  python_matrix("3.10");
}

static void test_python_3_11(void **state) {
  (void)state;
  python_matrix("3.11");
}

static void test_python_3_12(void **state) {
  (void)state;
  python_matrix("3.12");
}

static void test_python_3_13(void **state) {
  (void)state;
  python_matrix("3.13");
}

int main(int argc, char **argv) {
  const struct CMUnitTest tests[] = {
      mpt_test(test_every_kind_round_trips),
      mpt_test(test_getters_and_wrong_kinds),
      mpt_test(test_python_equality),
      mpt_test(test_dict_and_set_keys),
      mpt_test(test_big_ints),
      mpt_test(test_hostile_pickles),
      mpt_test(test_limits),
      mpt_test(test_truncated_and_damaged),
      mpt_test(test_large_values),
      mpt_test(test_threads_read_one_value),
      mpt_test(test_free_of_an_item_aborts),
      mpt_test(test_python_3_8),
      mpt_test(test_python_3_9),
      mpt_test(test_python_3_10),
      mpt_test(test_python_3_11),
      mpt_test(test_python_3_12),
      mpt_test(test_python_3_13),
  };
  return MPT_RUN(argc, argv, tests);
}
