/* Ints beyond int64: kept as their shortest two's complement little-endian
 * bytes (pickle's own LONG1/LONG4 form), converted to and from decimal text
 * (protocols 0 and 1) and compared with doubles. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "obj/obj_internal.h"

/* Python's sys.get_int_max_str_digits() default: longer decimal ints are
 * refused by its int() and repr(), so its pickles never hold them. */
#define MAX_DIGITS 4300

/* Drops the sign-extension bytes that do not change the value. */
static size_t shortest(const unsigned char *le, size_t len) {
  while (len > 0) {
    unsigned char top = le[len - 1];
    bool next_negative = len > 1 && (le[len - 2] & 0x80);
    if ((top == 0 && (len == 1 || !next_negative)) ||
        (top == 0xff && next_negative))
      len--;
    else
      break;
  }
  return len;
}

size_t mp__int64_bytes(int64_t v, unsigned char out[8]) {
  uint64_t u = (uint64_t)v;
  for (int i = 0; i < 8; i++)
    out[i] = (unsigned char)(u >> (8 * i));
  return shortest(out, 8);
}

const unsigned char *mp__int_bytes(const mp_obj_t *o, unsigned char small[8],
                                   size_t *len) {
  if (o->flags & MP__CELL_BIG) {
    *len = o->u.body->len;
    return mp__body_data(o->u.body);
  }
  *len = mp__int64_bytes(o->u.i, small);
  return small;
}

int mp__int_cell(mp_obj_t *cell, const unsigned char *le, size_t len) {
  len = shortest(le, len);
  if (len <= 8) {
    uint64_t u = len && (le[len - 1] & 0x80) ? UINT64_MAX : 0;
    for (size_t i = 0; i < len; i++) {
      u &= ~((uint64_t)0xff << (8 * i));
      u |= (uint64_t)le[i] << (8 * i);
    }
    *cell = (mp_obj_t){.kind = MP_OBJ_INT, .u.i = (int64_t)u};
    return 0;
  }
  mp__body_t *b = mp__body_new(len);
  if (!b)
    return -ENOMEM;
  b->kind = MP_OBJ_INT;
  memcpy(mp__body_data(b), le, len);
  *cell = (mp_obj_t){.kind = MP_OBJ_INT, .flags = MP__CELL_BIG, .u.body = b};
  return 0;
}

/* Two's complement negation in place. */
static void negate(unsigned char *le, size_t len) {
  unsigned carry = 1;
  for (size_t i = 0; i < len; i++) {
    unsigned v = (unsigned char)~le[i] + carry;
    le[i] = (unsigned char)v;
    carry = v >> 8;
  }
}

int mp__int_from_decimal(mp_obj_t *cell, const char *text, size_t len) {
  size_t i = 0;
  bool negative = false;
  if (i < len && (text[i] == '-' || text[i] == '+'))
    negative = text[i++] == '-';
  size_t digits = len - i;
  if (digits == 0 || digits > MAX_DIGITS)
    return -EPROTO;
  /* Magnitude in base 2^32 limbs, least significant first. */
  size_t cap = digits / 9 + 2, n = 0;
  uint32_t *limbs = calloc(cap, sizeof *limbs);
  if (!limbs)
    return -ENOMEM;
  for (; i < len; i++) {
    if (text[i] < '0' || text[i] > '9') {
      free(limbs);
      return -EPROTO;
    }
    uint64_t carry = (uint64_t)(text[i] - '0');
    for (size_t k = 0; k < n; k++) {
      uint64_t v = (uint64_t)limbs[k] * 10 + carry;
      limbs[k] = (uint32_t)v;
      carry = v >> 32;
    }
    if (carry)
      limbs[n++] = (uint32_t)carry;
  }
  size_t nbytes = 4 * n + 1; /* one more for the sign bit */
  unsigned char *le = calloc(nbytes, 1);
  if (!le) {
    free(limbs);
    return -ENOMEM;
  }
  for (size_t k = 0; k < n; k++)
    for (int b = 0; b < 4; b++)
      le[4 * k + (size_t)b] = (unsigned char)(limbs[k] >> (8 * b));
  free(limbs);
  if (negative)
    negate(le, nbytes);
  int rc = mp__int_cell(cell, le, nbytes);
  free(le);
  return rc;
}

int mp__int_to_decimal(const mp_obj_t *o, char **text, size_t *len) {
  unsigned char small[8];
  size_t n;
  const unsigned char *src = mp__int_bytes(o, small, &n);
  if (n * 8 > MAX_DIGITS * 3.33) /* more than 4300 digits: Python refuses */
    return MP_EINVAL;
  bool negative = n && (src[n - 1] & 0x80);
  size_t nlimbs = n / 4 + 1;
  uint32_t *limbs = calloc(nlimbs, sizeof *limbs);
  char *out = malloc(n * 3 + 4);
  unsigned char *mag = malloc(n + 1);
  if (!limbs || !out || !mag) {
    free(limbs);
    free(out);
    free(mag);
    return -ENOMEM;
  }
  memcpy(mag, src, n);
  if (negative)
    negate(mag, n);
  for (size_t i = 0; i < n; i++)
    limbs[i / 4] |= (uint32_t)mag[i] << (8 * (i % 4));
  free(mag);
  /* Repeated division by 10^9, nine digits at a time, from the right. */
  size_t pos = n * 3 + 3, used = nlimbs;
  out[pos] = 0;
  do {
    uint64_t rem = 0;
    for (size_t k = used; k-- > 0;) {
      uint64_t v = (rem << 32) | limbs[k];
      limbs[k] = (uint32_t)(v / 1000000000u);
      rem = v % 1000000000u;
    }
    while (used > 0 && limbs[used - 1] == 0)
      used--;
    for (int d = 0; d < 9 && (used > 0 || rem > 0 || d == 0); d++) {
      out[--pos] = (char)('0' + rem % 10);
      rem /= 10;
    }
  } while (used > 0);
  if (negative)
    out[--pos] = '-';
  free(limbs);
  *len = n * 3 + 3 - pos;
  memmove(out, out + pos, *len + 1);
  *text = out;
  return 0;
}

/* The two's complement bytes of an integral double, shortest; NULL when
 * d is not integral or finite. */
static unsigned char *double_bytes(double d, size_t *len) {
  if (!isfinite(d) || d != floor(d))
    return NULL;
  int exp;
  double m = frexp(fabs(d), &exp); /* |d| = m * 2^exp, m in [0.5, 1) */
  uint64_t mant = (uint64_t)ldexp(m, 53);
  int shift = exp - 53;
  size_t n = (size_t)(exp > 0 ? exp : 0) / 8 + 2;
  unsigned char *le = calloc(n, 1);
  if (!le)
    return NULL;
  if (shift < 0)
    mant >>= -shift, shift = 0;
  for (int bit = 0; bit < 64; bit++)
    if (mant >> bit & 1) {
      size_t at = (size_t)(bit + shift);
      le[at / 8] |= (unsigned char)(1u << (at % 8));
    }
  if (d < 0)
    negate(le, n);
  *len = shortest(le, n);
  return le;
}

bool mp__bigint_equals_double(const unsigned char *le, size_t len, double d) {
  size_t n;
  unsigned char *mine = double_bytes(d, &n);
  bool equal = mine && n == len && memcmp(mine, le, len) == 0;
  free(mine);
  return equal;
}

double mp__bigint_to_double(const unsigned char *le, size_t len, bool *exact) {
  bool negative = len && (le[len - 1] & 0x80);
  double d = 0;
  unsigned char *mag = malloc(len ? len : 1);
  if (!mag) {
    *exact = false;
    return 0;
  }
  memcpy(mag, le, len);
  if (negative)
    negate(mag, len);
  for (size_t i = len; i-- > 0;)
    d = d * 256.0 + mag[i];
  free(mag);
  if (negative)
    d = -d;
  *exact = mp__bigint_equals_double(le, len, d);
  return d;
}
