/* Snapshot frames: round trip, and every way a blob can be bad. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot.h"

static void write_sample(weir_buf_t *b) {
    weir_writer_t w = {.buf = b};
    weir_w_frame_begin(&w, "window", 3);
    weir_w_u8(&w, 7);
    weir_w_u32(&w, 0xdeadbeefu);
    weir_w_i64(&w, -1234567890123LL);
    weir_w_f64(&w, -0.1);
    weir_w_str(&w, "sensor-1");
    weir_w_str(&w, NULL);
    weir_w_frame_end(&w);
}

Test(snapshot, round_trip) {
    weir_buf_t b = {0};
    write_sample(&b);
    /* magic(4)+ver(2)+res(2)+taglen(4)+"window"(6)+plen(8)+payload(1+4+8+8+12+4)+crc(4) */
    cr_assert_eq(b.len, 4 + 2 + 2 + 4 + 6 + 8 + 37 + 4);
    cr_assert(memcmp(b.p, "WSNP", 4) == 0);
    weir_reader_t r, body;
    weir_reader_init(&r, b.p, b.len);
    uint16_t ver = 0;
    cr_assert_eq(weir_r_frame_open(&r, "window", &ver, &body), WEIR_OK, "%s", r.errstr);
    cr_assert_eq(ver, 3);
    cr_assert_eq(weir_r_u8(&body), 7);
    cr_assert_eq(weir_r_u32(&body), 0xdeadbeefu);
    cr_assert_eq(weir_r_i64(&body), -1234567890123LL);
    cr_assert_eq(weir_r_f64(&body), -0.1);
    char *s = weir_r_strdup(&body);
    cr_assert_str_eq(s, "sensor-1");
    free(s);
    cr_assert_null(weir_r_strdup(&body));
    cr_assert_not(body.err);
    cr_assert_eq(body.pos, body.len);
    cr_assert_eq(r.pos, b.len);
    weir_buf_free(&b);
}

Test(snapshot, little_endian_layout) {
    weir_buf_t b = {0};
    weir_writer_t w = {.buf = &b};
    weir_w_u32(&w, 0x01020304u);
    weir_w_f64(&w, 1.0); /* 0x3ff0000000000000 */
    uint8_t want[] = {4, 3, 2, 1, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f};
    cr_assert_eq(b.len, sizeof(want));
    cr_assert(memcmp(b.p, want, sizeof(want)) == 0);
    weir_buf_free(&b);
}

Test(snapshot, crc_detects_every_single_byte_flip) {
    weir_buf_t b = {0};
    write_sample(&b);
    for (size_t i = 0; i < b.len; i++) {
        b.p[i] ^= 0x40;
        weir_reader_t r, body;
        weir_reader_init(&r, b.p, b.len);
        uint16_t ver;
        cr_assert_eq(weir_r_frame_open(&r, "window", &ver, &body), WEIR_ERR, "flip at byte %zu accepted", i);
        cr_assert(r.errstr[0] != '\0');
        b.p[i] ^= 0x40;
    }
    weir_buf_free(&b);
}

Test(snapshot, truncation_is_an_error_never_a_crash) {
    weir_buf_t b = {0};
    write_sample(&b);
    for (size_t n = 0; n < b.len; n++) {
        weir_reader_t r, body;
        weir_reader_init(&r, b.p, n);
        uint16_t ver;
        cr_assert_eq(weir_r_frame_open(&r, "window", &ver, &body), WEIR_ERR, "truncated to %zu accepted", n);
    }
    weir_buf_free(&b);
}

Test(snapshot, wrong_operator_tag) {
    weir_buf_t b = {0};
    write_sample(&b);
    weir_reader_t r, body;
    weir_reader_init(&r, b.p, b.len);
    uint16_t ver;
    cr_assert_eq(weir_r_frame_open(&r, "kmeans", &ver, &body), WEIR_ERR);
    cr_assert(strstr(r.errstr, "'window'") && strstr(r.errstr, "'kmeans'"), "%s", r.errstr);
    weir_buf_free(&b);
}

Test(snapshot, reader_overrun_is_sticky) {
    uint8_t two[2] = {1, 2};
    weir_reader_t r;
    weir_reader_init(&r, two, 2);
    cr_assert_eq(weir_r_u32(&r), 0);
    cr_assert(r.err);
    cr_assert_eq(weir_r_u8(&r), 0, "reads after an error return 0");
    cr_assert(strstr(r.errstr, "truncated"));
}

Test(snapshot, crc32_known_vector) {
    /* The standard check value of CRC-32/IEEE for "123456789". */
    cr_assert_eq(weir_crc32(0, "123456789", 9), 0xCBF43926u);
    /* Incremental equals one-shot. */
    cr_assert_eq(weir_crc32(weir_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
}

/* Bit-at-a-time CRC-32, straight from the definition: the oracle for the table-driven one. */
static uint32_t crc32_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

Test(snapshot, crc32_matches_the_definition_at_every_length_and_alignment) {
    uint8_t buf[300];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof(buf); i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (uint8_t)(x >> 16);
    }
    for (size_t off = 0; off < 8; off++)
        for (size_t n = 0; n + off <= sizeof(buf); n += 7)
            cr_assert_eq(weir_crc32(0, buf + off, n), crc32_bitwise(buf + off, n), "off %zu len %zu", off, n);
}
