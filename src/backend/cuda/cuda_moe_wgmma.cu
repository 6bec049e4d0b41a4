/* Grouped int4 MoE prefill on SM90a warpgroup MMA (wgmma): the same grouping, tiles and epilogues as the mma.sync
 * kernels of cuda_moe_gemm.cu, with the roles of the operands swapped so the dequantised weights never touch
 * shared memory:
 *   D [128 weight rows][<= 128 tokens] += A (weights, fp16, in registers) x B (activations, fp16, shared memory).
 * A block is two warpgroups, each m64 (warp w of a warpgroup: rows 16w..16w+15 of its 64); gate+up gives a warp's
 * rows g = gate row c and g + 8 = up row c of the same column c of h, so SiLU(gate)·up is formed in registers.
 * Tiles of <= 64 tokens (an expert's last, part-filled tile) take m64n64 instead of m64n128: half the MMA work.
 *
 * The k order. Thread (g, t) holds A elements k ∈ {2t, 2t+1, 2t+8, 2t+9} of each k16; the int4 word it reads
 * holds a row's k 8t..8t+7 of a k32 block, which dq4 turns into the fp16 pairs (u0,u4) (u1,u5) (u2,u6) (u3,u7).
 * Given to the two k16 steps of the block in that order, MMA position p of the block (0..31) multiplies weight
 * element 4(p % 8) + p / 8 of it, so the activations are stored with element k at position 8(k % 4) + k / 4 of
 * each 32 (x by cu_moe_wg_xconv, h by the gate+up epilogue). A sum over k does not care about the order; both
 * operands agree, which is all the MMA needs.
 *
 * Pipeline (all 256 threads copy, both warpgroups compute): 4 stages of k64, cp.async; activations as rows of
 * 128 bytes in the 128-byte swizzle the wgmma descriptor reads (16-byte chunk c of row r at c ^ (r % 8)); int4
 * words [k32 half][row][16 B] and scale words [half][row]. At stage kt a warpgroup issues its 4 wgmma k16 steps,
 * waits for those of kt − 1 (which frees their stage for the copy of kt + 3 and their A registers), then
 * dequantises stage kt + 1 while the tensor cores run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda_moe_gemm.h"

/* A block: two warpgroups (256 threads), 128 weight rows; a tile: up to MAXN tokens of one expert (128: two
 * blocks per SM; 256: one, with up to 128 accumulators per thread). Stage: activations (MAXN rows of 64 fp16),
 * int4 words (2 k32 halves x 128 rows x 16 bytes), scale words; a multiple of the swizzle's 1024-byte alignment. */
enum { WG_BM = 128, WG_NT = 256, WG_W_B = 2 * WG_BM * 16, WG_S_B = 2 * WG_BM * 4 };
template <int MAXN, int ST> struct wg_cfg {
  static constexpr int B_B = MAXN * 128, STAGE = B_B + WG_W_B + WG_S_B, SMEM = STAGE * ST + 1024;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define MIMO_WG 1
#endif

#ifdef MIMO_WG
/* m64nNk16, fp32 D in registers, fp16 A in registers (4), fp16 B through a shared-memory descriptor (K-major).
 * One function per N the tiles use (multiples of 32). */
__device__ __forceinline__ void wg_mma_n32(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15"
               "}, {%16,%17,%18,%19}, %20, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wg_mma_n64(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
               "%27,%28,%29,%30,%31"
               "}, {%32,%33,%34,%35}, %36, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wg_mma_n96(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %53, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n96k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
               "%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47"
               "}, {%48,%49,%50,%51}, %52, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wg_mma_n128(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
               "%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,"
               "%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63"
               "}, {%64,%65,%66,%67}, %68, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wg_mma_n160(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %85, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n160k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
               "%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,"
               "%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,"
               "%77,%78,%79"
               "}, {%80,%81,%82,%83}, %84, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
                 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]),
                 "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]),
                 "+f"(d[78]), "+f"(d[79])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wg_mma_n192(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %101, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n192k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
               "%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,"
               "%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,"
               "%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95"
               "}, {%96,%97,%98,%99}, %100, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
                 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]),
                 "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]),
                 "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]),
                 "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]),
                 "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wg_mma_n224(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %117, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n224k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
               "%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,"
               "%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,"
               "%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,"
               "%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111"
               "}, {%112,%113,%114,%115}, %116, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
                 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]),
                 "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]),
                 "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]),
                 "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]),
                 "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]),
                 "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]),
                 "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
__device__ __forceinline__ void wg_mma_n256(float *d, const uint32_t *a, uint64_t desc) {
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {"
               "%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,"
               "%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,"
               "%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63,%64,%65,%66,%67,%68,%69,%70,%71,%72,%73,%74,%75,%76,"
               "%77,%78,%79,%80,%81,%82,%83,%84,%85,%86,%87,%88,%89,%90,%91,%92,%93,%94,%95,%96,%97,%98,%99,%100,"
               "%101,%102,%103,%104,%105,%106,%107,%108,%109,%110,%111,%112,%113,%114,%115,%116,%117,%118,%119,%120,"
               "%121,%122,%123,%124,%125,%126,%127"
               "}, {%128,%129,%130,%131}, %132, p, 1, 1, 0;\n}\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
                 "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),
                 "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),
                 "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),
                 "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]),
                 "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]),
                 "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]),
                 "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]),
                 "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
                 "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]),
                 "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]),
                 "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]),
                 "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]),
                 "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]),
                 "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]),
                 "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]),
                 "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
                 "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]),
                 "+f"(d[127])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(1));
}
template <int N> __device__ __forceinline__ void wg_mma(float *d, const uint32_t *a, uint64_t desc) {
  if constexpr (N == 32)
    wg_mma_n32(d, a, desc);
  else if constexpr (N == 64)
    wg_mma_n64(d, a, desc);
  else if constexpr (N == 96)
    wg_mma_n96(d, a, desc);
  else if constexpr (N == 128)
    wg_mma_n128(d, a, desc);
  else if constexpr (N == 160)
    wg_mma_n160(d, a, desc);
  else if constexpr (N == 192)
    wg_mma_n192(d, a, desc);
  else if constexpr (N == 224)
    wg_mma_n224(d, a, desc);
  else if constexpr (N == 256)
    wg_mma_n256(d, a, desc);
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* dq4 of cuda_moe_gemm.h in 13 instructions per word instead of 15, bitwise the same: nibbles 1 and 5 (3 and 7)
 * are masked in place, giving the fp16 1024 + 16u, and scaled by 1/16 in the fma that subtracts 64 + o (both
 * steps exact, as in dq4); a word's scale set-up is done once per scale word. */
struct dq_sz {
  uint32_t s2, n0, n1; /* scale, −(1024 + o), −(64 + o): fp16 pairs */
};
__device__ __forceinline__ dq_sz dq_setup(uint32_t sz) {
  const uint32_t s1 = __half_as_ushort(__float2half_rn(__uint_as_float(sz & 0xffff0000u))), o = sz & 0xffu;
  return {s1 * 0x00010001u, (0xe400u | o) * 0x00010001u, (0xd400u | (o << 4)) * 0x00010001u};
}
__device__ __forceinline__ void dq4f(uint32_t q, const dq_sz &z, uint32_t (&b)[4]) {
  const uint32_t q8 = q >> 8;
  const uint32_t x[4] = {(q & 0x000f000fu) | 0x64006400u, (q & 0x00f000f0u) | 0x64006400u,
                         (q8 & 0x000f000fu) | 0x64006400u, (q8 & 0x00f000f0u) | 0x64006400u};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const uint32_t d = (i & 1) ? h2_fma(x[i], 0x2c002c00u, z.n1) : h2_fma(x[i], 0x3c003c00u, z.n0);
    b[i] = h2_fma(d, z.s2, 0x80008000u);
  }
}

/* cp.async to a shared-memory address (as smem_u32 gives it) */
__device__ __forceinline__ void cp16s(uint32_t dst, const void *src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)) : "memory");
}
__device__ __forceinline__ void cp4s(uint32_t dst, const void *src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(__cvta_generic_to_global(src)) : "memory");
}
/* Keeps the compiler from reading an accumulator before the wait that makes it final. */
__device__ __forceinline__ void wg_hold(float &v) { asm volatile("" : "+f"(v)::"memory"); }
/* Shared memory written by cp.async, read next by the tensor cores (the async proxy). */
__device__ __forceinline__ void fence_async_smem() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
/* K-major operand in the 128-byte swizzle: start address, leading offset unused (1), 1024 bytes between groups of
 * 8 rows, layout 1 = SW128 (bits 62-63). */
__device__ __forceinline__ uint64_t wg_desc(uint32_t addr) {
  return (uint64_t)((addr & 0x3ffffu) >> 4) | ((uint64_t)1 << 16) | ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}
#endif

/* One tile's main loop and epilogue with N tokens per MMA (N >= the tile's rows). s_off: element offset of each
 * token's activation row, -1 past the tile. Addresses are formed once: per stage a copy adds its k offset. */
template <bool UP, int N, int MAXN, int WG_ST>
__device__ __forceinline__ void wg_tile(const gg_args &p, char *sm, const int *s_off, const float *s_wt, int e, int base,
                                        int rows) {
#ifdef MIMO_WG
  using C = wg_cfg<MAXN, WG_ST>;
  const int Kd = UP ? p.H : p.I, Nd = UP ? p.I : p.H, nk32 = Kd / 32, nkt = Kd / 64;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, g = lane >> 2, t = lane & 3;
  const cu_lin *tb = p.tab + (size_t)e * 3;
  /* copy assignment: int4 word (k32 half wh, shared row wr) and its scale word */
  const int wh = tid / WG_BM, wr = tid % WG_BM;
  const cu_lin *L = UP ? tb + ((wr >> 3) & 1) : tb + 2;
  const int mrow = UP ? blockIdx.x * (WG_BM / 2) + 8 * (wr >> 4) + (wr & 7) : blockIdx.x * WG_BM + wr;
  const bool wok = mrow < Nd, tl = L->tiled;
  const int grp = L->group, gsh = __ffs(grp) - 6; /* group = 32 << gsh (a power of two: cu_moe_wg_usable) */
  const uint4 *qrow = L->q + q4_idx(tl, nk32, wok ? mrow : 0, 0);
  const uint32_t *srow = L->sz + sz_idx(tl, Kd / L->group, wok ? mrow : 0, 0);
  const int sstep = tl ? 16 : 1;
  const char *act = (const char *)p.a + (tid & 7) * 16; /* this thread's 16-byte chunk of every row */
  const uint32_t sm0 = smem_u32(sm);
  /* shared offsets of this thread's activation chunks within a stage (chunk c of row r at c ^ (r % 8)) */
  auto a_dst = [&](int j) {
    const int r = (tid >> 3) + (WG_NT / 8) * j;
    return (uint32_t)(r * 128 + (((tid & 7) ^ (r & 7)) << 4));
  };

  int aoff[N * 8 / WG_NT]; /* this thread's rows' offsets in registers: no shared load per copy */
#pragma unroll
  for (int j = 0; j < N * 8 / WG_NT; j++)
    aoff[j] = s_off[(tid >> 3) + (WG_NT / 8) * j];
  auto load = [&](int sb, int kt) {
    const uint32_t sB = sm0 + sb * C::STAGE, sW = sB + C::B_B, sS = sW + WG_W_B;
#pragma unroll
    for (int j = 0; j < N * 8 / WG_NT; j++) {
      const int off = aoff[j];
      if (off >= 0)
        cp16s(sB + a_dst(j), act + 2 * ((size_t)off + kt * 64));
    }
    if (wok) {
      const int kb = 2 * kt + wh;
      cp16s(sW + (wh * WG_BM + wr) * 16, qrow + (tl ? ((kb >> 2) << 6) + (kb & 3) : kb));
      cp4s(sS + (wh * WG_BM + wr) * 4, srow + (kb >> gsh) * sstep);
    }
  };
  /* this thread's A rows: R0 (gate+up: gate) and R0 + 8 (up) */
  const int R0 = 16 * warp + g;
  auto dequant = [&](int sb, uint32_t(&a)[16]) {
    const char *sW = sm + sb * C::STAGE + C::B_B, *sS = sW + WG_W_B;
    dq_sz z0 = dq_setup(*(const uint32_t *)(sS + R0 * 4)), z1 = dq_setup(*(const uint32_t *)(sS + (R0 + 8) * 4));
#pragma unroll
    for (int hf = 0; hf < 2; hf++) {
      if (hf == 1 && grp == 32) { /* a scale group per k32 half; from 64 on one per stage */
        z0 = dq_setup(*(const uint32_t *)(sS + (WG_BM + R0) * 4));
        z1 = dq_setup(*(const uint32_t *)(sS + (WG_BM + R0 + 8) * 4));
      }
      const uint32_t q0 = *(const uint32_t *)(sW + (hf * WG_BM + R0) * 16 + 4 * t),
                     q1 = *(const uint32_t *)(sW + (hf * WG_BM + R0 + 8) * 16 + 4 * t);
      uint32_t b0[4], b1[4];
      dq4f(q0, z0, b0);
      dq4f(q1, z1, b1);
      a[8 * hf + 0] = b0[0];
      a[8 * hf + 1] = b1[0];
      a[8 * hf + 2] = b0[1];
      a[8 * hf + 3] = b1[1];
      a[8 * hf + 4] = b0[2];
      a[8 * hf + 5] = b1[2];
      a[8 * hf + 6] = b0[3];
      a[8 * hf + 7] = b1[3];
    }
  };

  float d[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; i++)
    d[i] = 0.f;
  uint32_t a0[16], a1[16];
#pragma unroll
  for (int s = 0; s < WG_ST - 1; s++) {
    if (s < nkt)
      load(s, s);
    cp_commit();
  }
  cp_wait<WG_ST - 2>();
  fence_async_smem();
  __syncthreads();
  dequant(0, a0);

  /* stage kt: MMAs from registers a (dequantised before), then prepare stage kt + 1 into nx */
  auto step = [&](int kt, const uint32_t(&a)[16], uint32_t(&nx)[16]) {
    const uint32_t sB = sm0 + (kt % WG_ST) * C::STAGE;
    wg_fence();
#pragma unroll
    for (int i = 0; i < 4; i++)
      wg_mma<N>(d, a + 4 * i, wg_desc(sB + 32 * i));
    wg_commit();
    wg_wait<1>(); /* stage kt − 1's MMAs are done: its buffer and registers are free */
    if (kt + 1 < nkt) {
      cp_wait<WG_ST - 3>();
      fence_async_smem();
      __syncthreads(); /* every thread's copies of kt + 1 landed; every warpgroup is past kt − 1 */
      if (kt + WG_ST - 1 < nkt)
        load((kt + WG_ST - 1) % WG_ST, kt + WG_ST - 1);
      cp_commit();
      dequant((kt + 1) % WG_ST, nx);
    }
  };
  for (int kt = 0; kt < nkt; kt += 2) {
    step(kt, a0, a1);
    if (kt + 1 < nkt)
      step(kt + 1, a1, a0);
  }
  wg_wait<0>();
  cp_wait<0>();
#pragma unroll
  for (int i = 0; i < N / 2; i++)
    wg_hold(d[i]);

  /* epilogue: d[4j + v] is row g (v < 2) or g + 8 (v >= 2), token 8j + 2t + (v & 1) */
  if constexpr (UP) {
    const int col = blockIdx.x * (WG_BM / 2) + 8 * warp + g; /* column of h */
    if (col < p.I) {
      unsigned short *dh = (unsigned short *)p.h + (size_t)base * p.I + (col & ~31) + 8 * (col & 3) + ((col & 31) >> 2);
#pragma unroll
      for (int j = 0; j < N / 8; j++)
#pragma unroll
        for (int v = 0; v < 2; v++) {
          const int tok = 8 * j + 2 * t + v;
          if (tok < rows) {
            const float gv = d[4 * j + v], uv = d[4 * j + 2 + v];
            dh[(size_t)tok * p.I] = f2h(gv / (1.0f + expf(-gv)) * uv); /* at the down GEMM's k position */
          }
        }
    }
  } else {
    const int f = blockIdx.x * WG_BM + R0;
    float *y = p.y + (size_t)base * p.H + f;
#pragma unroll
    for (int j = 0; j < N / 8; j++)
#pragma unroll
      for (int v = 0; v < 2; v++) {
        const int tok = 8 * j + 2 * t + v;
        if (tok < rows) {
          const float wt = s_wt[tok];
          if (f < p.H)
            y[(size_t)tok * p.H] = wt * d[4 * j + v];
          if (f + 8 < p.H)
            y[(size_t)tok * p.H + 8] = wt * d[4 * j + 2 + v];
        }
      }
  }
#endif
}

template <bool UP, int MAXN, int ST>
__global__ void __launch_bounds__(WG_NT, MAXN == 128 ? 2 : 1) k_wg(const gg_args p) {
  extern __shared__ uint4 wg_smem[];
  __shared__ int s_off[MAXN];
  __shared__ float s_wt[UP ? 1 : MAXN]; /* down: the tile's routing weights (read in the epilogue) */
  const int tile = blockIdx.y;
  if (tile >= *p.ntiles)
    return;
  char *sm = (char *)wg_smem + ((1024u - (smem_u32(wg_smem) & 1023u)) & 1023u);
  const int e = p.tiles[3 * tile], base = p.tiles[3 * tile + 1], rows = p.tiles[3 * tile + 2];
  const int Kd = UP ? p.H : p.I;
  for (int i = threadIdx.x; i < MAXN; i += WG_NT) {
    s_off[i] = i >= rows ? -1 : (UP ? p.perm[base + i] / p.topk : base + i) * Kd;
    if (!UP)
      s_wt[i] = i >= rows ? 0.f : p.wts[p.perm[base + i]];
  }
  __syncthreads();
  switch ((rows + 31) >> 5) { /* tokens per MMA: the tile's rows rounded up to 32 */
  case 1: wg_tile<UP, 32, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
  case 2: wg_tile<UP, 64, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
  case 3: wg_tile<UP, 96, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
  case 4: wg_tile<UP, 128, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
  default:
    if constexpr (MAXN == 256) {
      switch ((rows + 31) >> 5) {
      case 5: wg_tile<UP, 160, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
      case 6: wg_tile<UP, 192, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
      case 7: wg_tile<UP, 224, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
      default: wg_tile<UP, 256, MAXN, ST>(p, sm, s_off, s_wt, e, base, rows); break;
      }
    }
  }
}

/* x fp32 -> fp16 with element k of each 32 at position 8(k % 4) + k / 4: output chunk q (8 positions) of a block
 * holds elements q, q + 4, ..., q + 28. */
__global__ void k_wg_xconv(uint4 *xb, const float *x, long n8) {
  for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n8; i += (long)gridDim.x * blockDim.x) {
    const float *s = x + (i >> 2) * 32 + (i & 3);
    xb[i] = make_uint4(pack_h2(s[0], s[4]), pack_h2(s[8], s[12]), pack_h2(s[16], s[20]), pack_h2(s[24], s[28]));
  }
}

void cu_moe_wg_xconv(cu_ctx *c, void *xb, const float *x, int T, int H) {
  const long n8 = (long)T * H / 8;
  k_wg_xconv<<<cdiv(n8, 256) < 4096 ? cdiv(n8, 256) : 4096, 256, 0, c->st>>>((uint4 *)xb, x, n8);
  MIMO_CUDA_LAUNCHED(c);
}

/* Test hook: 0 keeps the mma.sync kernels on SM90 too; 128 or 256 sets the tile (tokens); 1 the default. */
static int wg_mode = 1;
static int wg_last; /* the last grouped MoE took the wgmma kernels (test hook) */
extern "C" int mimo_cuda_moe_grouped_wgmma_last(void) { return wg_last; }
extern "C" int mimo_cuda_moe_grouped_wgmma(int mode) {
  const int o = wg_mode;
  if (mode == 0 || mode == 1 || mode == 128 || mode == 256)
    wg_mode = mode;
  return o;
}
enum { WG_TILE_DEFAULT = 128, WG_ST_DEFAULT = 4 };
int cu_moe_wg_tile(void) { return wg_mode > 1 ? wg_mode : WG_TILE_DEFAULT; }
static int wg_stages = WG_ST_DEFAULT; /* test hook: 4 or 5 stages for 128-token tiles */
extern "C" int mimo_cuda_moe_grouped_wgmma_stages(int st) {
  const int o = wg_stages;
  if (st == 4 || st == 5)
    wg_stages = st;
  return o;
}

static bool wg_usable(cu_ctx *c, const mimo_moe_args *a) {
  static int env = -1; /* MIMO_CUDA_MOE_WGMMA=0: the mma.sync kernels on SM90 too (whole-model A/B runs) */
  if (env < 0) {
    const char *v = getenv("MIMO_CUDA_MOE_WGMMA");
    env = !(v && !strcmp(v, "0"));
  }
  if (!env || !wg_mode || c->cc != 90 || a->hidden % 64 || a->inter % 64)
    return false;
  const cu_lin *L0 = (const cu_lin *)a->experts[0].dev;
  if (L0->fmt != CU_INT4 || (L0->group & (L0->group - 1)))
    return false;
  /* the sm_90a code is what runs (a compute_80 PTX build JIT-compiled on Hopper reports PTX 80 and has no wgmma) */
  cudaFuncAttributes fa;
  if (cudaFuncGetAttributes(&fa, k_wg<true, 128, 4>) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return fa.ptxVersion >= 90;
}
bool cu_moe_wg_usable(cu_ctx *c, const mimo_moe_args *a) {
  wg_last = wg_usable(c, a);
  return wg_last;
}

template <int MAXN, int ST> static void wg_launch(cu_ctx *c, const gg_args &p, int max_tiles, bool up) {
  using C = wg_cfg<MAXN, ST>;
  void (*k)(const gg_args) = up ? k_wg<true, MAXN, ST> : k_wg<false, MAXN, ST>;
  if (MIMO_CUDA(c, cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, C::SMEM)) != MIMO_OK)
    return;
  const int cols = up ? cdiv(p.I, WG_BM / 2) : cdiv(p.H, WG_BM);
  k<<<dim3(cols, max_tiles), WG_NT, C::SMEM, c->st>>>(p);
  MIMO_CUDA_LAUNCHED(c);
}

void cu_moe_wg_launch(cu_ctx *c, const gg_args &p, int max_tiles, bool up) {
  if (cu_moe_wg_tile() == 256)
    wg_launch<256, 4>(c, p, max_tiles, up);
  else if (wg_stages == 5)
    wg_launch<128, 5>(c, p, max_tiles, up);
  else
    wg_launch<128, 4>(c, p, max_tiles, up);
}
