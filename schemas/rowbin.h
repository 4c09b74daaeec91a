/**
 * @file rowbin.h
 * @brief The compact binary form of a compiled record, for records that
 *        travel between weir's own stages through an internal (repartition)
 *        topic. Not a public format: both ends are the same pipeline, so the
 *        row type is known on both sides; each value still carries its type
 *        tag, so a record written by another row type is refused, not misread.
 *
 * Layout (version 1), integers as zig-zag varints:
 *
 *     u8  version (WEIR_ROWBIN_VERSION)
 *     u8  flags: 1 key present, 2 event time present, 4 origin present
 *     [ts]                     event time, epoch ms
 *     [len, key bytes]         record key
 *     [len, topic, partition, offset]   where the record came from
 *     nfields
 *     per field: u8 type (weir_type_t), then bool u8 | long varint |
 *                double 8 bytes little-endian | string/bytes len + bytes
 *
 * A change of layout bumps the version; a reader refuses other versions with
 * a reason naming it (the record goes to the dead letters).
 */
#ifndef WEIR_ROWBIN_H
#define WEIR_ROWBIN_H

#include "record.h"

#define WEIR_ROWBIN_VERSION 1

/** @brief Append rec (values, key, event time, origin) to out. */
void weir_rowbin_encode(const weir_record_t *rec, weir_buf_t *out);

/**
 * @brief Decode buf into out (initialised for its row type; cleared first).
 *        Strings and the key point into buf, which must outlive the use of
 *        out; the origin topic is copied into out's arena (NUL-terminated).
 * @returns WEIR_OK, or WEIR_ERR with a reason ("rowbin: version 7, this weir
 *          reads 1", "rowbin: field 2 'mean': long where double expected",
 *          "rowbin: truncated at byte 17").
 */
int weir_rowbin_decode(const void *buf, size_t len, weir_record_t *out, char *reason, size_t reason_size);

/** @brief Append x as a zig-zag varint (the integer form of the layout above). */
void weir_rowbin_put_varint(weir_buf_t *b, int64_t x);
/** @brief Read a zig-zag varint from the n bytes at p. @returns the bytes it took, 0 if malformed or cut. */
size_t weir_rowbin_get_varint(const uint8_t *p, size_t n, int64_t *x);

#endif
