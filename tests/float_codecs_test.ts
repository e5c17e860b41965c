import { assertEquals, assertThrows } from "./_assert.ts";
import {
  decodeBf16,
  decodeF16,
  decodeFloats,
  encodeBf16,
  encodeF16,
  f16BitsToF32Bits,
  f32BitsToBf16Bits,
  f32BitsToF16Bits,
  floatDtypeBytes,
} from "../stages/encode/float_codecs.ts";
import { findNonFinite, findNonFiniteHalf } from "../stages/encode/finite.ts";
import {
  ggmlBf16ToFp32Row,
  ggmlFp16ToFp32Row,
  ggmlFp32ToBf16Row,
  ggmlFp32ToFp16Row,
} from "../testing/ggml.ts";
import { SeededRandom } from "../testing/seeded_random.ts";

const hex = (v: number, digits: number) => v.toString(16).padStart(digits, "0");

/** Requires equal 16- or 32-bit words; reports the count, the first bad index, its input and both. */
function assertWords(
  label: string,
  ours: Uint16Array | Uint32Array,
  reference: Uint16Array | Uint32Array,
  input: (i: number) => string,
): void {
  assertEquals(ours.length, reference.length, `${label}: lengths differ`);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < ours.length; i++) {
    if (ours[i] !== reference[i]) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (bad === 0) return;
  const digits = ours.BYTES_PER_ELEMENT * 2;
  throw new Error(
    `${label}: ${bad} of ${ours.length} elements differ; first at ${first} (input ${
      input(first)
    }): ours ${hex(ours[first]!, digits)}, ggml ${hex(reference[first]!, digits)}`,
  );
}

/** A copy of `bytes` starting `offset` bytes into a fresh buffer (to exercise misalignment). */
function at(bytes: Uint8Array, offset: number): Uint8Array {
  const out = new Uint8Array(bytes.length + offset).subarray(offset);
  out.set(bytes);
  return out;
}

function allHalves(): Uint16Array {
  return Uint16Array.from({ length: 65536 }, (_, i) => i);
}

/**
 * float32 bit patterns built from every upper half with lower halves that straddle each rounding
 * position (2^k - 1, 2^k, 2^k + 1) plus random ones: every f16/bf16 tie, near-tie and carry.
 */
function probeBits(): Uint32Array {
  const lows = new Set<number>([0, 0xffff]);
  for (let k = 0; k <= 16; k++) for (const d of [-1, 0, 1]) lows.add(((1 << k) + d) & 0xffff);
  const r = new SeededRandom(21, "lows");
  for (let i = 0; i < 8; i++) lows.add(r.uint32() & 0xffff);
  const out = new Uint32Array(65536 * lows.size);
  let i = 0;
  for (let hi = 0; hi < 65536; hi++) for (const lo of lows) out[i++] = ((hi << 16) | lo) >>> 0;
  return out;
}

Deno.test("F16 decode matches ggml for all 65536 bit patterns, at any alignment", () => {
  const halves = allHalves();
  const reference = new Uint32Array(ggmlFp16ToFp32Row(halves).buffer);
  for (const offset of [0, 1]) {
    const out = new Float32Array(65536);
    decodeF16(at(new Uint8Array(halves.buffer), offset), out);
    assertWords(
      `f16 decode, offset ${offset}`,
      new Uint32Array(out.buffer),
      reference,
      (i) => hex(i, 4),
    );
  }
  assertWords(
    "f16BitsToF32Bits",
    Uint32Array.from(halves, f16BitsToF32Bits),
    reference,
    (i) => hex(i, 4),
  );
});

Deno.test("BF16 decode matches ggml for all 65536 bit patterns, at any alignment", () => {
  // In order, and shuffled so that neighbours in a 32-bit load are unrelated.
  const r = new SeededRandom(20, "shuffle");
  const shuffled = allHalves();
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = r.uint32() % (i + 1);
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  for (const halves of [allHalves(), shuffled]) {
    const reference = new Uint32Array(ggmlBf16ToFp32Row(halves).buffer);
    // Offsets 0, 2 and 1 take the 32-bit, 16-bit and byte paths; an odd count leaves a tail.
    for (const offset of [0, 1, 2]) {
      for (const count of [65536, 65535]) {
        const out = new Float32Array(count);
        decodeBf16(at(new Uint8Array(halves.buffer), offset), out);
        assertWords(
          `bf16 decode, offset ${offset}, ${count} elements`,
          new Uint32Array(out.buffer),
          reference.subarray(0, count),
          (i) => hex(halves[i]!, 4),
        );
      }
    }
  }
});

Deno.test("F16 encode matches ggml on every half value and around every rounding point", () => {
  const decoded = ggmlFp16ToFp32Row(allHalves());
  const probes = new Float32Array(probeBits().buffer);
  const r = new SeededRandom(22, "f16 random");
  const random = new Float32Array(Uint32Array.from({ length: 1 << 20 }, () => r.uint32()).buffer);
  for (
    const [label, src] of [["all halves", decoded], ["probes", probes], ["random", random]] as const
  ) {
    const reference = ggmlFp32ToFp16Row(src);
    const input = (i: number) => hex(new Uint32Array(src.buffer)[i]!, 8);
    for (const offset of [0, 1]) {
      const bytes = at(new Uint8Array(src.length * 2), offset);
      encodeF16(src, bytes);
      const ours = new Uint16Array(bytes.slice().buffer);
      assertWords(`f16 encode ${label}, offset ${offset}`, ours, reference, input);
    }
    const scalar = Uint16Array.from(new Uint32Array(src.buffer), f32BitsToF16Bits);
    assertWords(`f32BitsToF16Bits ${label}`, scalar, reference, input);
  }
});

Deno.test("F16 round trip is the identity on every non-NaN half", () => {
  const halves = allHalves();
  const wide = new Float32Array(65536);
  decodeF16(new Uint8Array(halves.buffer), wide);
  const back = new Uint8Array(65536 * 2);
  encodeF16(wide, back);
  const ours = new Uint16Array(back.buffer);
  for (let h = 0; h < 65536; h++) {
    const nan = (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
    const want = nan ? (h & 0x8000) | 0x7e00 : h;
    if (ours[h] !== want) {
      throw new Error(`f16 round trip of ${hex(h, 4)} gave ${hex(ours[h]!, 4)}`);
    }
  }
});

Deno.test("BF16 encode matches ggml on every bfloat16 value and around every rounding point", () => {
  const decoded = ggmlBf16ToFp32Row(allHalves());
  const probes = new Float32Array(probeBits().buffer);
  const r = new SeededRandom(23, "bf16 random");
  const random = new Float32Array(Uint32Array.from({ length: 1 << 20 }, () => r.uint32()).buffer);
  for (
    const [label, src] of [["all bf16", decoded], ["probes", probes], ["random", random]] as const
  ) {
    const reference = ggmlFp32ToBf16Row(src);
    const input = (i: number) => hex(new Uint32Array(src.buffer)[i]!, 8);
    for (const offset of [0, 1]) {
      const bytes = at(new Uint8Array(src.length * 2), offset);
      encodeBf16(src, bytes);
      const ours = new Uint16Array(bytes.slice().buffer);
      assertWords(`bf16 encode ${label}, offset ${offset}`, ours, reference, input);
    }
    const scalar = Uint16Array.from(new Uint32Array(src.buffer), f32BitsToBf16Bits);
    assertWords(`f32BitsToBf16Bits ${label}`, scalar, reference, input);
  }
  // Every bfloat16 survives a round trip bit for bit, except that a signaling NaN turns quiet.
  const back = new Uint8Array(65536 * 2);
  encodeBf16(decoded, back);
  const ours = new Uint16Array(back.buffer);
  for (let h = 0; h < 65536; h++) {
    const nan = (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;
    if (ours[h] !== (nan ? h | 0x40 : h)) {
      throw new Error(`bf16 round trip of ${hex(h, 4)} gave ${hex(ours[h]!, 4)}`);
    }
  }
});

Deno.test("F16 and BF16 encoders report the first element that is not finite once encoded", () => {
  const out = new Uint8Array(16);
  const f16 = (values: number[]) => encodeF16(new Float32Array(values), out);
  const bf16 = (values: number[]) => encodeBf16(new Float32Array(values), out);
  assertEquals(f16([1, 65504, 65519.99, -65519.99, 1e-9]), -1);
  assertEquals(f16([1, 2, 65520]), 2);
  assertEquals(f16([-65520, NaN]), 0);
  assertEquals(f16([0, NaN, Infinity]), 1);
  assertEquals(bf16([1, 3.3e38, -3.3e38]), -1);
  assertEquals(bf16([1, 3.4028235e38]), 1); // rounds up past the largest bfloat16
  assertEquals(bf16([1, 2, -Infinity, NaN]), 2);
  // Odd-aligned targets report the same.
  assertEquals(encodeF16(new Float32Array([0, 1e6]), at(new Uint8Array(4), 1)), 1);
  assertEquals(encodeBf16(new Float32Array([NaN, 0]), at(new Uint8Array(4), 1)), 0);
});

Deno.test("decodeFloats dispatches by dtype and copies F32 bytes exactly", () => {
  const r = new SeededRandom(24, "f32");
  const bits = Uint32Array.from({ length: 1001 }, () => r.uint32());
  const out = new Float32Array(1001);
  decodeFloats("F32", at(new Uint8Array(bits.buffer), 3), out);
  assertWords("f32 copy", new Uint32Array(out.buffer), bits, (i) => hex(bits[i]!, 8));
  const halves = Uint16Array.from({ length: 1001 }, () => r.uint32() & 0xffff);
  for (const dtype of ["F16", "BF16"] as const) {
    const direct = new Float32Array(1001);
    if (dtype === "F16") decodeF16(new Uint8Array(halves.buffer), direct);
    else decodeBf16(new Uint8Array(halves.buffer), direct);
    decodeFloats(dtype, new Uint8Array(halves.buffer), out);
    assertEquals(new Uint32Array(out.buffer), new Uint32Array(direct.buffer));
  }
  assertEquals([floatDtypeBytes("F32"), floatDtypeBytes("F16"), floatDtypeBytes("BF16")], [
    4,
    2,
    2,
  ]);
});

Deno.test("codecs refuse sources and targets that are too short", () => {
  assertThrows(
    () => decodeBf16(new Uint8Array(7), new Float32Array(4)),
    RangeError,
    /Cannot decode 4 elements as the source holds 7 bytes: 8 needed/,
  );
  assertThrows(() => decodeFloats("F32", new Uint8Array(12), new Float32Array(4)), RangeError);
  assertThrows(() => encodeF16(new Float32Array(4), new Uint8Array(7)), RangeError, /8 needed/);
  assertThrows(() => encodeBf16(new Float32Array(4), new Uint8Array(6)), RangeError, /8 needed/);
});

Deno.test("non-finite scans find the first NaN or infinity in each layout", () => {
  const r = new SeededRandom(25, "finite");
  const values = Float32Array.from({ length: 4096 }, () => r.normal() * 1e30);
  assertEquals(findNonFinite(values), -1);
  values[4000] = -Infinity;
  values[4001] = NaN;
  assertEquals(findNonFinite(values), 4000);
  assertEquals(findNonFinite(values.subarray(4001)), 0);
  // Largest finite values are not flagged; every NaN/inf pattern of each half type is.
  assertEquals(findNonFinite(new Float32Array([3.4028235e38, -3.4028235e38, 1e-45])), -1);
  const halves = allHalves();
  for (const [dtype, mask] of [["F16", 0x7c00], ["BF16", 0x7f80]] as const) {
    const firstBad = halves.findIndex((h) => (h & mask) === mask);
    for (const offset of [0, 1]) {
      const bytes = at(new Uint8Array(halves.buffer), offset);
      assertEquals(findNonFiniteHalf(bytes, dtype), firstBad, `${dtype} offset ${offset}`);
      const finite = halves.filter((h) => (h & mask) !== mask);
      assertEquals(findNonFiniteHalf(at(new Uint8Array(finite.buffer), offset), dtype), -1);
    }
  }
});
