import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { encodeQ8_0, encodeQ8_0FromBytes, q8_0Bytes } from "../stages/encode/q8_0.ts";
import { ggmlQuantize } from "../testing/ggml.ts";
import { assertBlocksEqual, compareBlocks, hex } from "../testing/block_diff.ts";
import { SeededRandom } from "../testing/seeded_random.ts";
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
} from "../testing/half_floats.ts";

const BLOCK = 32;
const BLOCK_BYTES = 34;
const FLT_MAX = 3.4028234663852886e38;

const scratch = new Float32Array(1);
const scratchBits = new Uint32Array(scratch.buffer);
function fromBits(bits: number): number {
  scratchBits[0] = bits;
  return scratch[0]!;
}
function bitsOf(value: number): number {
  scratch[0] = value;
  return scratchBits[0]!;
}

function describeBlock(src: Float32Array, block: number): string {
  const values = src.subarray(block * BLOCK, (block + 1) * BLOCK);
  const bits = Array.from(values, (v) => bitsOf(v).toString(16).padStart(8, "0"));
  return `source bits of that block: ${bits.join(" ")}`;
}

/** Encodes with Sluice and with ggml and requires identical bytes. */
function checkAgainstGgml(label: string, src: Float32Array, nPerRow = BLOCK): void {
  const ours = new Uint8Array(q8_0Bytes(src.length));
  assertEquals(encodeQ8_0(src, ours), -1, `${label}: finite input reported as non-finite`);
  const reference = ggmlQuantize("q8_0", src, nPerRow);
  assertBlocksEqual(ours, reference, BLOCK_BYTES, label, (b) => describeBlock(src, b));
}

/** Concatenates 32-element blocks given as plain arrays (values are rounded to float32). */
function blocks(list: readonly (readonly number[])[]): Float32Array {
  const out = new Float32Array(list.length * BLOCK);
  list.forEach((b, i) => {
    if (b.length !== BLOCK) throw new RangeError(`Cannot build a block from ${b.length} values`);
    out.set(b, i * BLOCK);
  });
  return out;
}

function randomRows(seed: number, rows: number, draw: (r: SeededRandom, row: number) => number) {
  const r = new SeededRandom(seed, "q8_0");
  const out = new Float32Array(rows * 4096);
  for (let row = 0; row < rows; row++) {
    for (let i = 0; i < 4096; i++) out[row * 4096 + i] = draw(r, row);
  }
  return out;
}

Deno.test("Q8_0 matches ggml on normal rows with per-row scales", () => {
  const scales = new SeededRandom(11, "scales");
  const rowScale = Array.from({ length: 48 }, () => 0.02 * Math.exp(scales.normal()));
  checkAgainstGgml("normal", randomRows(1, 48, (r, row) => r.normal() * rowScale[row]!), 4096);
});

Deno.test("Q8_0 matches ggml on heavy-tailed rows (Student-t, 3 dof)", () => {
  checkAgainstGgml("student-t", randomRows(2, 32, (r) => r.studentT(3) * 0.05), 4096);
});

Deno.test("Q8_0 matches ggml on blocks at scales from 2^-140 to 2^120", () => {
  const r = new SeededRandom(3, "block scales");
  const src = new Float32Array(4096 * BLOCK);
  for (let b = 0; b < 4096; b++) {
    const scale = 2 ** (r.uniform() * 260 - 140);
    for (let j = 0; j < BLOCK; j++) src[b * BLOCK + j] = r.normal() * scale;
  }
  checkAgainstGgml("many scales", src);
});

Deno.test("Q8_0 matches ggml on bfloat16- and half-representable values", () => {
  const values = randomRows(4, 32, (r) => r.normal() * 0.03);
  checkAgainstGgml("bf16 values", bf16BitsToF32(f32ToBf16Bits(values)), 4096);
  checkAgainstGgml("f16 values", f16BitsToF32(f32ToF16Bits(values)), 4096);
});

Deno.test("Q8_0 matches ggml on zero, signed-zero, single-nonzero and extreme blocks", () => {
  const zero = new Array<number>(BLOCK).fill(0);
  const list: number[][] = [zero, zero.map(() => -0), zero.map((_, j) => (j % 2 ? -0 : 0))];
  const singles = [1, -1, FLT_MAX, -FLT_MAX, 65504, -65504, 1e-45, -1e-45, 1e-38, 6e-8, 3e-5];
  for (const v of singles) {
    for (const at of [0, 7, 31]) {
      const b = zero.slice();
      b[at] = v;
      list.push(b);
    }
  }
  const r = new SeededRandom(5, "extremes");
  for (const top of [FLT_MAX, -FLT_MAX, 65504, -65504, 65504 * 127, 65520 * 127, 65536 * 127]) {
    list.push(zero.map((_, j) => (j === 13 ? top : top * (r.uniform() * 2 - 1))));
    list.push(zero.map(() => top));
  }
  checkAgainstGgml("special blocks", blocks(list));
});

Deno.test("Q8_0 matches ggml on float32-subnormal and tiny-amax blocks", () => {
  const r = new SeededRandom(6, "tiny");
  const list: number[][] = [];
  // Random subnormal bit patterns, then amax swept from 2^-149 through the region where the
  // float32 1/d overflows to inf (amax < 127·2^-128) and past it.
  for (let b = 0; b < 64; b++) {
    list.push(Array.from({ length: BLOCK }, () => {
      const bits = (r.uint32() & 0x7fffff) | (r.uniform() < 0.5 ? 0x80000000 : 0);
      return fromBits(bits >>> 0);
    }));
  }
  const boundary = bitsOf(127 * 2 ** -128);
  const tops: number[] = [];
  for (let e = -149; e <= -90; e++) tops.push(2 ** e, 1.5 * 2 ** e);
  for (let k = -3; k <= 3; k++) tops.push(fromBits(boundary + k));
  for (const top of tops) {
    list.push(Array.from({ length: BLOCK }, (_, j) => {
      if (j === 5) return -top;
      return Math.fround(top * (r.uniform() * 2 - 1));
    }));
  }
  checkAgainstGgml("tiny", blocks(list));
});

Deno.test("Q8_0 matches ggml where d is an f16 subnormal or an f16 rounding tie", () => {
  const r = new SeededRandom(7, "d");
  const list: number[][] = [];
  // d = amax/127 from 2^-26 (below the smallest half) to 2^-13 (normal halves again).
  for (let b = 0; b < 256; b++) {
    const top = 127 * 2 ** (-26 + r.uniform() * 13);
    list.push(Array.from({ length: BLOCK }, (_, j) => (j === 0 ? top : top * r.normal() / 3)));
  }
  // d values whose 13 dropped bits are exactly 0x1000: ties between two halves, even and odd.
  let ties = 0;
  while (ties < 128) {
    const exp = 103 + Math.floor(r.uniform() * 40); // float32 exponents around the half range
    const d = fromBits(((exp << 23) | (r.uint32() & 0x7fe000) | 0x1000) >>> 0);
    const top = Math.fround(d * 127);
    if (Math.fround(top / 127) !== d) continue;
    ties++;
    list.push(
      Array.from({ length: BLOCK }, (_, j) => (j === 9 ? -top : top * (r.uniform() - 0.5))),
    );
  }
  checkAgainstGgml("d edge", blocks(list));
});

Deno.test("Q8_0 rounds exact x·id = k + 0.5 ties away from zero, as ggml", () => {
  const r = new SeededRandom(8, "ties");
  const list: number[][] = [];
  for (let b = 0; b < 512; b++) {
    const unit = 2 ** Math.floor(r.uniform() * 60 - 30); // d = unit exactly, id = 1/unit exactly
    list.push(Array.from({ length: BLOCK }, (_, j) => {
      if (j === 0) return 127 * unit;
      const k = Math.floor(r.uniform() * 127);
      return (r.uniform() < 0.5 ? -1 : 1) * (k + 0.5) * unit;
    }));
  }
  const src = blocks(list);
  const ours = new Uint8Array(q8_0Bytes(src.length));
  encodeQ8_0(src, ours);
  // Spot-check the rule itself, not just agreement: 2.5 → 3 and -2.5 → -3 when d = 1.
  const own = blocks([[127, 2.5, -2.5, 0.5, -0.5, 126.5, ...new Array<number>(26).fill(0)]]);
  const coded = new Uint8Array(BLOCK_BYTES);
  encodeQ8_0(own, coded);
  assertEquals(Array.from(new Int8Array(coded.buffer, 2, 6)), [127, 3, -3, 1, -1, 127]);
  checkAgainstGgml("ties", src);
});

Deno.test("Q8_0 rounds the float32 product, not the exact one, before roundf", () => {
  // x = fround((k + 0.5)/id) ± a few ulps lands x·id within float32 rounding of k + 0.5. Where the
  // exact product is below k + 0.5 but rounds to it in float32, ggml rounds up.
  const r = new SeededRandom(9, "near ties");
  const list: number[][] = [];
  let sensitive = 0;
  while (list.length < 2048) {
    const top = Math.fround(2 ** (r.uniform() * 40 - 20) * (1 + r.uniform()));
    const d = Math.fround(top / 127);
    const id = Math.fround(1 / d);
    const block = [top];
    while (block.length < BLOCK) {
      const k = Math.floor(r.uniform() * 120);
      const base = bitsOf(Math.fround((k + 0.5) / id));
      const x = fromBits(base + Math.floor(r.uniform() * 5) - 2);
      const exact = x * id;
      if (Math.floor(exact + 0.5) !== Math.floor(Math.fround(exact) + 0.5)) sensitive++;
      block.push(r.uniform() < 0.5 ? -x : x);
    }
    list.push(block);
  }
  assert(
    sensitive > 20,
    `the fixture must hold products that float32 rounding moves: ${sensitive}`,
  );
  checkAgainstGgml("near ties", blocks(list));
});

Deno.test("Q8_0 returns the index of the first NaN or infinity", () => {
  const src = randomRows(10, 2, (r) => r.normal());
  const out = new Uint8Array(q8_0Bytes(src.length));
  assertEquals(encodeQ8_0(src, out), -1);
  src[5000] = Infinity;
  src[7000] = NaN;
  assertEquals(encodeQ8_0(src, out), 5000);
  src[5000] = 1;
  assertEquals(encodeQ8_0(src, out), 7000);
  src[7000] = 1;
  src[31] = -Infinity; // last element of the first block
  assertEquals(encodeQ8_0(src, out), 31);
});

Deno.test("Q8_0 from BF16, F16 and F32 bytes at any alignment matches ggml", () => {
  const n = 4096 * 3 + BLOCK * 5; // not a whole number of internal pieces
  const values = randomRows(12, 4, (r) => r.normal() * 0.02).subarray(0, n);
  const cases = [
    { dtype: "BF16", bits: f32ToBf16Bits(values), wide: bf16BitsToF32 },
    { dtype: "F16", bits: f32ToF16Bits(values), wide: f16BitsToF32 },
  ] as const;
  for (const { dtype, bits, wide } of cases) {
    const reference = ggmlQuantize("q8_0", wide(bits), BLOCK);
    for (const offset of [0, 1, 2]) {
      const bytes = new Uint8Array(bits.byteLength + offset).subarray(offset);
      bytes.set(new Uint8Array(bits.buffer));
      const ours = new Uint8Array(reference.length);
      assertEquals(encodeQ8_0FromBytes(dtype, bytes, ours), -1);
      assertBlocksEqual(ours, reference, BLOCK_BYTES, `${dtype} bytes at offset ${offset}`);
    }
  }
  const f32 = new Uint8Array(values.byteLength + 3).subarray(3);
  f32.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
  const ours = new Uint8Array(q8_0Bytes(n));
  encodeQ8_0FromBytes("F32", f32, ours);
  assertBlocksEqual(ours, ggmlQuantize("q8_0", values, BLOCK), BLOCK_BYTES, "F32 bytes");
  // A NaN in the second internal piece is reported by its element index.
  const bf = f32ToBf16Bits(values);
  bf[4096 + 77] = 0x7fc0;
  assertEquals(encodeQ8_0FromBytes("BF16", new Uint8Array(bf.buffer), ours), 4096 + 77);
});

Deno.test("Q8_0 refuses partial blocks and short targets", () => {
  assertThrows(() => encodeQ8_0(new Float32Array(33), new Uint8Array(100)), RangeError, /32/);
  assertThrows(
    () => encodeQ8_0(new Float32Array(64), new Uint8Array(67)),
    RangeError,
    /Cannot encode 64 elements to Q8_0 as the target holds 67 bytes: 68 needed/,
  );
  assertThrows(
    () => encodeQ8_0FromBytes("BF16", new Uint8Array(63), new Uint8Array(68)),
    RangeError,
  );
  assertEquals(q8_0Bytes(4096), 4352);
});

Deno.test("the block diff reports a single flipped byte", () => {
  const src = randomRows(13, 1, (r) => r.normal());
  const reference = ggmlQuantize("q8_0", src, 4096);
  const broken = reference.slice();
  broken[BLOCK_BYTES * 3 + 5]! ^= 1;
  assertEquals(compareBlocks(broken, reference, BLOCK_BYTES), {
    blocks: 128,
    badBlocks: 1,
    firstBad: 3,
  });
  let message = "";
  try {
    assertBlocksEqual(broken, reference, BLOCK_BYTES, "flip");
  } catch (e) {
    message = (e as Error).message;
  }
  assert(message.includes("1 of 128 blocks differ; first bad block 3"), message);
  assert(message.includes(hex(reference.subarray(BLOCK_BYTES * 3, BLOCK_BYTES * 4))), message);
});
