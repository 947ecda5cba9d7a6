/* Dicts and lists behind a manager's remote handles (remote.c): the client
 * side of each operation, and the packing of items lists the server uses
 * too. */
#ifndef MPROC_CONTAINERS_REMOTE_H
#define MPROC_CONTAINERS_REMOTE_H

#include "queue/remote.h"

#define MP__DICT_REMOTE(d) mp__remote_of((d), MP__REMOTE_DICT)
#define MP__LIST_REMOTE(l) mp__remote_of((l), MP__REMOTE_LIST)

void *mp__remote_pack(const void *const *bufs, const size_t *lens, size_t n,
                      size_t *total);
bool mp__remote_unpack(const unsigned char **at, const unsigned char *end,
                       const void **p, size_t *len);

/* An operation with no argument and no result (clear, close). */
int mp__remote_simple(mp__remote_t *r, uint32_t op);
/* len(): op MP__OP_DICT_LEN or MP__OP_LIST_LEN. */
int mp__remote_len(mp__remote_t *r, uint32_t op, size_t *n);

int mp__remote_dict_set(mp__remote_t *r, const void *key, size_t klen,
                        const void *val, size_t vlen);
int mp__remote_dict_get(mp__remote_t *r, const void *key, size_t klen,
                        void **val, size_t *vlen);
int mp__remote_dict_get_into(mp__remote_t *r, const void *key, size_t klen,
                             void *buf, size_t cap, size_t *vlen);
int mp__remote_dict_pop(mp__remote_t *r, const void *key, size_t klen,
                        void **val, size_t *vlen);
int mp__remote_dict_contains(mp__remote_t *r, const void *key, size_t klen);
int mp__remote_dict_setdefault(mp__remote_t *r, const void *key, size_t klen,
                               const void *dflt, size_t dlen, void **val,
                               size_t *vlen);
int mp__remote_dict_update(mp__remote_t *r, const mp_dict_item_t *items,
                           size_t n);
int mp__remote_dict_items(mp__remote_t *r, bool values, mp_dict_item_t **items,
                          size_t *n);
int mp__remote_dict_modify(mp__remote_t *r, const void *key, size_t klen,
                           mp_dict_modify_cb fn, void *arg);

/* append/insert/set (op, index, item) and get/pop (op, index -> item). */
int mp__remote_list_put(mp__remote_t *r, uint32_t op, long index,
                        const void *buf, size_t len);
int mp__remote_list_take(mp__remote_t *r, uint32_t op, long index, void **buf,
                         size_t *len);
int mp__remote_list_extend(mp__remote_t *r, const mp_list_item_t *items,
                           size_t n);
int mp__remote_list_slice(mp__remote_t *r, long start, long stop,
                          mp_list_item_t **items, size_t *n);

#endif
