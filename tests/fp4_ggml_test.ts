import { assert, assertEquals } from "./_assert.ts";
import {
  below,
  bitsOf,
  concat,
  edgeRows,
  fromBits,
  seededImatrix,
  seededRows,
} from "./_fp4_data.ts";
import { decodeFp4 } from "../gpu/fp4/decode.ts";
import { encodeFp4RowsCpu } from "../gpu/fp4/encode_cpu.ts";
import { FP4_FORMATS, type Fp4Format } from "../gpu/fp4/formats.ts";
import { fp4OuterScale } from "../gpu/fp4/outer_scale.ts";
import type { Fp4SearchMode } from "../gpu/fp4/search_options.ts";
import { fp4Tables } from "../gpu/fp4/tables.ts";
import { assertBlocksEqual } from "../testing/block_diff.ts";
import { ggmlDequantize, ggmlQuantize, ggmlValidateRowData } from "../testing/ggml.ts";

const NVFP4 = FP4_FORMATS.nvfp4;
const MXFP4 = FP4_FORMATS.mxfp4;

function sourceOf(x: Float32Array, format: Fp4Format) {
  return (block: number) => {
    const values = x.subarray(block * format.blockSize, (block + 1) * format.blockSize);
    return `source bits: ${
      Array.from(values, (v) => bitsOf(v).toString(16).padStart(8, "0")).join(" ")
    }`;
  };
}

function checkRtn(format: Fp4Format, x: Float32Array, nPerRow: number, label: string): void {
  const ours = encodeFp4RowsCpu(format, x, nPerRow);
  const reference = ggmlQuantize(format.ggmlType!.id, x, nPerRow);
  assertBlocksEqual(ours, reference, format.blockBytes, label, sourceOf(x, format));
}

/** Blocks whose amax sits on each rtn threshold and one float32 below it. */
function thresholdBlocks(format: Fp4Format, floor: number): Float32Array {
  const t = fp4Tables(format).thresholdsTop;
  const amaxes: number[] = [];
  for (let c = 1; c < 256; c++) {
    if (t[c] === 0 || t[c] === 0xffffffff || t[c] === t[c - 1]) continue;
    if (fromBits(t[c]!) < floor) continue;
    amaxes.push(fromBits(t[c]!), below(fromBits(t[c]!)));
  }
  const out = new Float32Array(amaxes.length * format.blockSize);
  amaxes.forEach((a, i) => {
    for (let j = 0; j < format.blockSize; j++) {
      // the block max, then a ramp of smaller values of both signs
      out[i * format.blockSize + j] = j === 0 ? a : Math.fround(((j % 7) - 3) * a / 4.3);
    }
  });
  return out;
}

/** Elements on every midpoint between levels (ties) for scale 1, in both signs. */
function tieBlocks(format: Fp4Format): Float32Array {
  const mids = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, 0.125, 7, 100];
  const out = new Float32Array(format.blockSize * 2);
  for (let j = 0; j < format.blockSize; j++) {
    out[j] = j === 0 ? 6 : (j % 2 ? -1 : 1) * mids[j % mids.length]!;
    out[format.blockSize + j] = j === 0 ? -6 : (j % 2 ? 1 : -1) * mids[(j + 3) % mids.length]! / 2;
  }
  return out;
}

Deno.test("encodeFp4RowsCpu() rtn is byte-identical to ggml quantize_nvfp4 on seeded rows", () => {
  checkRtn(NVFP4, seededRows(1, 12, 512), 512, "NVFP4 seeded rows");
});

Deno.test("encodeFp4RowsCpu() rtn is byte-identical to ggml quantize_mxfp4 on seeded rows", () => {
  checkRtn(MXFP4, seededRows(2, 12, 512), 512, "MXFP4 seeded rows");
});

Deno.test("encodeFp4RowsCpu() rtn matches ggml on edge grids, thresholds and ties", () => {
  for (const format of [NVFP4, MXFP4]) {
    const edges = format === MXFP4
      // MXFP4 edge blocks stay at amax ≥ 2^-122 (see the deviation test below).
      ? edgeRows(3, 64, 32).map((v) => (Math.abs(v) < 2 ** -100 ? 0 : v))
      : edgeRows(3, 64, 16);
    checkRtn(format, edges, format.blockSize, `${format.label} edge grid`);
    const floor = format === MXFP4 ? 2 ** -100 : 0;
    checkRtn(
      format,
      thresholdBlocks(format, floor),
      format.blockSize,
      `${format.label} thresholds`,
    );
    checkRtn(format, tieBlocks(format), format.blockSize, `${format.label} ties`);
  }
});

Deno.test("encodeFp4RowsCpu() rtn matches ggml's NVFP4 quirks for huge values and tiny blocks", () => {
  const x = new Float32Array(64 * 3);
  // huge: float32 distances to every level round together and code 0 wins in ggml
  x.set([1e10, 1, 1e9, 1e20, -1e15, 1e12, 5e11, 3.4e38, -3.4e38, 2688, 2689, 1e7]);
  // amax below the smallest scale: ggml writes scale 0
  x.set([0.001, -0.005, 0.0058, 2 ** -126, -(2 ** -127)], 64);
  x.set([0.015 * 6, 255 * 6, 256 * 6, 300 * 6, 447 * 6, 247.9 * 6], 128);
  checkRtn(NVFP4, x, 64, "NVFP4 quirks");
});

Deno.test("encodeFp4RowsCpu() rtn matches ggml's log2f rounding at every MXFP4 exponent", () => {
  const amaxes: number[] = [];
  for (let k = -120; k <= 127; k++) {
    let a = 2 ** k;
    amaxes.push(a);
    for (let i = 0; i < 40; i++) amaxes.push(a = below(a));
  }
  const x = new Float32Array(amaxes.length * 32);
  amaxes.forEach((a, i) => {
    x[i * 32] = a;
    x[i * 32 + 17] = -a * 0.7;
  });
  checkRtn(MXFP4, x, 32, "MXFP4 exponents");
});

Deno.test("encodeFp4RowsCpu() MXFP4 writes a valid scale where ggml's cast is undefined", () => {
  // amax in [2^-126, 2^-125): ggml's (uint8_t) of -1.0f writes 0xFF, which its loader rejects.
  const x = new Float32Array(32);
  x[0] = 2 ** -126 * 1.5;
  const theirs = ggmlQuantize(MXFP4.ggmlType!.id, x, 32);
  assertEquals(theirs[0], 0xff);
  assertEquals(ggmlValidateRowData(MXFP4.ggmlType!.id, theirs), false);
  const ours = encodeFp4RowsCpu(MXFP4, x, 32);
  assertEquals(ours[0], 0);
  assertEquals(ggmlValidateRowData(MXFP4.ggmlType!.id, ours), true);
  // 1.5·2^-126 = 3·2^-127: E2M1 value 3 (code 5) at scale 2^-127
  assertEquals(ours[1], 5);
});

Deno.test("encodeFp4RowsCpu() ignores the imatrix in rtn, as ggml does", () => {
  const x = seededRows(4, 4, 256);
  const im = seededImatrix(4, 256);
  for (const format of [NVFP4, MXFP4]) {
    const ours = encodeFp4RowsCpu(format, x, 256, { imatrix: im });
    const reference = ggmlQuantize(format.ggmlType!.id, x, 256, im);
    assertBlocksEqual(ours, reference, format.blockBytes, `${format.label} with imatrix`);
  }
});

Deno.test("decodeFp4() equals ggml's dequantize_row of our bytes in every mode", () => {
  const x = concat(
    seededRows(5, 4, 256),
    edgeRows(5, 16, 64).map((v) => (Math.abs(v) < 2 ** -100 ? 0 : v)),
  );
  const im = seededImatrix(5, 256);
  for (const format of [NVFP4, MXFP4]) {
    for (const mode of ["rtn", "window", "full"] satisfies Fp4SearchMode[]) {
      for (const imatrix of [null, im]) {
        const bytes = encodeFp4RowsCpu(format, x, 256, { mode, imatrix, fourOverSix: true });
        const label = `${format.label} ${mode} ${imatrix ? "imatrix" : "plain"}`;
        assert(ggmlValidateRowData(format.ggmlType!.id, bytes), `${label}: ggml rejects our bytes`);
        const theirs = ggmlDequantize(format.ggmlType!.id, bytes, x.length);
        assertEquals(decodeFp4(format, bytes, x.length), theirs, label);
      }
    }
  }
});

Deno.test("decodeFp4() with an outer scale is ggml's dequantize times the outer scale", () => {
  const x = seededRows(6, 2, 256);
  const outerScale = fp4OuterScale(NVFP4, x.reduce((m, v) => Math.max(m, Math.abs(v)), 0));
  const bytes = encodeFp4RowsCpu(NVFP4, x, 256, { mode: "window", outerScale });
  const theirs = ggmlDequantize(NVFP4.ggmlType!.id, bytes, x.length).map((v) => v * outerScale);
  assertEquals(decodeFp4(NVFP4, bytes, x.length, { outerScale }), theirs);
  let worst = 0;
  const ours = decodeFp4(NVFP4, bytes, x.length, { outerScale });
  for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(ours[i]! - x[i]!));
  const amax = x.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
  assert(worst < amax / 12, `outer-scaled NVFP4 error ${worst} exceeds a step at amax ${amax}`);
});
