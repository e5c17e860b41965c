/**
 * The suites that open the GPU, each on a worker thread that exits before its test ends (see
 * testing/worker_suite.ts for the crash at process exit that this avoids). A suite also runs on
 * its own, `deno test -A tests/gpu/fp4_gpu.ts`, where that abort may end an otherwise green run.
 */
import { testSuiteInWorker } from "../testing/worker_suite.ts";
// Type-only, so that `deno test` checks the suites it starts in workers without running them here.
import type {} from "./gpu/fp4_gpu.ts";
import type {} from "./gpu/fp4_outer_gpu.ts";
import type {} from "./gpu/piece_release.ts";

for (
  const [file, name] of [
    ["fp4_gpu.ts", "FP4 GPU encoder against its CPU twin"],
    ["fp4_outer_gpu.ts", "outer scales and resident tensors on the GPU"],
    ["piece_release.ts", "stages give buffers back only after reading them"],
  ]
) {
  testSuiteInWorker(new URL(`./gpu/${file}`, import.meta.url), `${name} (tests/gpu/${file})`);
}
