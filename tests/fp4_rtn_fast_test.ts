import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { below, bitsOf, concat, edgeRows, fromBits, seededRows } from "./_fp4_data.ts";
import { encodeFp4IntoCpuWith, encodeFp4RowsCpu } from "../gpu/fp4/encode_cpu.ts";
import { FP4_FORMATS, fp4Bytes, type Fp4Format } from "../gpu/fp4/formats.ts";
import { rtnFastApplies } from "../gpu/fp4/rtn_fast.ts";
import { resolveFp4Search } from "../gpu/fp4/search_options.ts";
import { fp4Tables } from "../gpu/fp4/tables.ts";
import { WEIGHTS_NONE } from "../gpu/fp4/weights.ts";
import { assertBlocksEqual } from "../testing/block_diff.ts";
import { ggmlQuantize } from "../testing/ggml.ts";

const FORMATS = Object.values(FP4_FORMATS);
const NVFP4 = FP4_FORMATS.nvfp4;
const MXFP4 = FP4_FORMATS.mxfp4;

function encodeWith(format: Fp4Format, x: Float32Array, nPerRow: number, fast: boolean) {
  const search = resolveFp4Search(format, nPerRow, {});
  const out = new Uint8Array(fp4Bytes(format, x.length)).fill(0xa5);
  encodeFp4IntoCpuWith(format, x, nPerRow, search, { kind: WEIGHTS_NONE }, out, fast);
  return out;
}

function sourceOf(x: Float32Array, format: Fp4Format) {
  return (block: number) => {
    const values = x.subarray(block * format.blockSize, (block + 1) * format.blockSize);
    return `source bits: ${
      Array.from(values, (v) => bitsOf(v).toString(16).padStart(8, "0")).join(" ")
    }`;
  };
}

/** The fast path against the general twin (forced), and ggml where it has the format. */
function check(format: Fp4Format, x: Float32Array, nPerRow: number, label: string, ggml = true) {
  const fast = encodeWith(format, x, nPerRow, true);
  const general = encodeWith(format, x, nPerRow, false);
  const context = sourceOf(x, format);
  assertBlocksEqual(fast, general, format.blockBytes, `${format.label} ${label} vs twin`, context);
  if (ggml && format.ggmlType !== null && format.rtnRule.startsWith("ggml")) {
    const reference = ggmlQuantize(format.ggmlType.id, x, nPerRow);
    assertBlocksEqual(
      fast,
      reference,
      format.blockBytes,
      `${format.label} ${label} vs ggml`,
      context,
    );
  }
}

/** A value's float32 neighbours: `steps` ulps down and up (positive finite values only). */
function around(v: number, steps: number): number[] {
  const out: number[] = [];
  const bits = bitsOf(v);
  for (let s = -steps; s <= steps; s++) {
    const b = bits + s;
    if (b >= 0 && b <= 0x7f7fffff) out.push(fromBits(b));
  }
  return out;
}

/**
 * For every code the rtn rule writes, sub-blocks whose amax is the code's smallest amax (and one
 * float32 below it), the rest elements on and ±1 ulp around each midpoint level·H of that code
 * (ties between levels), with alternating signs.
 */
function tieGrid(format: Fp4Format, floor = 0): Float32Array {
  const t = fp4Tables(format);
  const n = format.subBlockSize;
  const subBlocks: number[][] = [];
  for (let c = 1; c < 256; c++) {
    const th = t.thresholdsTop[c]!;
    if (th === 0 || th === 0xffffffff || th === t.thresholdsTop[c - 1]) continue;
    if (fromBits(th) < floor) continue;
    const h = t.hSig[c]! * 2 ** t.hExp[c]!;
    if (h === 0) continue;
    const values: number[] = [];
    for (let k = 0; k < 7; k++) {
      const mid = (format.levels[k]! + format.levels[k + 1]!) / 2;
      const exact = Math.fround(mid * h);
      if (exact > 0 && exact < 3.4e38) values.push(...around(exact, 1));
    }
    for (const amax of [fromBits(th), below(fromBits(th))]) {
      for (let at = 0; at < values.length; at += n - 1) {
        const block = [amax];
        for (let j = 0; j < n - 1; j++) {
          const v = values[(at + j) % values.length]!;
          block.push((j % 2 === 0 ? -1 : 1) * Math.min(v, amax));
        }
        subBlocks.push(block);
      }
    }
  }
  return pad(format, subBlocks);
}

/** Sub-blocks whose amax is at and just below powers of two (and their 1.5 multiples). */
function powerGrid(format: Fp4Format): Float32Array {
  const n = format.subBlockSize;
  const subBlocks: number[][] = [];
  for (let e = -126; e <= 127; e++) {
    for (const a of [2 ** e, below(2 ** e), 1.5 * 2 ** e, below(1.5 * 2 ** e)]) {
      if (!(a < 3.5e38) || a < 2 ** -126) continue;
      const block = [a];
      for (let j = 1; j < n; j++) block.push(Math.fround(((j % 9) - 4) * a / 4.25));
      subBlocks.push(block);
    }
  }
  return pad(format, subBlocks);
}

/** Huge values (past every level in NVFP4 and AMD-FP4), subnormals, ±0 and mixtures. */
function oddGrid(format: Fp4Format): Float32Array {
  const n = format.subBlockSize;
  const rows: number[][] = [
    [1e10, 1, 1e9, 1e20, -1e15, 1e12, 5e11, 3.4e38, -3.4e38, 2688, 2689, 1e7],
    [3.4028234663852886e38, -3e38, 1e38, 2 ** 127, 2 ** 126, -(2 ** 125), 1],
    [2 ** -126, -(2 ** -127), 2 ** -149, -(2 ** -140), 0, -0, 1.5 * 2 ** -126],
    [-0, -0, -(2 ** -149), -(2 ** -130)],
    [fromBits(0x007fffff), fromBits(0x00800000), -fromBits(0x00800001)],
    [0.001, -0.005, 0.0058, 0.015 * 6, 255 * 6, 256 * 6, 300 * 6, 447 * 6, 247.9 * 6],
    [114688 * 6, 114688 * 6 * 2 ** 21, 2 ** 30, -(2 ** 40), 1e-3],
  ];
  return pad(format, rows.map((r) => r.slice(0, n)));
}

/** Sub-blocks (each at most subBlockSize long, zero-filled) laid out as whole blocks. */
function pad(format: Fp4Format, subBlocks: number[][]): Float32Array {
  const n = format.subBlockSize;
  const count = Math.ceil((subBlocks.length * n) / format.blockSize) * format.blockSize;
  const out = new Float32Array(count);
  subBlocks.forEach((values, s) => out.set(values, s * n));
  return out;
}

Deno.test("rtnFastApplies() serves plain rtn only", () => {
  const at = (options: Parameters<typeof resolveFp4Search>[2]) =>
    rtnFastApplies(resolveFp4Search(NVFP4, 64, options));
  assert(at({}));
  assert(at({ mode: "rtn", imatrix: new Float32Array(64).fill(1) }));
  assert(at({ outerScale: 1 }));
  assert(!at({ fourOverSix: true }));
  assert(!at({ mode: "window" }));
  assert(!at({ mode: "window", window: 0 }));
  assert(!at({ mode: "full" }));
  assert(!at({ outerScale: 0.5 }));
  const search = resolveFp4Search(NVFP4, 64, { mode: "full" });
  assertThrows(
    () =>
      encodeFp4IntoCpuWith(
        NVFP4,
        new Float32Array(64),
        64,
        search,
        { kind: 0 },
        new Uint8Array(36),
        true,
      ),
    RangeError,
  );
});

Deno.test("rtn fast path equals the general twin and ggml on seeded rows", () => {
  for (const format of FORMATS) {
    check(format, seededRows(11, 16, 512), 512, "seeded rows");
  }
});

Deno.test("rtn fast path equals the general twin on edge grids", () => {
  for (const format of FORMATS) {
    const n = Math.max(format.blockSize, 64);
    const edges = edgeRows(12, 128, n);
    // ggml differs from the twin on MXFP4 blocks with amax < 2^-122 (see fp4_ggml_test.ts).
    check(format, edges, n, "edge grid", format !== MXFP4);
    check(format, edges.map((v) => (Math.abs(v) < 2 ** -100 ? 0 : v)), n, "edge grid ≥ 2^-100");
    check(format, oddGrid(format), format.blockSize, "huge, subnormal and zero values", false);
  }
  // NVFP4's odd grid against ggml too (MXFP4's holds blocks below 2^-122).
  check(NVFP4, oddGrid(NVFP4), NVFP4.blockSize, "huge and tiny values");
});

Deno.test("rtn fast path equals the general twin on ties between levels at every code", () => {
  for (const format of FORMATS) {
    // ggml differs from the twin on MXFP4 blocks with amax < 2^-122 (see fp4_ggml_test.ts).
    check(format, tieGrid(format), format.blockSize, "ties", format !== MXFP4);
    if (format === MXFP4) check(format, tieGrid(format, 2 ** -120), 32, "ties ≥ 2^-120");
  }
});

Deno.test("rtn fast path equals the general twin with amax at and just below powers of two", () => {
  for (const format of FORMATS) {
    const x = powerGrid(format);
    check(format, x, format.blockSize, "powers of two", format !== MXFP4);
    if (format === MXFP4) {
      check(format, x.map((v) => (Math.abs(v) < 2 ** -120 ? 0 : v)), 32, "powers ≥ 2^-120");
    }
  }
});

Deno.test("encodeFp4RowsCpu() rtn takes the fast path and writes every byte", () => {
  const x = concat(seededRows(13, 2, 256), edgeRows(13, 8, 64));
  for (const format of FORMATS) {
    const general = encodeWith(format, x, 256, false);
    assertEquals(encodeFp4RowsCpu(format, x, 256), general, format.label);
    // A dirty output buffer: the fast path leaves nothing of it behind.
    assertEquals(encodeWith(format, x, 256, true), general, `${format.label} dirty buffer`);
  }
});
