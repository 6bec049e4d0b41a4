/* Round-to-nearest int4 group quantisation in compressed-tensors' `pack-quantized` layout (spec §6), the last step
 * of `mimo quantize` for both its methods (AWQ only rescales the weights before it).
 *
 * Per (row, group of `group` inputs), with the scale rounded to bf16 first (it is stored in bf16 and the integers
 * are computed against the stored value, as compressed-tensors does):
 *   symmetric:  scale = max|w| / 7.5,               q = clamp(round(w / scale), -8, 7)
 *   asymmetric: scale = (max(w, 0) - min(w, 0)) / 15, zp = clamp(round(-8 - min / scale), -8, 7),
 *               q = clamp(round(w / scale + zp), -8, 7)
 * A zero scale becomes bf16's epsilon (2^-7). Stored: u = q + 8 as nibbles, element c of a row in bits 4(c % 8) of
 * word c / 8; zero points (asymmetric) likewise as u = zp + 8, packed along the rows (word [r / 8][g]). Rounding is
 * half to even (torch.round). */
#ifndef MIMO_QUANT_INT4_H
#define MIMO_QUANT_INT4_H
#include <stdbool.h>
#include <stdint.h>

/* w [rows][in] floats -> packed [rows][in / 8], scale [rows][in / group] (bf16 bits), zero [ceil(rows / 8)][in /
 * group] (asym only; NULL when symmetric). in % group == 0, group % 8 == 0. */
void mimo_int4_quantize(const float *w, int rows, int in, int group, bool asym, uint32_t *packed, uint16_t *scale,
                        uint32_t *zero);
/* The values those integers stand for: w[r][c] = (q - zp) * scale (spec §6.2). */
void mimo_int4_dequantize(const uint32_t *packed, const uint16_t *scale, const uint32_t *zero, int rows, int in,
                          int group, float *w);
/* Quantise then dequantise in place (what the weights become), for the AWQ search. */
void mimo_int4_fake_quantize(float *w, int rows, int in, int group, bool asym);
#endif
