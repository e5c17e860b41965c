import { assertEquals, assertThrows } from "./_assert.ts";
import { seededImatrix, seededRows } from "./_fp4_data.ts";
import { encodeFp4RowsCpu } from "../gpu/fp4/encode_cpu.ts";
import { FP4_FORMATS, type Fp4Format } from "../gpu/fp4/formats.ts";
import { Fp4InputError } from "../gpu/fp4/input_error.ts";
import { assertBlocksEqual, hex } from "../testing/block_diff.ts";

const R100 = FP4_FORMATS.q4_0_rocmfp4;
const R101 = FP4_FORMATS.q4_0_rocmfp4_fast;
const f = Math.fround;

function bytes(text: string): Uint8Array {
  return Uint8Array.from(text.trim().split(/\s+/), (h) => parseInt(h, 16));
}

/** Vector 1 of fp4-formats.md §A.10: x_j = (j − 16)/4. */
function vector1(): Float32Array {
  return Float32Array.from({ length: 32 }, (_, j) => (j - 16) / 4);
}

function full(format: Fp4Format, x: Float32Array, imatrix: Float32Array | null = null) {
  return hex(encodeFp4RowsCpu(format, x, x.length, { mode: "full", imatrix }));
}

Deno.test("encodeFp4RowsCpu() full reproduces the ROCmFP4 test vectors of §A.10", () => {
  const v1 = vector1();
  assertEquals(full(R100, v1), "0f 1f 1f 2e 3e 3e 4d 4d 5d 5c 5c 6b 6b 6a 79 79 34 34");
  assertEquals(full(R101, v1), "0f 1f 1f 2e 3e 3e 4d 4d 5d 5c 5c 6b 6b 6a 79 79 34");
  const v2 = new Float32Array(32);
  v2[0] = 1;
  v2[17] = -3;
  assertEquals(full(R100, v2), "06 e0 00 00 00 00 00 00 00 00 00 00 00 00 00 00 28 34");
  assertEquals(full(R101, v2), "02 d0 00 00 00 00 00 00 00 00 00 00 00 00 00 00 38");
});

Deno.test("encodeFp4RowsCpu() full with an imatrix reproduces the zero-weight vector of §A.9", () => {
  const im = new Float32Array(32).fill(1);
  im.fill(0, 0, 16);
  assertEquals(
    full(R100, vector1(), im),
    "0f 1f 1f 2f 3f 3f 4f 4f 5f 5f 5f 6f 6f 6f 7f 7f 01 34",
  );
});

Deno.test("encodeFp4RowsCpu() refuses vector 3 (a NaN), where ROCmFP4 writes scale 0", () => {
  const v3 = vector1();
  v3[3] = NaN;
  for (const format of [R100, R101]) {
    assertThrows(
      () => encodeFp4RowsCpu(format, v3, 32, { mode: "full" }),
      Fp4InputError,
      new RegExp(`^Cannot encode ${format.label} as element 3 \\(row 0, column 3\\) is NaN$`),
    );
  }
});

/**
 * ROCmFP4's reference quantizer written straight from fp4-formats.md §A.8–A.9, in plain float32
 * on the raw values: every byte 0x01..0x7E, err = Σ (w·d)·d with d = x − L·H, lowest byte on ties,
 * elements by a = |x·fl(1/H)| against 0.5 1.5 2.5 3.5 5 7 9.
 */
function rocmReference(
  format: Fp4Format,
  x: Float32Array,
  nPerRow: number,
  imatrix: Float32Array | null,
): Uint8Array {
  const group = format.subBlockSize;
  const levels = [0, 1, 2, 3, 4, 6, 8, 10];
  const limits = [0.5, 1.5, 2.5, 3.5, 5, 7, 9];
  const half = (e: number) => {
    const ex = e >> 3;
    const m = e & 7;
    return ex === 0 ? m * 2 ** -10 : (8 + m) * 2 ** (ex - 11);
  };
  const w = new Float32Array(x.length).fill(1);
  if (imatrix !== null) {
    for (let r = 0; r < x.length / nPerRow; r++) {
      let sum = 0;
      for (let j = 0; j < nPerRow; j++) sum = f(sum + f(x[r * nPerRow + j]! ** 2));
      const sigma2 = f(sum / nPerRow);
      for (let j = 0; j < nPerRow; j++) {
        const v = x[r * nPerRow + j]!;
        w[r * nPerRow + j] = f(imatrix[j]! * f(Math.sqrt(f(sigma2 + f(v * v)))));
      }
    }
  }
  const out = new Uint8Array((x.length / 32) * format.blockBytes);
  const code = (v: number, r: number) => {
    const a = Math.abs(f(v * r));
    let m = 0;
    while (m < 7 && a > limits[m]!) m++;
    return m === 0 ? 0 : v < 0 ? m | 8 : m;
  };
  for (let b = 0; b < x.length / 32; b++) {
    for (let g = 0; g < 32 / group; g++) {
      const start = b * 32 + g * group;
      let amax = 0;
      for (let i = 0; i < group; i++) amax = Math.max(amax, Math.abs(x[start + i]!));
      let best = 0;
      if (amax > 0) {
        let bestErr = Infinity;
        for (let e = 1; e <= 0x7e; e++) {
          const h = half(e);
          const r = f(1 / h);
          let err = 0;
          for (let i = 0; i < group; i++) {
            const v = x[start + i]!;
            const c = code(v, r);
            const d = f(v - f((c & 8 ? -1 : 1) * levels[c & 7]! * h));
            err = f(err + f(f(w[start + i]! * d) * d));
          }
          if (err < bestErr) {
            bestErr = err;
            best = e;
          }
        }
      }
      out[b * format.blockBytes + 16 + g] = best;
      const r = best === 0 ? 0 : f(1 / half(best));
      for (let i = 0; i < group; i++) {
        const k = g * group + i;
        out[b * format.blockBytes + (k % 16)]! |= (best === 0 ? 0 : code(x[start + i]!, r)) <<
          (k < 16 ? 0 : 4);
      }
    }
  }
  return out;
}

Deno.test("encodeFp4RowsCpu() full equals the §A.8 exhaustive reference on seeded rows", () => {
  const x = seededRows(21, 3, 128);
  const im = seededImatrix(21, 128);
  for (const format of [R100, R101]) {
    for (const imatrix of [null, im]) {
      assertBlocksEqual(
        encodeFp4RowsCpu(format, x, 128, { mode: "full", imatrix }),
        rocmReference(format, x, 128, imatrix),
        format.blockBytes,
        `${format.label} ${imatrix ? "with" : "without"} imatrix`,
      );
    }
  }
});

Deno.test("rocmReference() reproduces vector 1, so it can vouch for the encoder", () => {
  assertBlocksEqual(
    rocmReference(R100, vector1(), 32, null),
    bytes("0f 1f 1f 2e 3e 3e 4d 4d 5d 5c 5c 6b 6b 6a 79 79 34 34"),
    18,
    "reference",
  );
});
