/**
 * @file snapshot.h
 * @brief Operator state serialization through a writer/reader (Redis' rio
 *        idea): operators write their own bytes, the checkpoint coordinator
 *        decides where they go (Redis in production, memory in tests).
 *
 * Every operator snapshot is one frame:
 *   "WSNP" | u16 format version | u16 reserved | u32 tag-length | tag bytes
 *   | u64 payload length | payload | u32 CRC-32 of everything before it
 * All integers little-endian; doubles as their IEEE-754 bits. A reader never
 * reads past the end: any overrun, a wrong tag, an unknown version or a bad
 * CRC sets an error that restore() reports, never a crash.
 */
#ifndef WEIR_SNAPSHOT_H
#define WEIR_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "common.h"

typedef struct weir_writer {
    weir_buf_t *buf;    /**< destination, borrowed */
    size_t frame_start; /**< where the open frame began */
    size_t len_at;      /**< where its payload length goes */
} weir_writer_t;

void weir_w_u8(weir_writer_t *w, uint8_t v);
void weir_w_u32(weir_writer_t *w, uint32_t v);
void weir_w_u64(weir_writer_t *w, uint64_t v);
void weir_w_i64(weir_writer_t *w, int64_t v);
void weir_w_f64(weir_writer_t *w, double v);
void weir_w_bytes(weir_writer_t *w, const void *p, size_t n); /**< u32 length + bytes */
void weir_w_str(weir_writer_t *w, const char *s);             /**< as bytes; NULL -> length 0xffffffff */

/** @brief Open a frame for an operator (tag = operator class name) at format version. */
void weir_w_frame_begin(weir_writer_t *w, const char *tag, uint16_t version);
/** @brief Close the open frame: fill in its length and append the CRC. */
void weir_w_frame_end(weir_writer_t *w);

typedef struct weir_reader {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool err;         /**< set by any overrun or bad value; sticky */
    char errstr[160]; /**< first error */
} weir_reader_t;

void weir_reader_init(weir_reader_t *r, const void *p, size_t len);
uint8_t weir_r_u8(weir_reader_t *r);
uint32_t weir_r_u32(weir_reader_t *r);
uint64_t weir_r_u64(weir_reader_t *r);
int64_t weir_r_i64(weir_reader_t *r);
double weir_r_f64(weir_reader_t *r);
/** @brief Borrow n bytes in place (NULL on overrun). */
const uint8_t *weir_r_raw(weir_reader_t *r, size_t n);
/** @brief Read a length-prefixed byte string; *n gets its length. Borrowed. */
const uint8_t *weir_r_bytes(weir_reader_t *r, size_t *n);
/** @brief Read a string written by weir_w_str into a new malloc'ed string (NULL for NULL). */
char *weir_r_strdup(weir_reader_t *r);
/** @brief Record an error (keeps the first). */
void weir_r_fail(weir_reader_t *r, const char *fmt, ...) WEIR_PRINTF(2, 3);

/** One frame as found in a byte string (all pointers borrow the reader's bytes). */
typedef struct weir_frame {
    const uint8_t *start;   /**< first byte of the frame ("WSNP") */
    size_t len;             /**< bytes of the whole frame, CRC included */
    uint16_t version;       /**< the operator's format version */
    const uint8_t *tag;     /**< operator class name, not NUL-terminated */
    size_t tag_len;         /**< bytes of tag */
    const uint8_t *payload; /**< the operator's bytes */
    uint64_t payload_len;   /**< bytes of payload */
    uint32_t crc_stored;    /**< CRC-32 as written */
    uint32_t crc_computed;  /**< CRC-32 of the bytes read */
    bool crc_ok;            /**< crc_stored == crc_computed */
} weir_frame_t;

/**
 * @brief The one reader of the frame layout: read the frame at the reader's
 *        position, whatever its tag, and move past it. A CRC mismatch is
 *        reported in f->crc_ok, not as an error, so that tools can show the
 *        damaged frame; weir_r_frame_open() refuses it.
 * @returns WEIR_OK, or WEIR_ERR (bad magic, overrun) with r->errstr set; the
 *          header fields read before the error stay in *f.
 */
int weir_r_frame_next(weir_reader_t *r, weir_frame_t *f);

/**
 * @brief Open the frame at the reader's position: check magic, tag and CRC and
 *        set *version; *payload becomes a reader over the payload alone.
 *        The outer reader moves past the frame.
 * @returns WEIR_OK or WEIR_ERR with r->errstr set.
 */
int weir_r_frame_open(weir_reader_t *r, const char *tag, uint16_t *version, weir_reader_t *payload);

/**
 * @brief What every operator's restore() starts with: open the frame tagged
 *        `tag` and accept versions 1..max_version.
 * @returns WEIR_OK (with *version and *body set) or WEIR_ERR with errstr
 *          "node 'NODE': <why>".
 */
int weir_r_frame_expect(weir_reader_t *r, const char *node, const char *tag, uint16_t max_version, uint16_t *version,
                        weir_reader_t *body, char *errstr, size_t errstr_size);

#endif
