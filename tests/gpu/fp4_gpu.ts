import { assertEquals, assertRejects } from "../_assert.ts";
import { concat, edgeImatrix, edgeRows, seededImatrix, seededRows } from "../_fp4_data.ts";
import { acquireGpu } from "../../gpu/device.ts";
import { createFp4Encoder, encodeFp4Rows } from "../../gpu/fp4/encode.ts";
import { encodeFp4RowsCpu } from "../../gpu/fp4/encode_cpu.ts";
import { FP4_FORMATS, type Fp4Format } from "../../gpu/fp4/formats.ts";
import { Fp4InputError } from "../../gpu/fp4/input_error.ts";
import { type Fp4SearchOptions } from "../../gpu/fp4/search_options.ts";
import { assertBlocksEqual } from "../../testing/block_diff.ts";
import { Fp4GpuEncoder, fp4GpuTuning } from "../../gpu/fp4/encode_gpu.ts";
import { permuteRopeRows } from "../../gpu/rope_rows.ts";
import { resolveFp4Search } from "../../gpu/fp4/search_options.ts";
import { fp4Weights } from "../../gpu/fp4/weights.ts";
import { decodeBf16, encodeBf16 as encodeBf16Bytes } from "../../stages/encode/float_codecs.ts";

const gpu = await acquireGpu("auto");
if (gpu === null) {
  console.warn("gpu/fp4_gpu: skipped, WebGPU has no adapter here");
}
const ignore = gpu === null;
const N = 128;

function inputs(format: Fp4Format, seed: number): Float32Array {
  const edges = edgeRows(seed, 27, format.subBlockSize).map((v) =>
    format.weighting === "row-sigma" && Math.abs(v) > 1e15 ? v * 1e-30 : v
  );
  return concat(seededRows(seed, 3, N), edges, new Float32Array(N - (edges.length % N)));
}

/** Encodes on both and requires the same bytes, or the same error. */
async function same(format: Fp4Format, x: Float32Array, options: Fp4SearchOptions, label: string) {
  let cpu: Uint8Array | Error;
  try {
    cpu = encodeFp4RowsCpu(format, x, N, options);
  } catch (e: unknown) {
    cpu = e as Error;
  }
  const run = encodeFp4Rows(format, x, N, { ...options, device: "gpu" });
  if (cpu instanceof Error) {
    await assertRejects(
      () => run,
      cpu.constructor as typeof Error,
      new RegExp(`^${escape(cpu.message)}$`),
    );
    return;
  }
  assertBlocksEqual(await run, cpu, format.blockBytes, label);
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

for (const format of Object.values(FP4_FORMATS)) {
  Deno.test({
    name: `Fp4GpuEncoder encodes ${format.label} to the CPU twin's bytes in every mode`,
    ignore,
    async fn() {
      const x = inputs(format, 41);
      const imatrices = [null, seededImatrix(41, N)];
      if (format.weighting === "column") imatrices.push(edgeImatrix(41, N));
      const outers = format.outerScale ? [1, 37.5, 3e-5] : [1];
      for (const mode of ["rtn", "window", "full"] as const) {
        for (const imatrix of imatrices) {
          for (const outerScale of outers) {
            const options = { mode, imatrix, outerScale, fourOverSix: mode !== "full" };
            await same(format, x, options, `${format.label} ${mode} ${outerScale}`);
          }
        }
      }
      // The widest window: 511 candidates per sub-block, near llvmpipe's per-invocation loop cap.
      await same(format, x, { mode: "window", window: 255 }, `${format.label} window 255`);
    },
  });
}

Deno.test({
  name: "Fp4GpuEncoder reports the first NaN, ±inf or outer-scale overflow as the twin does",
  ignore,
  async fn() {
    const nvfp4 = FP4_FORMATS.nvfp4;
    const x = seededRows(42, 2, N);
    x[200] = Infinity;
    x[150] = NaN;
    await assertRejects(
      () => encodeFp4Rows(nvfp4, x, N, { device: "gpu" }),
      Fp4InputError,
      /^Cannot encode NVFP4 as element 150 \(row 1, column 22\) is NaN$/,
    );
    const big = seededRows(42, 2, N);
    big[77] = 3e38;
    await same(nvfp4, big, { outerScale: 1e-3 }, "overflow");
    await assertRejects(
      () => encodeFp4Rows(nvfp4, big, N, { outerScale: 1e-3, device: "gpu" }),
      Fp4InputError,
      /^Cannot encode NVFP4 as element 77 \(row 0, column 77\) overflows float32 when divided by the outer scale 0\.0010000000474974513$/,
    );
  },
});

Deno.test({
  name: "createFp4Encoder() serves overlapping chunks of one tensor on the GPU",
  ignore,
  async fn() {
    const format = FP4_FORMATS.q4_0_rocmfp4;
    const imatrix = seededImatrix(43, N);
    const encoder = await createFp4Encoder(format, N, { mode: "window", imatrix, device: "gpu" });
    assertEquals(encoder.device, "gpu");
    const chunks = [1, 2, 3, 4].map((seed) => seededRows(43 + seed, seed, N));
    const results = await Promise.all(chunks.map((c) => encoder.encode(c)));
    chunks.forEach((c, i) =>
      assertBlocksEqual(
        results[i]!,
        encodeFp4RowsCpu(format, c, N, { mode: "window", imatrix }),
        format.blockBytes,
        `chunk ${i}`,
      )
    );
  },
});

Deno.test({
  name:
    "Fp4Encoder.encodeBf16() on the GPU gives the bytes of encode() on the decoded rows, also cut into pieces",
  ignore,
  async fn() {
    const rows = seededRows(41, 64, N);
    const bf16 = new Uint8Array(rows.length * 2);
    encodeBf16Bytes(rows, bf16);
    const decoded = new Float32Array(rows.length);
    decodeBf16(bf16, decoded);
    const saved = fp4GpuTuning.pieceBytes;
    try {
      for (const pieceBytes of [saved, N * 2 * 3]) {
        fp4GpuTuning.pieceBytes = pieceBytes; // several pieces per call
        for (const format of [FP4_FORMATS.nvfp4, FP4_FORMATS.mxfp4]) {
          const options = { mode: "full" as const, imatrix: seededImatrix(43, N) };
          const gpuEnc = await createFp4Encoder(format, N, { ...options, device: "gpu" });
          const fromBf16 = await gpuEnc.encodeBf16(bf16);
          const cpu = encodeFp4RowsCpu(format, decoded, N, options);
          assertBlocksEqual(
            fromBf16,
            cpu,
            format.blockBytes,
            `${format.label}, ${pieceBytes} B pieces`,
          );
        }
      }
      const bad = bf16.slice();
      bad[2 * 77] = 0xc0;
      bad[2 * 77 + 1] = 0x7f; // BF16 NaN at element 77
      const enc = await createFp4Encoder(FP4_FORMATS.nvfp4, N, { device: "gpu" });
      await assertRejects(() => enc.encodeBf16(bad), Fp4InputError, /element 77 /);
    } finally {
      fp4GpuTuning.pieceBytes = saved;
    }
  },
});

Deno.test({
  name: "The GPU reads Q/K rows in rope order: the CPU twin's bytes of the permuted rows",
  ignore,
  async fn() {
    const nvfp4 = FP4_FORMATS.nvfp4;
    const headRows = 6, heads = 5, n = 64;
    const x = seededRows(17, heads * headRows, n);
    x[7 * n + 5] = NaN; // row 7 (head 1, its row 1 = 0·3 + 1) is output row 6 + 2·1 + 0 = 8
    const permuted = (values: Float32Array) =>
      new Float32Array(permuteRopeRows(new Uint8Array(values.buffer), 4 * n, headRows).buffer);
    const bf16 = new Uint8Array(2 * x.length);
    encodeBf16Bytes(x, bf16);
    const widened = new Float32Array(x.length);
    decodeBf16(bf16, widened);
    const saved = fp4GpuTuning.pieceBytes;
    try {
      // Pieces of one head, and pieces of several heads (cut at whole heads).
      for (const pieceBytes of [headRows * n * 4, 2 ** 20]) {
        fp4GpuTuning.pieceBytes = pieceBytes;
        for (const mode of ["rtn", "full"] as const) {
          const options = { mode, imatrix: seededImatrix(17, n) };
          const label = `${mode}, ${pieceBytes} B pieces`;
          const want = (values: Float32Array) =>
            encodeFp4RowsCpu(nvfp4, permuted(values), n, options);
          const encoder = await createFp4Encoder(nvfp4, n, { ...options, device: "gpu" });
          await assertRejects(
            () => encoder.encode(x, headRows),
            Fp4InputError,
            /element 517 \(row 8, column 5\) is NaN/,
          );
          const clean = x.slice();
          clean[7 * n + 5] = 0;
          assertEquals(await encoder.encode(clean, headRows), want(clean), `${label}: F32`);
          const cleanBf16 = bf16.slice();
          cleanBf16.fill(0, 2 * (7 * n + 5), 2 * (7 * n + 6));
          const cleanWidened = widened.slice();
          cleanWidened[7 * n + 5] = 0;
          assertEquals(
            await encoder.encodeBf16(cleanBf16, headRows),
            want(cleanWidened),
            `${label}: BF16`,
          );
          // Uploaded first (as tensors kept on the GPU are), then encoded.
          const kernel = await Fp4GpuEncoder.create(gpu!, nvfp4);
          const search = resolveFp4Search(nvfp4, n, options);
          const weights = fp4Weights(nvfp4, new Float32Array(0), n, search);
          const rows = kernel.upload({ bf16: cleanBf16 }, n, headRows);
          assertEquals(
            await kernel.encode(rows, n, search, weights),
            want(cleanWidened),
            `${label}: uploaded`,
          );
          // On the CPU the encoder permutes a copy: the same bytes.
          const cpu = await createFp4Encoder(nvfp4, n, { ...options, device: "cpu" });
          assertEquals(await cpu.encode(clean, headRows), want(clean), `${label}: CPU`);
        }
      }
    } finally {
      fp4GpuTuning.pieceBytes = saved;
    }
    const encoder = await createFp4Encoder(nvfp4, n, { device: "gpu" });
    await assertRejects(
      () => encoder.encode(x.subarray(0, 4 * n), headRows),
      RangeError,
      /not whole heads of 6/,
    );
  },
});
