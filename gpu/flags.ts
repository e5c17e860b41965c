/**
 * Thresholds that decide between the GPU kernels and their CPU twins, in one place. Both give the
 * same bytes, so these only trade speed.
 *
 * @module
 */

/**
 * With `--device auto`, FP4 calls with fewer elements than this run on the CPU twin: below it the
 * fixed cost of a GPU round trip (upload, dispatch, a ≥ 10 ms `mapAsync` in Deno) exceeds the work.
 */
export const FP4_GPU_MIN_ELEMENTS = 1 << 16;

/**
 * With `--device auto` on a software adapter (llvmpipe, WARP), plain `rtn` runs on the CPU twin:
 * measured on llvmpipe with two shared cores (1 Mi elements), the twin is about as fast as the
 * kernel for rtn (13–18 vs 15–20 Melem/s) and holds no GPU memory, while the kernel wins 2–5× for
 * `window` and `full`.
 */
export const FP4_RTN_ON_CPU_WITH_SOFTWARE_ADAPTER = true;
