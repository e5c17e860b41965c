import { assertEquals, assertRejects } from "./_assert.ts";
import {
  type SafetensorsEntry,
  writeSafetensors,
  writeSafetensorsModel,
} from "../testing/safetensors_writer.ts";
import { readModelWeights, readSafetensors } from "../testing/safetensors_reader.ts";
import { f32ToBf16Bits, f32ToF16Bits } from "../testing/half_floats.ts";
import { SeededRandom } from "../testing/seeded_random.ts";

function randomValues(seed: number, n: number): Float32Array {
  const r = new SeededRandom(seed);
  return Float32Array.from({ length: n }, () => r.normal() * 3);
}

Deno.test("f32ToBf16Bits() rounds to nearest even at ties and keeps specials", () => {
  const cases: [number, number][] = [
    [0x3f808000, 0x3f80], // tie, even below
    [0x3f818000, 0x3f82], // tie, odd below: rounds up
    [0x3f808001, 0x3f81], // just above the tie
    [0x3f807fff, 0x3f80], // just below the tie
    [0x7f7fffff, 0x7f80], // largest float32 overflows to +inf
    [0xff800000, 0xff80], // -inf
    [0x80000000, 0x8000], // -0
    [0x00000001, 0x0000], // smallest subnormal rounds to zero
    [0x7fc00000, 0x7fc0], // quiet NaN
    [0x7f800001, 0x7fc0], // signalling NaN becomes quiet, not infinity
  ];
  const input = new Float32Array(new Uint32Array(cases.map(([u]) => u)).buffer);
  assertEquals(Array.from(f32ToBf16Bits(input)), cases.map(([, b]) => b));
});

Deno.test("f32ToF16Bits() rounds to nearest even, to subnormals and to infinity", () => {
  const input = new Float32Array([
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    65520,
    65519,
    2 ** -25,
    2 ** -24,
  ]);
  // 1+2^-11 ties to 1 (0x3c00); 1+3·2^-11 ties up to 1+2^-9 (0x3c02); 65520 ties to inf.
  assertEquals(Array.from(f32ToF16Bits(input)), [0x3c00, 0x3c02, 0x7c00, 0x7bff, 0x0000, 0x0001]);
});

Deno.test("writeSafetensors() writes a header readers accept, with data in declared order", async () => {
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  const a = randomValues(1, 6);
  const b = randomValues(2, 5);
  const size = await writeSafetensors(path, [
    { name: "a", dtype: "F32", shape: [2, 3], data: a },
    { name: "b", dtype: "BF16", shape: [5], data: b },
  ], { metadata: { format: "pt", note: "x" } });
  const bytes = await Deno.readFile(path);
  assertEquals(bytes.length, size);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals(n % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  assertEquals(header, {
    __metadata__: { format: "pt", note: "x" },
    a: { dtype: "F32", shape: [2, 3], data_offsets: [0, 24] },
    b: { dtype: "BF16", shape: [5], data_offsets: [24, 34] },
  });
  assertEquals(size, 8 + n + 34);
  const read = await readSafetensors(path);
  assertEquals(read.get("a")?.data, a);
  const expected = new Uint16Array(bytes.slice(8 + n + 24).buffer);
  assertEquals(new Uint16Array(f32ToBf16Bits(b)), expected);
  await Deno.remove(path);
});

Deno.test("writeSafetensors() takes data in pieces and matches the whole-array file", async () => {
  const values = randomValues(3, 1000);
  const whole = await Deno.makeTempFile();
  const pieces = await Deno.makeTempFile();
  await writeSafetensors(whole, [{ name: "w", dtype: "F16", shape: [10, 100], data: values }]);
  await writeSafetensors(pieces, [{
    name: "w",
    dtype: "F16",
    shape: [10, 100],
    data: function* () {
      for (const [start, end] of [[0, 1], [1, 333], [333, 334], [334, 1000]]) {
        yield values.slice(start, end);
      }
    },
  }]);
  assertEquals(await Deno.readFile(pieces), await Deno.readFile(whole));
  const read = await readSafetensors(whole);
  assertEquals(read.get("w")?.data, Float32Array.from(values, Math.f16round));
  await Deno.remove(whole);
  await Deno.remove(pieces);
});

Deno.test("writeSafetensors() rejects data that does not fill the declared shape", async () => {
  const path = await Deno.makeTempFile();
  await assertRejects(
    () =>
      writeSafetensors(path, [{
        name: "w",
        dtype: "F32",
        shape: [2, 3],
        data: new Float32Array(5),
      }]),
    RangeError,
    /^Cannot write tensor w as its data holds 5 values but shape \[2,3\] declares 6$/,
  );
  await assertRejects(
    () =>
      writeSafetensors(path, [{ name: "w", dtype: "F32", shape: [2], data: new Float32Array(3) }]),
    RangeError,
    /^Cannot write tensor w as its data holds 3 or more values but shape \[2\] declares 2$/,
  );
  await assertRejects(
    () =>
      writeSafetensors(path, [
        { name: "w", dtype: "F32", shape: [1], data: new Float32Array(1) },
        { name: "w", dtype: "F32", shape: [1], data: new Float32Array(1) },
      ]),
    TypeError,
    /^Cannot write tensor w as the name is taken$/,
  );
  await Deno.remove(path);
});

Deno.test("writeSafetensorsModel() shards greedily and indexes every tensor", async () => {
  const entries: SafetensorsEntry[] = [
    { name: "t0", dtype: "F32", shape: [10], data: randomValues(10, 10) }, // 40 B
    { name: "t1", dtype: "F32", shape: [10], data: randomValues(11, 10) }, // 40 B
    { name: "big", dtype: "F32", shape: [50], data: randomValues(12, 50) }, // 200 B, own shard
    { name: "t3", dtype: "BF16", shape: [4], data: randomValues(13, 4) }, // 8 B
  ];
  const sharded = await Deno.makeTempDir();
  const files = await writeSafetensorsModel(sharded, entries, { maxShardBytes: 100 });
  assertEquals(files, [
    "model-00001-of-00003.safetensors",
    "model-00002-of-00003.safetensors",
    "model-00003-of-00003.safetensors",
    "model.safetensors.index.json",
  ]);
  const index = JSON.parse(await Deno.readTextFile(`${sharded}/model.safetensors.index.json`));
  assertEquals(index, {
    metadata: { total_size: 288 },
    weight_map: {
      t0: "model-00001-of-00003.safetensors",
      t1: "model-00001-of-00003.safetensors",
      big: "model-00002-of-00003.safetensors",
      t3: "model-00003-of-00003.safetensors",
    },
  });
  const single = await Deno.makeTempDir();
  assertEquals(await writeSafetensorsModel(single, entries), ["model.safetensors"]);
  assertEquals(await readModelWeights(sharded), await readModelWeights(single));
  await Deno.remove(sharded, { recursive: true });
  await Deno.remove(single, { recursive: true });
});
