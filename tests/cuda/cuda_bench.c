/* Micro-benchmarks with their ceilings measured in the same run: device copy
 * bandwidth and cuBLAS bf16 8192³; then int4 MoE decode and bf16/f32 GEMV at M=1
 * as fractions of the copy bandwidth. Median of event-timed runs; inputs rotate
 * so that repeated runs do not measure the L2. */
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda_common.h"

typedef struct {
  cublasHandle_t h;
  void *A, *B, *C;
  int n;
} bf16_gemm;
static void run_bf16_gemm(void *p) {
  const bf16_gemm *q = p;
  const float one = 1, zero = 0;
  CK(cublasGemmEx(q->h, CUBLAS_OP_N, CUBLAS_OP_N, q->n, q->n, q->n, &one, q->A, CUDA_R_16BF, q->n, q->B, CUDA_R_16BF,
                  q->n, &zero, q->C, CUDA_R_16BF, q->n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

double cublas_bf16_rate(int n) {
  size_t N = (size_t)n * n;
  uint16_t *h = xmalloc(N * 2);
  for (size_t i = 0; i < N; i++)
    h[i] = to_bf16(rndf());
  bf16_gemm q = {.n = n};
  CK(cudaMalloc(&q.A, N * 2));
  CK(cudaMalloc(&q.B, N * 2));
  CK(cudaMalloc(&q.C, N * 2));
  CK(cudaMemcpy(q.A, h, N * 2, cudaMemcpyHostToDevice));
  for (size_t i = 0; i < N; i++)
    h[i] = to_bf16(rndf());
  CK(cudaMemcpy(q.B, h, N * 2, cudaMemcpyHostToDevice));
  free(h);
  CK(cublasCreate(&q.h));
  const float ms = time_default_stream_ms(run_bf16_gemm, &q, 10);
  cublasDestroy(q.h);
  cudaFree(q.A);
  cudaFree(q.B);
  cudaFree(q.C);
  return 2.0 * n * (double)n * n / (ms * 1e-3);
}

/* cuBLAS at M=1 on a bf16 weight (x in bf16): the library's GEMV figure for comparison. */
typedef struct {
  cublasHandle_t h;
  void *w, *x, *y;
  int out, in;
} bf16_m1;
static void run_bf16_m1(void *p) {
  const bf16_m1 *q = p;
  const float one = 1, zero = 0;
  CK(cublasGemmEx(q->h, CUBLAS_OP_T, CUBLAS_OP_N, q->out, 1, q->in, &one, q->w, CUDA_R_16BF, q->in, q->x, CUDA_R_16BF,
                  q->in, &zero, q->y, CUDA_R_32F, q->out, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}
static double cublas_m1_ms(const mimo_linear *W) {
  bf16_m1 q = {.out = W->out, .in = W->in};
  size_t n = (size_t)W->out * W->in;
  CK(cudaMalloc(&q.w, n * 2));
  CK(cudaMalloc(&q.x, (size_t)W->in * 2));
  CK(cudaMalloc(&q.y, (size_t)W->out * 4));
  CK(cudaMemcpy(q.w, W->w, n * 2, cudaMemcpyHostToDevice));
  CK(cudaMemset(q.x, 0x3f, (size_t)W->in * 2));
  CK(cublasCreate(&q.h));
  const float ms = time_default_stream_ms(run_bf16_m1, &q, 20);
  cublasDestroy(q.h);
  cudaFree(q.w);
  cudaFree(q.x);
  cudaFree(q.y);
  return ms;
}

static double lin_bytes(const mimo_linear *l) {
  if (l->fmt == MIMO_WF_INT4)
    return (double)l->out * l->in / 2 + (double)l->out * (l->in / l->group) * 2 +
           (l->zero ? (double)((l->out + 7) / 8) * (l->in / l->group) * 4 : 0);
  return (double)l->out * l->in * mimo_dtype_size(l->dt);
}

/* The MoE decode benchmark's layer: 256 experts of MiMo's shape (4096 × 2048, int4 g128 sym), one random
 * expert's bits uploaded 256 times (a separate device copy each: the bytes streamed are real), an fp32 router. */
/* ms per call of 16 MoE calls between two events (x of call r at xs + r·stride), so the GPU does not wait for the
 * host's launches as it does when each call is timed alone (in a model's step the host runs ahead of the GPU).
 * MiMo's decode shapes: E256 top-8, 4096 x 2048. */
static float moe_back_to_back(mimo_backend *g, const float *xs, size_t stride, float *out, int T, mimo_linear *router,
                              mimo_vec *bias, mimo_linear *ex) {
  mimo_cuda_timer_start(g);
  for (int r = 0; r < 16; r++) {
    mimo_moe_args a = {.x = xs + (size_t)r * stride, .out = out, .T = T, .hidden = 4096, .inter = 2048,
                       .n_experts = 256, .top_k = 8, .router = router, .bias = bias, .experts = ex,
                       .norm_topk = true, .scaling = 1.0f};
    g->moe(g, &a);
  }
  return mimo_cuda_timer_stop(g) / 16;
}

/* ms per call of 32 M = 1 GEMV calls between two events over the weight copies W[0..copies), as a model's step
 * issues them (dependent launch); median of 5 rounds after one untimed. */
static double gemv_back_to_back(mimo_backend *g, float *dy, const float *dx, mimo_linear *W, int copies) {
  float bb[5];
  for (int r = 0; r < 6; r++) {
    mimo_cuda_timer_start(g);
    for (int i = 0; i < 32; i++)
      g->linear(g, dy, dx, 1, &W[(r * 32 + i) % copies]);
    const float t = mimo_cuda_timer_stop(g) / 32;
    if (r >= 1)
      bb[r - 1] = t;
  }
  return median(bb, 5);
}

static mimo_linear *moe_bench_layer(mimo_backend *g, mimo_linear *router, mimo_linear proto[3]) {
  const int E = 256, H = 4096, I = 2048;
  *router = rand_dense(E, H, MIMO_DT_F32, 0.05f);
  must(mimo_backend_upload_linear(g, router), "upload");
  proto[0] = rand_int4(I, H, 128, 0);
  proto[1] = rand_int4(I, H, 128, 0);
  proto[2] = rand_int4(H, I, 128, 0);
  mimo_linear *ex = xmalloc((size_t)E * 3 * sizeof *ex);
  for (int e = 0; e < E; e++)
    for (int p = 0; p < 3; p++) {
      ex[e * 3 + p] = proto[p];
      ex[e * 3 + p].dev = NULL;
      must(mimo_backend_upload_linear(g, &ex[e * 3 + p]), "upload experts");
    }
  return ex;
}

/* The tensor-core decode kernels' launch shapes: per pair (mimo_cuda_moe_tc_variant) each up variant with the
 * default down, then each down variant with the default up, at 1 and 8 tokens; grouped by expert
 * (mimo_cuda_moe_tcg_variant) likewise at 8 and 32 tokens (default_only: the default per-pair shapes alone). Same
 * weights and inputs as above; single calls (median of 20) and back to back (median of 3 runs of 16); the ratio
 * assumes E·(1 − (1 − K/E)^T) distinct experts (uniform routing). */
int mimo_cuda_moe_tc_variant(int up, int dn, char *label, int n);
int mimo_cuda_int4_tiled_off(int on);
int mimo_cuda_pdl_off(int on);
static void moe_tc_variants(mimo_backend *g, double bw, bool default_only) {
  int E = 256, K = 8, H = 4096, I = 2048;
  mimo_linear router, proto[3];
  mimo_linear *ex = moe_bench_layer(g, &router, proto);
  mimo_vec bias = {0, MIMO_DT_F32, NULL, NULL};
  double ebytes = lin_bytes(&proto[0]) + lin_bytes(&proto[1]) + lin_bytes(&proto[2]);
  float *xs = xmalloc((size_t)16 * 32 * H * 4);
  fill(xs, (size_t)16 * 32 * H, 1.0f);
  float *dxs = to_dev(g, xs, (size_t)16 * 32 * H), *dout = g->alloc(g, (size_t)32 * H);
  const int tcg_old = mimo_cuda_moe_tcg_min_t(0);
  for (int grouped = 0; grouped < (default_only ? 1 : 2); grouped++) {
    int (*variant)(int, int, char *, int) = grouped ? mimo_cuda_moe_tcg_variant : mimo_cuda_moe_tc_variant;
    const int nu = variant(-1, -1, NULL, 0), nd = variant(-2, -1, NULL, 0);
    mimo_cuda_moe_tcg_min_t(grouped ? 1 : 1 << 30);
    for (int v = 0; v < (default_only ? 1 : nu + nd - 1); v++) {
      const int u = v < nu ? v : 0, d = v < nu ? 0 : v - nu + 1; /* (u, 0) for every u, then (0, d) */
      char label[200];
      variant(u, d, label, sizeof label);
      for (int T = grouped ? 8 : 1; T <= (grouped ? 32 : 8); T += grouped ? 24 : 7) {
        float ms[20], bb[3];
        for (int r = 0; r < 24; r++) {
          mimo_moe_args a = {.x = dxs + (size_t)(r % 16) * 32 * H, .out = dout, .T = T, .hidden = H, .inter = I,
                             .n_experts = E, .top_k = K, .router = &router, .bias = &bias, .experts = ex,
                             .norm_topk = true, .scaling = 1.0f};
          mimo_cuda_timer_start(g);
          g->moe(g, &a);
          float t = mimo_cuda_timer_stop(g);
          if (r >= 4)
            ms[r - 4] = t;
        }
        for (int r = 0; r < 3; r++)
          bb[r] = moe_back_to_back(g, dxs, (size_t)32 * H, dout, T, &router, &bias, ex);
        const double t = median(ms, 20), tb = median(bb, 3), b = E * (1 - pow(1 - (double)K / E, T)) * ebytes;
        printf("BENCH moe_int4_variant [%s] T=%d %.1f us (~%.1f%% of copy); back to back %.1f us (~%.1f%%)\n", label, T,
               t * 1e3, 100.0 * b / (t * 1e-3) / bw, tb * 1e3, 100.0 * b / (tb * 1e-3) / bw);
      }
    }
    variant(0, 0, NULL, 0);
  }
  mimo_cuda_moe_tcg_min_t(1 << 30);
  mimo_cuda_moe_tcg_min_t(tcg_old);
  g->release(g, dxs);
  g->release(g, dout);
  free(xs);
  free(ex); /* the device copies go with the backend */
  free_lin(&proto[0]);
  free_lin(&proto[1]);
  free_lin(&proto[2]);
  free_lin(&router);
}

int cuda_bench_main(int argc, char **argv) {
  (void)argc;
  (void)argv;
  mimo_backend *g;
  must(mimo_backend_cuda_init(&g, 0), "cuda backend");
  printf("device: %s\n", mimo_cuda_device_name(g));
  double bw = mimo_cuda_copy_bandwidth(g, (size_t)1 << 31);
  printf("BENCH copy_bandwidth %.1f GB/s (2 GiB device-to-device, read+write)\n", bw / 1e9);
  const char *only = getenv("MIMO_BENCH_ONLY"); /* stream, moe-variants: short device calls (below) */
  /* the read-stream ceiling at the decode kernels' sizes: the router's 4.2 MB, down's 33.6 MB and gate+up's 67.1 MB
   * at one token, all eight experts' 100.7 MB, 1 GiB; MIMO_BENCH_ONLY=stream: every launch shape and the default
   * one-token MoE beside them, nothing else */
  const bool stream_only = only && strcmp(only, "stream") == 0;
  {
    const double sizes[] = {256.0 * 4096 * 4, 4096.0 * 2048 / 2 * 8, 2 * 4096.0 * 2048 / 2 * 8,
                            3 * 4096.0 * 2048 / 2 * 8, 1024.0 * 1024 * 1024};
    const int shapes[][2] = {{32, 4}, {16, 4}, {64, 4}, {32, 8}};
    for (int i = 0; i < 5; i++)
      for (int k = 0; k < (stream_only ? 4 : 1); k++) {
        const double b = sizes[i], t1 = mimo_cuda_read_probe(g, (size_t)b, shapes[k][0], shapes[k][1], 0),
                     tb = mimo_cuda_read_probe(g, (size_t)b, shapes[k][0], shapes[k][1], 1);
        if (t1 <= 0 || tb <= 0) {
          printf("BENCH read_stream %.1f MB: failed (out of memory?)\n", b / 1e6);
          continue;
        }
        printf("BENCH read_stream %.1f MB, %d warps/SM, %d loads in flight a lane: single %.1f us = %.1f%% of copy; "
               "back to back %.1f us = %.1f%%\n",
               b / 1e6, shapes[k][0], shapes[k][1], t1, 100.0 * b / (t1 * 1e-6) / bw, tb,
               100.0 * b / (tb * 1e-6) / bw);
      }
  }
  if (stream_only) {
    moe_tc_variants(g, bw, true); /* the default one-token MoE in the same run */
    g->free(g);
    return 0;
  }
  if (only && strcmp(only, "moe-variants") == 0) { /* the decode kernels' launch shapes, nothing else */
    moe_tc_variants(g, bw, false);
    g->free(g);
    return 0;
  }
  double fl = cublas_bf16_rate(8192);
  printf("BENCH cublas_bf16_8192 %.1f TFLOP/s\n", fl / 1e12);

  /* GEMV M=1 on the model's projection shapes; two copies of each weight alternate. */
  struct { int out, in; mimo_dtype dt; const char *name; } sh[] = {
      {14848, 4096, MIMO_DT_BF16, "qkv SWA 14848x4096 bf16"}, {13568, 4096, MIMO_DT_BF16, "qkv full 13568x4096 bf16"},
      {4096, 8192, MIMO_DT_BF16, "o_proj 4096x8192 bf16"},  {4096, 4096, MIMO_DT_BF16, "4096x4096 bf16"},
      {4096, 2048, MIMO_DT_BF16, "4096x2048 bf16"},          {256, 4096, MIMO_DT_F32, "router 256x4096 f32"},
      {152576, 4096, MIMO_DT_BF16, "lm_head 152576x4096 bf16"}};
  float *x = xmalloc(8192 * 4);
  fill(x, 8192, 1.0f);
  float *dx = to_dev(g, x, 8192), *dy = g->alloc(g, 152576);
  for (size_t s = 0; s < sizeof sh / sizeof *sh; s++) {
    /* copies enough that the back-to-back run reads >= 256 MB of distinct weights (not from the 50 MB L2) */
    const double wbytes = (double)sh[s].out * sh[s].in * (sh[s].dt == MIMO_DT_F32 ? 4 : 2);
    int copies = wbytes > 4e8 ? 1 : (int)(256e6 / wbytes + 0.999);
    copies = copies < 4 ? 4 : copies > 64 ? 64 : copies;
    if (wbytes > 4e8)
      copies = 1;
    mimo_linear W[64];
    for (int c = 0; c < copies; c++) {
      W[c] = rand_dense(sh[s].out, sh[s].in, sh[s].dt, 0.05f);
      must(mimo_backend_upload_linear(g, &W[c]), "upload");
    }
    float ms[40];
    for (int r = 0; r < 44; r++) {
      mimo_cuda_timer_start(g);
      g->linear(g, dy, dx, 1, &W[r % copies]);
      float t = mimo_cuda_timer_stop(g);
      if (r >= 4)
        ms[r - 4] = t;
    }
    must(mimo_cuda_sync(g), "gemv");
    double t = median(ms, 40), b = lin_bytes(&W[0]), tbb = gemv_back_to_back(g, dy, dx, W, copies);
    double cub = sh[s].dt == MIMO_DT_BF16 ? cublas_m1_ms(&W[0]) : 0;
    printf("BENCH gemv_m1 %-28s %.1f us  %.0f GB/s = %.1f%% of copy", sh[s].name, t * 1e3, b / (t * 1e-3) / 1e9,
           100.0 * b / (t * 1e-3) / bw);
    if (cub > 0)
      printf("  (cuBLAS %.1f us = %.1f%%)", cub * 1e3, 100.0 * b / (cub * 1e-3) / bw);
    printf("; back to back %.1f us = %.1f%% (%d copies)\n", tbb * 1e3, 100.0 * b / (tbb * 1e-3) / bw, copies);
    for (int c = 0; c < copies; c++)
      free_lin(&W[c]);
  }

  /* int4 MoE decode: 256 experts, top-8, hidden 4096, width 2048, group 128 sym (bf16 scales). */
  {
    int E = 256, K = 8, H = 4096, I = 2048;
    mimo_linear router, proto[3];
    mimo_linear *ex = moe_bench_layer(g, &router, proto);
    mimo_cuda_int4_tiled_off(1); /* another such layer in the checkpoint's row-major order: before/after in one run */
    mimo_linear router_r, proto_r[3];
    mimo_linear *exr = moe_bench_layer(g, &router_r, proto_r);
    mimo_cuda_int4_tiled_off(0);
    mimo_vec bias = {0, MIMO_DT_F32, NULL, NULL};
    double ebytes = lin_bytes(&proto[0]) + lin_bytes(&proto[1]) + lin_bytes(&proto[2]);
    enum { NT = 4, TMAX = 64 };
    int Ts[NT] = {1, 8, 32, TMAX};
    float *xs = xmalloc((size_t)16 * TMAX * H * 4);
    fill(xs, (size_t)16 * TMAX * H, 1.0f);
    float *dxs = to_dev(g, xs, (size_t)16 * TMAX * H), *dout = g->alloc(g, (size_t)TMAX * H);
    int *ids = xmalloc(TMAX * K * 4);
    const int tcg_old = mimo_cuda_moe_tcg_min_t(0), gg_old = mimo_cuda_moe_grouped_min_t(0);
    /* each T with the fp32 kernels, on tensor cores with the router GEMV and the routing as two launches, then
     * fused, then with the row-major layer (before/after in one run), all per (token, slot) pair; then on tensor
     * cores with the pairs grouped by expert, and with the prefill's grouped GEMM */
    for (int ti = 0; ti < 6 * NT; ti++) {
      int T = Ts[ti % NT], mode = ti / NT;
      const char *path = mode == 0   ? "fp32"
                         : mode == 1 ? "tensor cores, split routing"
                         : mode == 2 ? "tensor cores"
                         : mode == 3 ? "tensor cores, row-major weights"
                         : mode == 4 ? "tensor cores, grouped by expert"
                                     : "grouped GEMM (prefill kernels)";
      mimo_linear *lx = mode == 3 ? exr : ex, *lr = mode == 3 ? &router_r : &router;
      mimo_cuda_moe_decode_fp32(mode == 0);
      mimo_cuda_moe_route_split(mode == 1);
      mimo_cuda_moe_tcg_min_t(mode == 4 ? 1 : 1 << 30);
      mimo_cuda_moe_grouped_min_t(mode == 5 ? 1 : 1 << 30);
      float ms[32];
      double uniq_sum = 0;
      for (int r = 0; r < 36; r++) {
        mimo_moe_args a = {.x = dxs + (size_t)(r % 16) * TMAX * H, .out = dout, .T = T, .hidden = H, .inter = I,
                           .n_experts = E, .top_k = K, .router = lr, .bias = &bias, .experts = lx,
                           .norm_topk = true, .scaling = 1.0f};
        if (r < 16) { /* untimed: count distinct experts per input set */
          a.ids_out = ids;
          g->moe(g, &a);
          must(mimo_cuda_sync(g), "moe");
          char seen[256] = {0};
          int u = 0;
          for (int i = 0; i < T * K; i++)
            u += !seen[ids[i]]++;
          uniq_sum += u;
          continue;
        }
        mimo_cuda_timer_start(g);
        g->moe(g, &a);
        ms[r - 16] = mimo_cuda_timer_stop(g);
      }
      must(mimo_cuda_sync(g), "moe");
      /* back to back (moe_back_to_back) */
      double tb = 0, tb_serial = 0; /* with programmatic dependent launch (SM90) and without */
      for (int pdl = 0; pdl < 2; pdl++) {
        mimo_cuda_pdl_off(!pdl);
        *(pdl ? &tb : &tb_serial) = moe_back_to_back(g, dxs, (size_t)TMAX * H, dout, T, lr, &bias, lx);
      }
      mimo_cuda_pdl_off(0);
      /* where the time goes: events between the launches (router, routing, gate+up, down), separate runs */
      cudaEvent_t ev[5];
      float ph[4][20];
      for (int i = 0; i < 5; i++)
        CK(cudaEventCreate(&ev[i]));
      mimo_cuda_moe_events(ev);
      for (int r = 0; r < 20; r++) {
        mimo_moe_args a = {.x = dxs + (size_t)(r % 16) * TMAX * H, .out = dout, .T = T, .hidden = H, .inter = I,
                           .n_experts = E, .top_k = K, .router = lr, .bias = &bias, .experts = lx,
                           .norm_topk = true, .scaling = 1.0f};
        g->moe(g, &a);
        CK(cudaEventSynchronize(ev[4]));
        for (int i = 0; i < 4; i++)
          CK(cudaEventElapsedTime(&ph[i][r], ev[i], ev[i + 1]));
      }
      mimo_cuda_moe_events(NULL);
      for (int i = 0; i < 5; i++)
        cudaEventDestroy(ev[i]);
      printf("BENCH moe_int4_phases [%s] T=%-2d router %.1f us, routing %.1f us, gate+up %.1f us, down %.1f us\n",
             path, T, median(ph[0], 20) * 1e3, median(ph[1], 20) * 1e3, median(ph[2], 20) * 1e3, median(ph[3], 20) * 1e3);
      double t = median(ms, 20), b = uniq_sum / 16 * ebytes, rb = lin_bytes(&router);
      printf("BENCH moe_int4_decode [%s] T=%-2d %.1f us  expert bytes %.1f MB -> %.0f GB/s = %.1f%% of copy "
             "(with router %.1f%%); back to back %.1f us = %.1f%% (fully serialised launches %.1f us)\n",
             path, T, t * 1e3, b / 1e6, b / (t * 1e-3) / 1e9, 100.0 * b / (t * 1e-3) / bw,
             100.0 * (b + rb) / (t * 1e-3) / bw, tb * 1e3, 100.0 * b / (tb * 1e-3) / bw, tb_serial * 1e3);
    }
    mimo_cuda_moe_tcg_min_t(tcg_old);
    mimo_cuda_moe_grouped_min_t(gg_old ? gg_old : -1);
    free(ex);
    free(exr);
    for (int p = 0; p < 3; p++) {
      free_lin(&proto[p]);
      free_lin(&proto_r[p]);
    }
    free_lin(&router);
    free_lin(&router_r);
    free(xs);
    free(ids);
  }
  mimo_cuda_moe_decode_fp32(0);
  mimo_cuda_moe_route_split(0);
  moe_tc_variants(g, bw, false);
  g->free(g);
  return 0;
}
