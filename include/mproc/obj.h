/* mproc: Python values and pickle (Connection.send / Connection.recv).
 *
 * An mp_obj_t is one of Python's basic values: None, bool, int (of any
 * size), float, str, bytes, and tuples, lists, dicts, sets and frozensets
 * of them. mp_obj_dumps and mp_obj_loads read and write Python's pickle
 * format (protocols 0 to 5) for exactly these kinds, so a C program and an
 * unchanged Python program exchange objects: mp_conn_send / mp_conn_recv
 * are Python's Connection.send / Connection.recv.
 *
 * Ownership. Constructors and mp_obj_loads return an object the caller owns
 * and frees with mp_obj_free. mp_obj_append, mp_obj_dict_set and
 * mp_obj_set_add take the items they are given, also when they fail: the
 * item pointers must not be used afterwards. So a container is built
 * bottom-up: fill a child completely, then insert it. The getters return
 * pointers into their container, valid until it is freed.
 *
 * Threads. An object may be read from several threads at once; changing
 * one while another thread reads it is not supported.
 *
 * Loading is safe on hostile input: mp_obj_loads never executes or imports
 * anything. Of pickle's globals it accepts only those Python itself emits
 * for these kinds (bytes through _codecs.encode and bytes(), set() and
 * frozenset() in protocols below 4); anything else (os.system, any class)
 * is refused with -EPROTO. Nesting is bounded (no recursion on the C stack
 * follows it), and so is the memory a small input can make it allocate:
 * see mp_obj_limits_t. mp_obj_last_error() says what was refused. */
#ifndef MPROC_OBJ_H
#define MPROC_OBJ_H

#include <stdint.h>

#include "conn.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mp_obj mp_obj_t;

typedef enum mp_obj_kind {
  MP_OBJ_NONE,
  MP_OBJ_BOOL,
  MP_OBJ_INT,
  MP_OBJ_FLOAT,
  MP_OBJ_STR,
  MP_OBJ_BYTES,
  MP_OBJ_TUPLE,
  MP_OBJ_LIST,
  MP_OBJ_DICT,
  MP_OBJ_SET,
  MP_OBJ_FROZENSET
} mp_obj_kind_t;

/* ---- Making values ---------------------------------------------------------
 * Each returns a new object, or NULL with errno (ENOMEM; EINVAL as said). */
MP_API mp_obj_t *mp_obj_none(void);
MP_API mp_obj_t *mp_obj_bool(bool v);
MP_API mp_obj_t *mp_obj_int(int64_t v);
/* An int of any size from its two's complement, little-endian bytes:
 * Python's int.from_bytes(buf, "little", signed=True) (len 0 is 0). */
MP_API mp_obj_t *mp_obj_int_from_bytes(const void *buf, size_t len);
MP_API mp_obj_t *mp_obj_float(double v);
/* A str from UTF-8 (len bytes, NULs allowed). Invalid UTF-8 (also encoded
 * surrogates): NULL, EINVAL. */
MP_API mp_obj_t *mp_obj_str(const char *utf8, size_t len);
MP_API mp_obj_t *mp_obj_bytes(const void *buf, size_t len);
/* Empty containers; tuples and lists grow with mp_obj_append, dicts with
 * mp_obj_dict_set (insertion order is kept, as Python's), sets and
 * frozensets with mp_obj_set_add. */
MP_API mp_obj_t *mp_obj_tuple(void);
MP_API mp_obj_t *mp_obj_list(void);
MP_API mp_obj_t *mp_obj_dict(void);
MP_API mp_obj_t *mp_obj_set(void);
MP_API mp_obj_t *mp_obj_frozenset(void);

/* list.append (and building a tuple). Takes item. MP_EINVAL: seq is not a
 * tuple or list, or is inside another container, item is NULL or seq
 * itself; -ENOMEM. */
MP_API int mp_obj_append(mp_obj_t *seq, mp_obj_t *item);
/* d[key] = value. Takes both. A key equal to one already there (Python's
 * ==, so 1, 1.0 and True are one key) keeps the first key and replaces the
 * value. MP_EINVAL: d is not a dict (or is inside another container), a
 * NULL argument, an unhashable key (list, dict, set, or a tuple holding
 * one: Python's TypeError); -ENOMEM. */
MP_API int mp_obj_dict_set(mp_obj_t *d, mp_obj_t *key, mp_obj_t *value);
/* set.add (and building a frozenset). Takes item. Errors as dict_set. */
MP_API int mp_obj_set_add(mp_obj_t *s, mp_obj_t *item);

/* ---- Reading values ----------------------------------------------------- */
/* The kind; MP_OBJ_NONE for NULL. */
MP_API mp_obj_kind_t mp_obj_kind(const mp_obj_t *o);
/* len(o): str in code points, bytes in bytes, containers in items; 0 for
 * the other kinds. */
MP_API size_t mp_obj_len(const mp_obj_t *o);
/* o[i] of a tuple or list; also the i-th element of a set or frozenset in
 * insertion order (Python gives sets no order; this is how to read them).
 * NULL out of range or for other kinds. */
MP_API const mp_obj_t *mp_obj_item(const mp_obj_t *seq, size_t i);
/* d.get(key): NULL when absent, not a dict, or key unhashable. */
MP_API const mp_obj_t *mp_obj_dict_get(const mp_obj_t *d, const mp_obj_t *key);
/* The i-th key and value in insertion order; NULL out of range. */
MP_API const mp_obj_t *mp_obj_dict_key(const mp_obj_t *d, size_t i);
MP_API const mp_obj_t *mp_obj_dict_value(const mp_obj_t *d, size_t i);
/* key in s, for sets and frozensets (false for other kinds). */
MP_API bool mp_obj_set_contains(const mp_obj_t *s, const mp_obj_t *key);

/* The C value. MP_EINVAL for another kind. as_int takes an int or a bool
 * (a bool is an int in Python) and gives MP_EOVERFLOW beyond int64 (read
 * those with mp_obj_int_to_bytes). as_float takes a float, or an int or
 * bool that fits int64 (converted as float(x)). */
MP_API int mp_obj_as_bool(const mp_obj_t *o, bool *v);
MP_API int mp_obj_as_int(const mp_obj_t *o, int64_t *v);
MP_API int mp_obj_as_float(const mp_obj_t *o, double *v);
/* An int (or bool) as its shortest two's complement little-endian bytes
 * (0 is no bytes), Python's int.to_bytes(n, "little", signed=True) with
 * the least n. *len gets the length; MP_EOVERFLOW when cap is smaller
 * (nothing written), MP_EINVAL for another kind. buf may be NULL with cap
 * 0 to ask for the length. */
MP_API int mp_obj_int_to_bytes(const mp_obj_t *o, void *buf, size_t cap,
                               size_t *len);
/* A str's UTF-8 (NUL-terminated; *len_bytes without the NUL, may be NULL),
 * or NULL for another kind. A str loaded from a pickle may hold lone
 * surrogates (Python allows them): they come encoded as in Python's
 * "surrogatepass" error handler. */
MP_API const char *mp_obj_as_str(const mp_obj_t *o, size_t *len_bytes);
/* A bytes' content, or NULL for another kind. */
MP_API const void *mp_obj_as_bytes(const mp_obj_t *o, size_t *len);

/* Python's a == b: numbers by value across kinds (1 == 1.0 == True, NaN is
 * unequal to everything), str and bytes by content, tuples and lists item
 * by item (a tuple never equals a list), dicts and sets regardless of
 * order, a set equal to the frozenset of the same elements. */
MP_API bool mp_obj_equal(const mp_obj_t *a, const mp_obj_t *b);

/* Frees an object returned by a constructor or mp_obj_loads, and all it
 * holds. NULL does nothing. Passing an object that is inside a container
 * (from a getter) aborts with a message. */
MP_API void mp_obj_free(mp_obj_t *o);

/* ---- Pickle ----------------------------------------------------------------
 * Protocol numbers for mp_obj_dumps. 0 is Python's pickle.DEFAULT_PROTOCOL
 * (4, as in Python 3.8 to 3.13), so protocol 0 itself (the text protocol)
 * is asked for with MP_OBJ_PROTOCOL_0; a negative value other than that is
 * the highest, as in Python. */
#define MP_OBJ_PROTOCOL_DEFAULT 4
#define MP_OBJ_PROTOCOL_HIGHEST 5
#define MP_OBJ_PROTOCOL_0       (-100)

/* pickle.dumps(o, protocol): the pickle in *buf (malloc'ed, free with
 * mp_free) and its length in *len. Each value is written the way Python's
 * pickler writes it in that protocol (bytes as _codecs.encode below 3,
 * sets through set() below 4), without the memo and frames (which Python
 * does not need to load it). MP_EINVAL: NULL arguments, a protocol out of
 * range, a value that protocol cannot hold (over 4 GiB of bytes or str
 * below protocol 4; an int of more than 4300 decimal digits in protocols 0
 * and 1, as Python); -ENOMEM. */
MP_API int mp_obj_dumps(const mp_obj_t *o, int protocol, void **buf,
                        size_t *len);

/* Limits of mp_obj_loads. 0 in a field means its default. */
typedef struct mp_obj_limits {
  /* Nesting of containers: default 1000 (the depth Python's own pickler
   * reaches before its RecursionError). */
  size_t max_depth;
  /* Bytes the loaded value may take in memory, counting a part that the
   * pickle shares (through its memo) once for every place it appears.
   * Default: 64 MiB plus 32 times the pickle's length, which every value
   * Python writes fits, while a few bytes cannot ask for gigabytes. */
  size_t max_size;
} mp_obj_limits_t;

/* Sets the limits mp_obj_loads and mp_conn_recv use in every thread (NULL:
 * back to the defaults). */
MP_API void mp_obj_set_limits(const mp_obj_limits_t *limits);

/* pickle.loads(buf) for the kinds above: the value in *out (free with
 * mp_obj_free). Accepts every pickle Python writes for them in protocols 0
 * to 5. Errors (nothing in *out):
 *   -EPROTO  not such a pickle: truncated, an unknown or unsupported
 *            opcode, a global other than those above, a malformed value,
 *            an unhashable dict key, an object inside itself;
 *   -E2BIG   beyond the limits (depth or size);
 *   MP_EINVAL NULL arguments; -ENOMEM.
 * mp_obj_last_error() then describes the failure. */
MP_API int mp_obj_loads(const void *buf, size_t len, mp_obj_t **out);
/* As mp_obj_loads with the given limits (NULL: the ones set). */
MP_API int mp_obj_loads_limits(const void *buf, size_t len,
                               const mp_obj_limits_t *limits, mp_obj_t **out);

/* What the last failed mp_obj_loads of this thread refused ("forbidden
 * global os.system", "truncated pickle", ...). Never NULL. */
MP_API const char *mp_obj_last_error(void);

/* Connection.send(obj): pickles o with Python's default protocol and sends
 * it as one message. Errors of mp_obj_dumps and mp_conn_send_bytes. */
MP_API int mp_conn_send(mp_conn_t *c, const mp_obj_t *o);
/* Connection.recv(): receives one message and loads it with the limits
 * set. Errors of mp_conn_recv_bytes and mp_obj_loads (after a load error
 * the message is consumed, the connection stays usable). */
MP_API int mp_conn_recv(mp_conn_t *c, mp_obj_t **out);

#ifdef __cplusplus
}
#endif
#endif
