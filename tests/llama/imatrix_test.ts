/**
 * imatrix files: both llama-imatrix formats read back as llama-quantize's per-column weights, the
 * errors for what llama-quantize rejects, the collector built on the reference forward pass, and
 * (when stories260K and the llama.cpp sources are present) a cross-check against the real
 * llama-imatrix.
 */
import { gguf, GGUFValueType } from "@huggingface/gguf";
import { TokenizerLoader } from "@lenml/tokenizers";
import { assert, assertEquals, assertThrows } from "../_assert.ts";
import { convert } from "../../mod.ts";
import { layoutGguf } from "../../pipeline/gguf_header.ts";
import { type GgufMetadata, gv } from "../../pipeline/gguf_metadata.ts";
import { GGML_TYPES } from "../../pipeline/ggml_types.ts";
import {
  type Imatrix,
  ImatrixError,
  imatrixMetadata,
  ImatrixSizeError,
  readImatrix,
} from "../../pipeline/imatrix.ts";
import { collectedGgufName, collectImatrix } from "../../testing/imatrix_collect.ts";
import {
  encodeImatrixDat,
  encodeImatrixGguf,
  type ImatrixData,
  type ImatrixStats,
} from "../../testing/imatrix_files.ts";
import { LlamaModel } from "../../testing/llama_cpp.ts";
import { buildLlamaImatrix, runLlamaImatrix } from "../../testing/llama_imatrix.ts";
import { referenceConfig } from "../../testing/reference_forward.ts";
import { readModelWeights } from "../../testing/safetensors_reader.ts";
import { SeededRandom } from "../../testing/seeded_random.ts";
import { generateModel } from "../../testing/synthetic_model.ts";

const STORIES = new URL("../../../shared/models/stories260K/", import.meta.url).pathname;
const storiesPresent = await Deno.stat(`${STORIES}model.safetensors`).then(() => true, () => false);
if (!storiesPresent) console.warn(`Skipping stories260K imatrix tests as ${STORIES} is absent`);

/** Dense entries, an MoE entry with an unused expert, and one whose experts were never used. */
function sampleData(): ImatrixData {
  const r = new SeededRandom(11, "imatrix");
  const stats = (name: string, cols: number, counts: number[]): ImatrixStats => ({
    name,
    sums: Float64Array.from(
      { length: cols * counts.length },
      (_, i) => counts[Math.floor(i / cols)]! * (0.01 + 3 * r.uniform()),
    ),
    counts,
  });
  return {
    entries: [
      stats("blk.1.ffn_down.weight", 96, [256]),
      stats("blk.0.attn_q.weight", 64, [256]),
      stats("blk.0.ffn_up_exps.weight", 32, [200, 0, 56]),
      stats("blk.0.ffn_gate_exps.weight", 32, [0, 0]),
    ],
    datasets: ["wiki.train.raw", "more.txt"],
    chunkCount: 2,
    chunkSize: 128,
  };
}

/** mean(x²) in float64, or 1 for a matrix that saw no tokens. */
function means(e: ImatrixStats): Float64Array {
  const cols = e.sums.length / e.counts.length;
  return Float64Array.from(e.sums, (s, i) => {
    const c = e.counts[Math.floor(i / cols)]!;
    return c > 0 ? s / c : 1;
  });
}

function maxRelError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  assertEquals(got.length, want.length);
  let max = 0;
  for (let i = 0; i < got.length; i++) {
    max = Math.max(max, Math.abs(got[i]! - want[i]!) / Math.abs(want[i]!));
  }
  return max;
}

/** A GGUF file with the given metadata and F32 tensors. */
function ggufFile(
  metadata: GgufMetadata,
  tensors: { name: string; ne: number[]; values: number[] }[],
): Uint8Array {
  const layout = layoutGguf(metadata, tensors.map((t) => ({ ...t, type: GGML_TYPES.f32 })));
  const out = new Uint8Array(layout.fileSize);
  out.set(layout.header);
  const view = new DataView(out.buffer);
  tensors.forEach((t, i) => {
    t.values.forEach((v, j) => view.setFloat32(layout.tensorOffsets[i]! + 4 * j, v, true));
  });
  return out;
}

const IMATRIX_KV: [string, ReturnType<typeof gv.str>][] = [
  ["general.type", gv.str("imatrix")],
  ["imatrix.datasets", gv.strings(["d.txt"])],
  ["imatrix.chunk_count", gv.u32(1)],
  ["imatrix.chunk_size", gv.u32(16)],
];

/** A legacy file from explicit fields; `trailer` null leaves the optional trailer out. */
function legacyFile(
  entries: { name: string; ncall: number; values: number[] }[],
  trailer: { chunks: number; dataset: string } | null,
): Uint8Array {
  const enc = new TextEncoder();
  const words: (number | Uint8Array)[] = [entries.length];
  for (const e of entries) {
    const name = enc.encode(e.name);
    words.push(name.length, name, e.ncall, e.values.length, new Uint8Array(e.values.length * 4));
    const last = words.at(-1) as Uint8Array;
    e.values.forEach((v, i) => new DataView(last.buffer).setFloat32(4 * i, v, true));
  }
  if (trailer !== null) {
    const ds = enc.encode(trailer.dataset);
    words.push(trailer.chunks, ds.length, ds);
  }
  const size = words.reduce<number>((n, w) => n + (typeof w === "number" ? 4 : w.length), 0);
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const w of words) {
    if (typeof w === "number") view.setInt32(at, w, true);
    else out.set(w, at);
    at += typeof w === "number" ? 4 : w.length;
  }
  return out;
}

Deno.test("readImatrix() turns a GGUF imatrix into in_sum2 / counts, 1.0 for unused experts", () => {
  const data = sampleData();
  const im = readImatrix(encodeImatrixGguf(data), "sample.gguf");
  assertEquals(im.format, "gguf");
  assertEquals(im.datasets, ["wiki.train.raw", "more.txt"]);
  assertEquals([im.chunkCount, im.chunkSize], [2, 128]);
  assertEquals([...im.entries.keys()], data.entries.map((e) => e.name).sort());
  for (const e of data.entries) {
    const got = im.entries.get(e.name)!;
    assertEquals(got.counts, e.counts);
    // llama-quantize's float32 arithmetic exactly, and mean(x²) within float32 rounding.
    const cols = e.sums.length / e.counts.length;
    const exact = Float32Array.from(e.sums, (s, i) => {
      const c = e.counts[Math.floor(i / cols)]!;
      return c > 0 ? Math.fround(s) / c : 1;
    });
    assertEquals(got.values, exact, e.name);
    assert(maxRelError(got.values, means(e)) < 2.5e-7, e.name);
  }
  const up = im.weightsFor("blk.0.ffn_up_exps.weight", 32, 3)!;
  assertEquals(Array.from(up.subarray(32, 64)), new Array(32).fill(1));
  assert(up.subarray(0, 32).every((v) => v !== 1));
  assertEquals(
    Array.from(im.weightsFor("blk.0.ffn_gate_exps.weight", 32, 2)!),
    new Array(64).fill(1),
  );
});

Deno.test("readImatrix() reads a legacy .dat as value / ncall, without unused entries", () => {
  const data = sampleData();
  const im = readImatrix(encodeImatrixDat(data), "sample.dat");
  assertEquals(im.format, "legacy");
  assertEquals(im.datasets, ["more.txt"]); // the trailer holds the last dataset only
  assertEquals([im.chunkCount, im.chunkSize], [2, 0]);
  // An entry whose experts all saw no tokens is not written in this format.
  assertEquals([...im.entries.keys()], [
    "blk.0.attn_q.weight",
    "blk.0.ffn_up_exps.weight",
    "blk.1.ffn_down.weight",
  ]);
  for (const e of data.entries.filter((e) => im.entries.has(e.name))) {
    const got = im.entries.get(e.name)!;
    assertEquals(got.counts, [2], e.name); // ncall = ⌈max count / chunk size⌉
    assert(maxRelError(got.values, means(e)) < 5e-7, e.name);
  }
  assertEquals(
    im.weightsFor("blk.0.ffn_up_exps.weight", 32, 3)!.subarray(32, 64).every((v) => v === 1),
    true,
  );
});

Deno.test("readImatrix() divides legacy values by ncall only when it is positive", () => {
  const file = legacyFile([
    { name: "blk.0.attn_k.weight", ncall: 4, values: [2, 6, 10] },
    { name: "blk.0.attn_q.weight", ncall: 0, values: [2, 6, 10] },
    { name: "blk.0.attn_v.weight", ncall: -3, values: [2, 6, 10] },
  ], null);
  const im = readImatrix(file, "calls.dat");
  assertEquals(Array.from(im.weightsFor("blk.0.attn_k.weight", 3)!), [0.5, 1.5, 2.5]);
  assertEquals(Array.from(im.weightsFor("blk.0.attn_q.weight", 3)!), [2, 6, 10]);
  assertEquals(Array.from(im.weightsFor("blk.0.attn_v.weight", 3)!), [2, 6, 10]);
  assertEquals([im.chunkCount, im.datasets], [0, []]); // no trailer
  const withTrailer = legacyFile([{ name: "a", ncall: 1, values: [1] }], {
    chunks: 7,
    dataset: "x",
  });
  const t = readImatrix(withTrailer, "trailer.dat");
  assertEquals([t.chunkCount, t.datasets], [7, ["x"]]);
});

Deno.test("Imatrix.weightsFor() checks the size as llama-quantize does", () => {
  const im = readImatrix(encodeImatrixGguf(sampleData()), "sizes.gguf");
  assertEquals(im.weightsFor("blk.0.attn_q.weight", 64)!.length, 64);
  assertEquals(im.weightsFor("blk.0.attn_k.weight", 64), null);
  assertThrows(
    () => im.weightsFor("blk.0.attn_q.weight", 128),
    ImatrixSizeError,
    /^Cannot use imatrix entry blk\.0\.attn_q\.weight of sizes\.gguf as .*64 values, the tensor needs 128/,
  );
  assertThrows(() => im.weightsFor("blk.0.ffn_up_exps.weight", 32), ImatrixSizeError, /96 values/);
  assertThrows(() => im.weightsFor("blk.0.ffn_up_exps.weight", 96, 3), ImatrixSizeError, /288/);
  // As in llama-quantize, a token embedding's entry of the wrong size is ignored.
  const embd = readImatrix(
    encodeImatrixGguf({
      ...sampleData(),
      entries: [{ name: "token_embd.weight", sums: [1, 2], counts: [1] }],
    }),
    "embd.gguf",
  );
  assertEquals(embd.weightsFor("token_embd.weight", 64), null);
  assertEquals(embd.weightsFor("token_embd.weight", 2)!.length, 2);
});

Deno.test("imatrixMetadata() gives llama-quantize's quantize.imatrix.* keys", () => {
  const im = readImatrix(encodeImatrixGguf(sampleData()), "imatrix.gguf");
  assertEquals(
    imatrixMetadata(im),
    new Map([
      ["quantize.imatrix.file", gv.str("imatrix.gguf")],
      ["quantize.imatrix.dataset", gv.str("wiki.train.raw")],
      ["quantize.imatrix.entries_count", gv.u32(4)],
      ["quantize.imatrix.chunks_count", gv.u32(2)],
    ]),
  );
  const long = "ä".repeat(70); // 140 bytes: cut to 127, which would split the 64th character
  const bare = imatrixMetadata({ file: long, datasets: [], chunkCount: 0, entries: { size: 3 } });
  assertEquals([...bare.keys()], ["quantize.imatrix.file", "quantize.imatrix.entries_count"]);
  assertEquals(bare.get("quantize.imatrix.file"), gv.str("ä".repeat(63)));
});

Deno.test("readImatrix() names the file at every truncation point", () => {
  const data = sampleData();
  const cases: [string, Uint8Array, number][] = [];
  const g = encodeImatrixGguf(data);
  // Everything up to the end of the last tensor's data is needed (not its padding).
  cases.push(["t.gguf", g, g.length - 28]);
  const d = encodeImatrixDat(data);
  // The trailer (chunk count, dataset name) is optional, the entries are not.
  cases.push(["t.dat", d, d.length - 4 - 4 - "more.txt".length]);
  for (const [file, bytes, needed] of cases) {
    for (let n = 0; n < needed; n++) {
      assertThrows(
        () => readImatrix(bytes.subarray(0, n), file),
        ImatrixError,
        new RegExp(`^Cannot read imatrix (entry \\S+ of )?${file} as `),
      );
    }
    readImatrix(bytes.subarray(0, needed), file);
  }
  assertThrows(
    () => readImatrix(g.subarray(0, 100), "t.gguf"),
    ImatrixError,
    /as it is truncated: .*needs \d+ bytes at offset \d+, the file has 100$/,
  );
});

Deno.test("readImatrix() rejects values llama-quantize would reject, except in unused experts", () => {
  const data = sampleData();
  const poisoned = (name: string, at: number, value: number): ImatrixData => ({
    ...data,
    entries: data.entries.map((e) => {
      if (e.name !== name) return e;
      const sums = Float64Array.from(e.sums);
      sums[at] = value;
      return { ...e, sums };
    }),
  });
  assertThrows(
    () => readImatrix(encodeImatrixGguf(poisoned("blk.1.ffn_down.weight", 5, NaN)), "nan.gguf"),
    ImatrixError,
    /^Cannot read imatrix entry blk\.1\.ffn_down\.weight of nan\.gguf as value 5 is not finite: NaN$/,
  );
  assertThrows(
    () => readImatrix(encodeImatrixDat(poisoned("blk.0.attn_q.weight", 0, Infinity)), "inf.dat"),
    ImatrixError,
    /entry blk\.0\.attn_q\.weight of inf\.dat as value 0 is not finite: Infinity/,
  );
  // Expert 1 of ffn_up_exps saw no tokens: its sums are never used.
  const unused = readImatrix(
    encodeImatrixGguf(poisoned("blk.0.ffn_up_exps.weight", 40, NaN)),
    "ok",
  );
  assertEquals(unused.weightsFor("blk.0.ffn_up_exps.weight", 32, 3)![40], 1);
});

Deno.test("readImatrix() rejects GGUF imatrix files llama-quantize does not accept", () => {
  const sums = { name: "blk.0.attn_q.weight.in_sum2", ne: [2], values: [4, 8] };
  const counts = { name: "blk.0.attn_q.weight.counts", ne: [1], values: [2] };
  const ok = ggufFile(new Map(IMATRIX_KV), [sums, counts]);
  assertEquals(Array.from(readImatrix(ok, "ok.gguf").weightsFor("blk.0.attn_q.weight", 2)!), [
    2,
    4,
  ]);
  const noSize = new Map(IMATRIX_KV.filter(([k]) => k !== "imatrix.chunk_size"));
  assertThrows(
    () => readImatrix(ggufFile(noSize, [sums, counts]), "m.gguf"),
    ImatrixError,
    /^Cannot read imatrix m\.gguf as imatrix metadata is missing: no imatrix\.chunk_size$/,
  );
  const i32Size = new Map(IMATRIX_KV);
  i32Size.set("imatrix.chunk_size", gv.i32(16));
  assertThrows(
    () => readImatrix(ggufFile(i32Size, [sums, counts]), "t.gguf"),
    ImatrixError,
    /not a u32/,
  );
  assertThrows(
    () => readImatrix(ggufFile(new Map(IMATRIX_KV), [sums]), "p.gguf"),
    ImatrixError,
    /^Cannot read imatrix entry blk\.0\.attn_q\.weight of p\.gguf as its sums and counts do not pair up/,
  );
  const split = { ...counts, ne: [1, 3], values: [1, 1, 1] };
  assertThrows(
    () => readImatrix(ggufFile(new Map(IMATRIX_KV), [sums, split]), "s.gguf"),
    ImatrixError,
    /do not split into one slice per count: 2 sums, 3 counts/,
  );
  assertThrows(
    () => readImatrix(ggufFile(new Map(IMATRIX_KV), []), "e.gguf"),
    ImatrixError,
    /no entries/,
  );
  const bad = ok.slice();
  new DataView(bad.buffer).setUint32(4, 1, true); // GGUF v1
  assertThrows(() => readImatrix(bad, "v1.gguf"), ImatrixError, /version 1, expected 2 or 3/);
});

Deno.test("collectedGgufName() maps the projections of a block and the output", () => {
  assertEquals(
    collectedGgufName("model.layers.3.mlp.down_proj.weight", false),
    "blk.3.ffn_down.weight",
  );
  assertEquals(
    collectedGgufName("model.layers.0.self_attn.o_proj.weight", false),
    "blk.0.attn_output.weight",
  );
  assertEquals(collectedGgufName("model.layers.0.self_attn.q_norm.weight", false), null);
  assertEquals(collectedGgufName("lm_head.weight", false), null);
  assertEquals(collectedGgufName("lm_head.weight", true), "output.weight");
  assertEquals(collectedGgufName("model.embed_tokens.weight", true), null);
});

Deno.test("collectImatrix() accumulates each projection's input over whole chunks", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const model = await generateModel(dir, { arch: "llama", seed: 21 });
    const weights = await readModelWeights(dir);
    const config = referenceConfig(model.config);
    const r = new SeededRandom(5, "tokens");
    const tokens = Array.from({ length: 40 }, () => r.uint32() % model.vocabSize);
    const data = collectImatrix(weights, config, tokens, {
      chunkSize: 16,
      bos: model.bosId,
      datasets: ["random"],
      processOutput: true,
    });
    assertEquals([data.chunkCount, data.chunkSize, data.datasets], [2, 16, ["random"]]);
    const names = ["attn_k", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate", "ffn_up"];
    assertEquals(
      data.entries.map((e) => e.name).sort(),
      ["blk.0", "blk.1"].flatMap((b) => names.map((n) => `${b}.${n}.weight`)).concat(
        "output.weight",
      ),
    );
    assert(data.entries.every((e) => e.counts.length === 1 && e.counts[0] === 32));
    const im = readImatrix(encodeImatrixGguf(data), "collected.gguf");
    const d = config.hiddenSize;

    // Layer 0's q/k/v input is RMSNorm(embedding) · w, computed here without the forward pass.
    const embed = weights.get("model.embed_tokens.weight")!.data;
    const norm = weights.get("model.layers.0.input_layernorm.weight")!.data;
    const want = new Float64Array(d);
    const used = [...tokens.slice(0, 32)];
    used[0] = used[16] = model.bosId;
    for (const t of used) {
      const x = embed.subarray(t * d, (t + 1) * d);
      const ms = x.reduce((s, v) => s + v * v, 0) / d;
      for (let j = 0; j < d; j++) {
        want[j] = want[j]! + (x[j]! * norm[j]!) ** 2 / (ms + config.rmsNormEps);
      }
    }
    const q = im.weightsFor("blk.0.attn_q.weight", d)!;
    assert(maxRelError(q, want.map((v) => v / 32)) < 1e-6);
    for (const l of [0, 1]) {
      assertEquals(
        im.weightsFor(`blk.${l}.attn_k.weight`, d),
        im.weightsFor(`blk.${l}.attn_q.weight`, d),
      );
      assertEquals(
        im.weightsFor(`blk.${l}.attn_v.weight`, d),
        im.weightsFor(`blk.${l}.attn_q.weight`, d),
      );
      assertEquals(
        im.weightsFor(`blk.${l}.ffn_up.weight`, d),
        im.weightsFor(`blk.${l}.ffn_gate.weight`, d),
      );
      assert(
        im.weightsFor(`blk.${l}.ffn_down.weight`, config.intermediateSize)!.every((v) => v > 0),
      );
      const o = im.weightsFor(`blk.${l}.attn_output.weight`, config.numHeads * config.headDim)!;
      assert(
        maxRelError(o, im.weightsFor(`blk.${l}.attn_q.weight`, d)!) > 0.1,
        "o_proj sees attention",
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("encodeImatrixGguf() writes what an independent GGUF reader sees as llama.cpp does", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/imatrix.gguf`;
    await Deno.writeFile(path, encodeImatrixGguf(sampleData()));
    const { typedMetadata: md, tensorInfos } = await gguf(path, {
      allowLocalFile: true,
      typedMetadata: true,
    });
    const kv = md as unknown as Record<
      string,
      { type: GGUFValueType; subType?: GGUFValueType; value: unknown }
    >;
    assertEquals(kv["general.type"], { type: GGUFValueType.STRING, value: "imatrix" });
    assertEquals(kv["imatrix.datasets"], {
      type: GGUFValueType.ARRAY,
      subType: GGUFValueType.STRING,
      value: ["wiki.train.raw", "more.txt"],
    });
    assertEquals(kv["imatrix.chunk_count"], { type: GGUFValueType.UINT32, value: 2 });
    assertEquals(kv["imatrix.chunk_size"], { type: GGUFValueType.UINT32, value: 128 });
    assertEquals(kv["general.architecture"], undefined);
    assertEquals(
      tensorInfos.map((t) => [t.name, t.shape.map(Number), Number(t.dtype)]),
      [
        ["blk.0.attn_q.weight.in_sum2", [64], 0],
        ["blk.0.attn_q.weight.counts", [1], 0],
        ["blk.0.ffn_gate_exps.weight.in_sum2", [32, 2], 0],
        ["blk.0.ffn_gate_exps.weight.counts", [1, 2], 0],
        ["blk.0.ffn_up_exps.weight.in_sum2", [32, 3], 0],
        ["blk.0.ffn_up_exps.weight.counts", [1, 3], 0],
        ["blk.1.ffn_down.weight.in_sum2", [96], 0],
        ["blk.1.ffn_down.weight.counts", [1], 0],
      ],
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** The first `chunks` chunks of 128 tokens of stories260K's eval text. */
const CHUNK = 128;
const CHUNKS = 16;

async function storiesSetup() {
  const json = async (name: string) => JSON.parse(await Deno.readTextFile(STORIES + name));
  const weights = await readModelWeights(STORIES);
  const config = referenceConfig(await json("config.json"));
  // 12,000 characters give well over 16 chunks of tokens.
  const text = (await Deno.readTextFile(`${STORIES}eval/tinystories-train-head.txt`)).slice(
    0,
    12000,
  );
  return { json, weights, config, text };
}

function names(config: { numLayers: number }): string[] {
  const kinds = ["attn_k", "attn_output", "attn_q", "attn_v", "ffn_down", "ffn_gate", "ffn_up"];
  return Array.from(
    { length: config.numLayers },
    (_, l) => kinds.map((k) => `blk.${l}.${k}.weight`),
  )
    .flat();
}

Deno.test({
  name: "collectImatrix() on stories260K gives positive weights for every block projection",
  ignore: !storiesPresent,
  async fn() {
    const { json, weights, config, text } = await storiesSetup();
    const tokenizer = TokenizerLoader.fromPreTrained({
      tokenizerJSON: await json("tokenizer.json"),
      tokenizerConfig: await json("tokenizer_config.json"),
    });
    const tokens = tokenizer.encode(text, { add_special_tokens: false });
    assert(tokens.length >= CHUNK * CHUNKS, `${tokens.length} tokens`);
    const data = collectImatrix(weights, config, tokens, {
      chunkSize: CHUNK,
      maxChunks: CHUNKS,
      bos: 1,
      datasets: ["tinystories-train-head.txt"],
    });
    const im = readImatrix(encodeImatrixGguf(data), "stories.imatrix.gguf");
    assertEquals([...im.entries.keys()], names(config).sort());
    assertEquals(im.chunkCount, CHUNKS);
    for (const [name, e] of im.entries) {
      assertEquals(e.counts, [CHUNK * CHUNKS], name);
      const cols = name.endsWith("ffn_down.weight") ? config.intermediateSize : config.hiddenSize;
      const w = im.weightsFor(name, cols)!;
      assert(w.every((v) => v > 0 && Number.isFinite(v)), name);
    }
  },
});

Deno.test({
  name: "collectImatrix() matches the real llama-imatrix on stories260K, byte layout included",
  ignore: !storiesPresent,
  async fn(t) {
    const dir = await Deno.makeTempDir();
    try {
      const tool = await buildLlamaImatrix(dir);
      if ("missing" in tool) {
        console.warn(`Skipping the llama-imatrix cross-check as ${tool.missing}`);
        return;
      }
      const { weights, config, text } = await storiesSetup();
      const model = `${dir}/stories260K-f32.gguf`;
      const textFile = `${dir}/text.txt`;
      await convert({ input: STORIES, output: model, type: "f32" });
      await Deno.writeTextFile(textFile, text);
      const run = { model, text: textFile, chunkSize: CHUNK, chunks: CHUNKS } as const;
      await runLlamaImatrix(tool.path, { ...run, output: `${dir}/real.gguf` });
      await runLlamaImatrix(tool.path, { ...run, output: `${dir}/real.dat`, format: "dat" });
      const realGguf = await Deno.readFile(`${dir}/real.gguf`);
      const real = readImatrix(realGguf, "real.gguf");
      const realDat = readImatrix(await Deno.readFile(`${dir}/real.dat`), "real.dat");

      // The same tokens llama-imatrix saw: its tokenizer, with BOS, on the text as `-f` reads it.
      let tokens: number[];
      {
        using llama = LlamaModel.load(model);
        tokens = llama.tokenize(text.endsWith("\n") ? text.slice(0, -1) : text, true);
      }
      const data = collectImatrix(weights, config, tokens, {
        chunkSize: CHUNK,
        maxChunks: CHUNKS,
        bos: 1,
        datasets: [textFile],
      });
      const oursGguf = encodeImatrixGguf(data);
      const ours = readImatrix(oursGguf, "ours.gguf");

      await t.step("same metadata and entries", () => {
        for (const im of [real, ours] as Imatrix[]) {
          assertEquals([im.datasets, im.chunkCount, im.chunkSize], [[textFile], CHUNKS, CHUNK]);
          assertEquals([...im.entries.keys()], names(config).sort());
        }
        assertEquals([realDat.datasets, realDat.chunkCount], [[textFile], CHUNKS]);
      });
      await t.step("byte-identical up to the tensor data", async () => {
        const { tensorDataOffset } = await gguf(`${dir}/real.gguf`, { allowLocalFile: true });
        const header = Number(tensorDataOffset);
        assertEquals(oursGguf.length, realGguf.length);
        assertEquals(oursGguf.subarray(0, header), realGguf.subarray(0, header));
      });
      await t.step("mean x² within float32 accumulation error", () => {
        for (const [name, e] of real.entries) {
          assertEquals(ours.entries.get(name)!.counts, e.counts, name);
          const err = maxRelError(ours.entries.get(name)!.values, e.values);
          assert(err < 2e-5, `${name}: relative error ${err}`);
          const datErr = maxRelError(realDat.entries.get(name)!.values, e.values);
          assert(datErr < 5e-7, `${name}: .dat vs GGUF ${datErr}`);
        }
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
