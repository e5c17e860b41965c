import { assertEquals } from "./_assert.ts";
import { below, bitsOf, fromBits } from "./_fp4_data.ts";
import { FP4_FORMATS } from "../gpu/fp4/formats.ts";
import { ggmlE8m0Code, ggmlFp32ToUe4m3, rtnScaleCode } from "../gpu/fp4/rtn_rules.ts";
import { scaleValue } from "../gpu/fp4/scale_grid.ts";
import { fp4Tables, lookupThreshold } from "../gpu/fp4/tables.ts";
import { SeededRandom } from "../testing/seeded_random.ts";

Deno.test("ggmlFp32ToUe4m3() keeps ggml's rounding and saturation quirks", () => {
  // Facts checked through FFI in gguf-and-ggml.md §3.3.
  assertEquals(ggmlFp32ToUe4m3(0.015), 0x07);
  for (const x of [255, 256, 300, 447, 1000, 448, 248]) {
    assertEquals(ggmlFp32ToUe4m3(x), 0x7e, `${x}`);
  }
  assertEquals(ggmlFp32ToUe4m3(Math.fround(247.9)), 0x77);
  assertEquals(ggmlFp32ToUe4m3(2 ** -6), 0x08);
  assertEquals(ggmlFp32ToUe4m3(1), 0x38);
  assertEquals(ggmlFp32ToUe4m3(Math.fround(1.0625)), 0x39); // half up from the first dropped bit
  for (const x of [0, -1, NaN, 2 ** -11]) assertEquals(ggmlFp32ToUe4m3(x), 0, `${x}`);
});

Deno.test("ggmlE8m0Code() rounds log2f up just below a power of two", () => {
  assertEquals(ggmlE8m0Code(Math.fround(7.9999995)), 128);
  assertEquals(ggmlE8m0Code(below(Math.fround(7.9999995))), 127);
  assertEquals(ggmlE8m0Code(8), 128);
  assertEquals(ggmlE8m0Code(1), 125);
  assertEquals(ggmlE8m0Code(0), 0);
  assertEquals(ggmlE8m0Code(2 ** -126), 0); // ggml's cast is undefined there
});

Deno.test("scaleValue() decodes the three scale grids", () => {
  assertEquals(scaleValue("ue4m3", 0x7e), 448);
  assertEquals(scaleValue("ue4m3", 0x01), 2 ** -9);
  assertEquals(scaleValue("ue4m3", 0x38), 1);
  assertEquals(scaleValue("ue4m3", 0x7f), 0);
  assertEquals(scaleValue("ue4m3", 0xb8), 1); // bit 7 ignored, as in ggml
  assertEquals(scaleValue("ue5m3", 0xfe), 114688);
  assertEquals(scaleValue("ue5m3", 0x01), 2 ** -17);
  assertEquals(scaleValue("e8m0", 127), 1);
  assertEquals(scaleValue("e8m0", 0), 2 ** -127);
});

Deno.test("rtnScaleCode() nearest rules break ties down (ROCmFP4) or to even (AMD-FP4)", () => {
  const rocm = FP4_FORMATS.q4_0_rocmfp4;
  const amd = FP4_FORMATS.amdfp4;
  // 1.0625 lies halfway between codes 0x38 (1.0) and 0x39 (1.125).
  assertEquals(rtnScaleCode(rocm, 1.0625 * 5, "top"), 0x38);
  assertEquals(rtnScaleCode(rocm, 1.0626 * 5, "top"), 0x39);
  // UE5M3: 1.0 is 0x78 and 1.125 is 0x79; 1.1875 lies between 0x79 and 0x7A: even is 0x7A.
  assertEquals(rtnScaleCode(amd, 1.0625 * 6, "top"), 0x78);
  assertEquals(rtnScaleCode(amd, 1.1875 * 6, "top"), 0x7a);
  assertEquals(rtnScaleCode(amd, 1e-30, "top"), 1);
  assertEquals(rtnScaleCode(rocm, 1e9, "top"), 0x7e);
});

Deno.test("fp4Tables() thresholds give every format's rtn code by comparing bits", () => {
  const r = new SeededRandom(51, "thresholds");
  for (const format of Object.values(FP4_FORMATS)) {
    const t = fp4Tables(format);
    const amaxes: number[] = [];
    for (let i = 0; i < 400; i++) amaxes.push(Math.fround(2 ** (r.uniform() * 254 - 126)));
    for (const table of [t.thresholdsTop, t.thresholdsFour]) {
      for (let c = 1; c < 256; c++) {
        if (table[c]! === 0 || table[c]! === 0xffffffff) continue;
        amaxes.push(fromBits(table[c]!), below(fromBits(table[c]!)));
      }
    }
    for (const amax of amaxes) {
      if (amax < 2 ** -126) continue;
      for (
        const [target, table] of [["top", t.thresholdsTop], ["four", t.thresholdsFour]] as const
      ) {
        assertEquals(
          lookupThreshold(table, bitsOf(amax)),
          rtnScaleCode(format, amax, target),
          `${format.label} ${target} amax ${amax}`,
        );
      }
    }
  }
});

Deno.test("fp4Tables() drops E8M0 levels whose value overflows float32", () => {
  const t = fp4Tables(FP4_FORMATS.mxfp4);
  assertEquals([t.topLevel[252], t.topLevel[253], t.topLevel[254]], [7, 5, 3]);
  assertEquals(fp4Tables(FP4_FORMATS.nvfp4).topLevel[0x7e], 7);
});
