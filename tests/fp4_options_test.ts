import { assertEquals, assertRejects, assertThrows } from "./_assert.ts";
import { acquireGpu } from "../gpu/device.ts";
import { createFp4Encoder, encodeFp4Rows } from "../gpu/fp4/encode.ts";
import { encodeFp4RowsCpu } from "../gpu/fp4/encode_cpu.ts";
import { FP4_FORMATS, fp4Bytes, fp4Format } from "../gpu/fp4/formats.ts";
import { Fp4InputError } from "../gpu/fp4/input_error.ts";
import { fp4OuterScale } from "../gpu/fp4/outer_scale.ts";
import { resolveFp4Search } from "../gpu/fp4/search_options.ts";

const NVFP4 = FP4_FORMATS.nvfp4;

Deno.test("resolveFp4Search() refuses bad options before any work, naming the value", () => {
  const cases: [() => unknown, RegExp][] = [
    [
      () => resolveFp4Search(NVFP4, 96),
      /^Cannot encode NVFP4 rows as their length 96 is not a positive multiple of 64$/,
    ],
    [
      // @ts-expect-error: an unknown mode from untyped input
      () => resolveFp4Search(NVFP4, 64, { mode: "best" }),
      /^Cannot search NVFP4 scales as the mode is not rtn, window or full: best$/,
    ],
    [
      () => resolveFp4Search(NVFP4, 64, { mode: "window", window: 256 }),
      /^Cannot search NVFP4 scales as the window is not an integer from 0 to 255: 256$/,
    ],
    [
      () => resolveFp4Search(NVFP4, 64, { outerScale: 0 }),
      /^Cannot use the outer scale as it is not from 2\^-100 to 2\^100: 0$/,
    ],
    [
      () => resolveFp4Search(FP4_FORMATS.mxfp4, 64, { outerScale: 2 }),
      /^Cannot use an outer scale as MXFP4 has none: 2$/,
    ],
    [
      () => resolveFp4Search(NVFP4, 64, { imatrix: new Float32Array(32) }),
      /^Cannot use the imatrix as it has 32 entries for rows of 64$/,
    ],
    [
      () => resolveFp4Search(NVFP4, 64, { imatrix: new Float32Array(64).fill(-1) }),
      /^Cannot use the imatrix as entry 0 is not finite and ≥ 0: -1$/,
    ],
  ];
  for (const [fn, message] of cases) assertThrows(fn, RangeError, message);
});

Deno.test("encodeFp4RowsCpu() refuses rows that are not whole and names bad elements", () => {
  assertThrows(
    () => encodeFp4RowsCpu(NVFP4, new Float32Array(96), 64),
    RangeError,
    /^Cannot size NVFP4 data as 96 elements are not whole blocks of 64$/,
  );
  const x = new Float32Array(128);
  x[70] = -Infinity;
  let caught: unknown = null;
  try {
    encodeFp4RowsCpu(NVFP4, x, 64);
  } catch (e: unknown) {
    caught = e;
  }
  if (!(caught instanceof Fp4InputError)) throw new Error(`expected Fp4InputError, got ${caught}`);
  assertEquals(caught.message, "Cannot encode NVFP4 as element 70 (row 1, column 6) is infinite");
  assertEquals([caught.index, caught.row, caught.column], [70, 1, 6]);
});

Deno.test("acquireGpu() honours the device choice", async () => {
  assertEquals(await acquireGpu("cpu"), null);
  await assertRejects(
    // @ts-expect-error: an unknown choice from untyped input
    () => acquireGpu("tpu"),
    RangeError,
    /^Cannot choose a device as it is not auto, gpu or cpu: tpu$/,
  );
  const encoder = await createFp4Encoder("mxfp4", 32, { device: "cpu" });
  assertEquals(encoder.device, "cpu");
  const x = new Float32Array(32);
  x[0] = 6;
  x[16] = -0.5;
  assertEquals(Array.from((await encoder.encode(x)).subarray(0, 2)), [0x7f, 0x97]);
  await assertRejects(
    () => encodeFp4Rows("mxfp4", new Float32Array(32).fill(NaN), 32, { device: "cpu" }),
    Fp4InputError,
    /^Cannot encode MXFP4 as element 0 \(row 0, column 0\) is NaN$/,
  );
});

Deno.test("fp4OuterScale() maps the tensor maximum to the top rtn scale", () => {
  assertEquals(fp4OuterScale(NVFP4, 0.3), Math.fround(0.3 / (6 * 240)));
  assertEquals(fp4OuterScale(NVFP4, 0.3, { fourOverSix: true }), Math.fround(0.3 / (4 * 240)));
  assertEquals(fp4OuterScale(FP4_FORMATS.amdfp4, 6 * 114688), 1);
  assertEquals(fp4OuterScale(NVFP4, 0), 1);
  assertEquals(fp4OuterScale(FP4_FORMATS.q4_0_rocmfp4, 5), 1);
  assertThrows(
    () => fp4OuterScale(NVFP4, NaN),
    RangeError,
    /^Cannot choose an outer scale as the tensor amax is not finite and ≥ 0: NaN$/,
  );
  // The largest block of the tensor lands on 0x77 (240) under ggml's encoder.
  const x = new Float32Array(64).fill(0.01);
  x[5] = 0.3;
  const bytes = encodeFp4RowsCpu(NVFP4, x, 64, { outerScale: fp4OuterScale(NVFP4, 0.3) });
  assertEquals(bytes[0], 0x77);
});

Deno.test("fp4Format() and fp4Bytes() resolve names and sizes", () => {
  assertEquals(fp4Format("NVFP4"), NVFP4);
  assertThrows(
    () => fp4Format("q5"),
    RangeError,
    /^Cannot use FP4 format q5 as it is not one of: nvfp4, mxfp4, q4_0_rocmfp4, q4_0_rocmfp4_fast, amdfp4$/,
  );
  assertEquals(fp4Bytes(FP4_FORMATS.q4_0_rocmfp4, 4096), 128 * 18);
  assertEquals(fp4Bytes(FP4_FORMATS.amdfp4, 32), 18);
});
