/**
 * @file json.h
 * @brief The JSON writer shared by every layer: escaped strings and record
 *        values as JSON text. The JSON *encoder* of records (member names,
 *        slot order) and the decoder live in schemas/codec.c; operators use
 *        these functions for their `weir state dump` text and JSON-valued
 *        fields.
 */
#ifndef WEIR_JSON_H
#define WEIR_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "record.h"

/** @brief Append v as JSON (strings escaped; bytes as a string of \u00XX for non-ASCII; NaN/Inf as null). */
void weir_json_append_value(weir_buf_t *out, const weir_value_t *v);
/** @brief Append s as a JSON string literal (invalid UTF-8 becomes U+FFFD). */
void weir_json_append_str(weir_buf_t *out, const char *s, size_t n);
/**
 * @brief Format a finite double as a JSON number that reads back exactly,
 *        in the shortest form (weir_fmt_double), with ".0" after an
 *        integral value ("20.0", not "20"; "64.454", not "64.454000000000008").
 * @returns the length written into buf (NUL-terminated; size >= 32).
 */
size_t weir_json_format_double(char *buf, size_t size, double d);
/** @returns the length of the valid UTF-8 sequence at p (n bytes available), or 0 if invalid. */
size_t weir_utf8_seq(const uint8_t *p, size_t n);

#endif
