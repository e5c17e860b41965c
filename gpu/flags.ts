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
