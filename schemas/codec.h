/**
 * @file codec.h
 * @brief Record formats: Avro schemas (.avsc) as row types, and decoders and
 *        encoders between message bytes and weir records in Avro binary or
 *        JSON.
 *
 * Avro mapping: boolean -> bool, int/long -> long, float/double -> double,
 * string -> string, bytes/fixed -> bytes, enum -> string,
 * ["null", T] (either order) -> nullable T. A top-level schema must be a
 * record of such fields; anything else is a start-up error naming the field.
 *
 * Avro messages are single binary datums written with the schema (no
 * container header). With `confluent = true` a 5-byte Confluent wire header
 * (magic 0 + schema id) is skipped on decode and written on encode.
 */
#ifndef WEIR_CODEC_H
#define WEIR_CODEC_H

#include <stdbool.h>

#include "json.h"
#include "record.h"

typedef enum weir_format { WEIR_FMT_JSON, WEIR_FMT_AVRO } weir_format_t;

/** @brief "json"/"avro" -> format. @returns WEIR_OK or WEIR_ERR. */
int weir_format_parse(const char *s, weir_format_t *fmt);

/** A loaded .avsc file. */
typedef struct weir_schema weir_schema_t;

/** @brief Load and check an Avro record schema. @returns NULL with errstr ("PATH: ..."). */
weir_schema_t *weir_schema_load(const char *path, char *errstr, size_t errstr_size);
/** @brief The schema's fields as a row type (owned by the schema). */
const weir_rowtype_t *weir_schema_rowtype(const weir_schema_t *s);
/** @returns the record's full name, e.g. "weir.SensorReading". */
const char *weir_schema_name(const weir_schema_t *s);
const char *weir_schema_path(const weir_schema_t *s);
void weir_schema_destroy(weir_schema_t *s);

/** Decoder: bytes -> record of a fixed row type. One per task (not thread-safe). */
typedef struct weir_decoder weir_decoder_t;

/**
 * @brief A decoder producing records of row type rt.
 *        AVRO needs schema (whose row type must be rt); JSON needs only rt
 *        (schema may be NULL).
 */
weir_decoder_t *weir_decoder_new(weir_format_t fmt, const weir_schema_t *schema, const weir_rowtype_t *rt,
                                 bool confluent, char *errstr, size_t errstr_size);
/**
 * @brief Decode one message into out (cleared first; metadata untouched).
 *        Strings in out point into buf or into out's arena: buf must outlive
 *        the use of out.
 * @returns WEIR_OK, or WEIR_ERR with a reason such as
 *          "field 'temperature': expected double, got string" or
 *          "missing required field 'sensor_id'" or "invalid JSON at byte 12: ...".
 *          JSON: unknown fields are ignored; a long is accepted for a double
 *          field; a missing nullable field is null.
 */
int weir_decode(weir_decoder_t *d, const void *buf, size_t len, weir_record_t *out, char *reason, size_t reason_size);
void weir_decoder_destroy(weir_decoder_t *d);

/** Encoder: record of row type rt -> bytes. One per task (not thread-safe). */
typedef struct weir_encoder weir_encoder_t;

/**
 * @brief An encoder from records of row type rt.
 *        AVRO: every schema field must exist in rt with a compatible type, or be
 *        nullable (written as null), else a start-up error naming the field;
 *        fields of rt absent from the schema are not written.
 *        JSON: writes every field of rt in slot order.
 */
weir_encoder_t *weir_encoder_new(weir_format_t fmt, const weir_schema_t *schema, const weir_rowtype_t *rt,
                                 bool confluent, int32_t schema_id, char *errstr, size_t errstr_size);
/**
 * @brief Append the encoding of rec to out. For JSON, when extra_key is not
 *        NULL a first member "extra_key": "extra_val" is written (file mode's
 *        "node" field).
 * @returns WEIR_OK or WEIR_ERR (reason set; e.g. a non-finite double in JSON is written as null, not an error).
 */
int weir_encode(weir_encoder_t *e, const weir_record_t *rec, const char *extra_key, const char *extra_val,
                weir_buf_t *out, char *reason, size_t reason_size);
void weir_encoder_destroy(weir_encoder_t *e);

#endif
