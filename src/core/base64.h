/* Base64 (RFC 4648 §4, the standard alphabet) and RFC 2397 data: URLs, for images a request carries inline.
 * Strict where it matters: any byte outside the alphabet, '=' and whitespace is an error naming its offset, and
 * padding, when present, must complete the last quantum.
 *
 *   uint8_t *img; size_t n; char mt[64];
 *   MIMO_TRY(mimo_data_url_parse(url, &img, &n, mt, sizeof mt));   // mt = "image/png"; free(img) when done
 */
#ifndef MIMO_CORE_BASE64_H
#define MIMO_CORE_BASE64_H
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Decodes s[0..n). Whitespace (space, \t, \n, \r, \f, \v) is skipped anywhere; '=' padding is optional but, when
 * given, must bring the data to a multiple of 4 characters and end the input. Leftover bits after the last byte
 * are ignored (RFC 4648 §3.5 leaves it to the decoder; browsers accept them). *out is malloc'd (never NULL on
 * success, even for empty output). Errors: MIMO_E_INVALID (message names the offset), MIMO_E_NOMEM. */
mimo_status mimo_base64_decode(const char *s, size_t n, uint8_t **out, size_t *out_n);

/* Parses "data:[<media type>][;param=value]*;base64,<data>" (scheme and ";base64" case-insensitive). Only base64
 * data is accepted: percent-encoded data is an error. The media type (lower-cased, "text/plain" when empty, as
 * RFC 2397 says) is copied to media_type when media_cap > 0; one that does not fit is an error. *bytes is
 * malloc'd. Errors: MIMO_E_INVALID, MIMO_E_NOMEM. */
mimo_status mimo_data_url_parse(const char *url, uint8_t **bytes, size_t *n, char *media_type, size_t media_cap);
#endif
