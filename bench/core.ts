/**
 * `deno task bench core`: converts a generated sharded BF16 llama of at least 2 GB to BF16
 * (passthrough) and to Q8_0 with the real CLI in a child process, and in the same run measures
 * the anchors: `cp` (+ sync) of the same shards, and ggml's single-threaded Q8_0 quantizer on the
 * same data. Prints MB/s, peak RSS and the ratios.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { cliConvert, type CliConvertResult } from "./_cli_convert.ts";
import { ggmlQuantizeInto } from "../testing/ggml.ts";
import { generateModel } from "../testing/synthetic_model.ts";
import { decodeBf16 } from "../stages/encode/float_codecs.ts";
import { readCheckpointHeaders } from "../pipeline/shards.ts";
import { LocalSource } from "../stages/local_source.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const WORK = `${ROOT}.bench/core`;
const MODEL = `${WORK}/model`;
/** ~2.05 GB of BF16 weights. */
const SPEC = {
  arch: "llama",
  seed: 2026,
  hiddenSize: 2048,
  intermediateSize: 5632,
  numLayers: 22,
  numHeads: 16,
  numKvHeads: 8,
  dtype: "BF16",
  maxShardBytes: 512 * 1024 * 1024,
} as const;

/** Generates the benchmark model once (cached in .bench/core) and lists its shards. */
export async function ensureCoreModel(): Promise<{ dir: string; shards: string[] }> {
  const stamp = `${MODEL}/.spec.json`;
  const want = JSON.stringify(SPEC);
  const have = await Deno.readTextFile(stamp).catch(() => "");
  if (have !== want) {
    await Deno.remove(MODEL, { recursive: true }).catch(() => {});
    await Deno.mkdir(MODEL, { recursive: true });
    console.log("generating a ~2 GB BF16 model (once; cached in .bench/core) ...");
    await generateModel(MODEL, SPEC);
    await Deno.writeTextFile(stamp, want);
  }
  const shards = [...Deno.readDirSync(MODEL)].map((e) => e.name)
    .filter((n) => n.endsWith(".safetensors")).sort();
  return { dir: MODEL, shards };
}

async function timed(fn: () => Promise<void>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

async function cpAnchor(shards: string[]): Promise<number> {
  const dest = `${WORK}/cp`;
  await Deno.mkdir(dest, { recursive: true });
  const seconds = await timed(async () => {
    for (const s of shards) {
      const cp = await new Deno.Command("cp", { args: [`${MODEL}/${s}`, `${dest}/${s}`] }).output();
      if (!cp.success) throw new Error(`cp failed: ${new TextDecoder().decode(cp.stderr)}`);
      // The converter fsyncs its output; sync the copy too so both pay for the disk.
      await new Deno.Command("sync", { args: [`${dest}/${s}`] }).output();
    }
  });
  await Deno.remove(dest, { recursive: true });
  return seconds;
}

/** Rounds per contender. */
const ROUNDS = 5;

function _best(runs: readonly CliConvertResult[]): CliConvertResult {
  const fastest = runs.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
  return { ...fastest, peakRss: Math.max(...runs.map((r) => r.peakRss)) };
}

function sluiceConvert(type: string): Promise<CliConvertResult> {
  return cliConvert(MODEL, `${WORK}/out-${type}.gguf`, [
    "--type",
    type,
    "--tokenizer-pre",
    "llama-bpe",
  ]);
}

/** ggml's quantize_q8_0 (single thread) on f32 decoded from the model's own BF16 weights. */
async function ggmlQ8Anchor(): Promise<{ elementsPerSecond: number; elements: number }> {
  const source = new LocalSource(MODEL);
  const headers = await readCheckpointHeaders(source);
  const t = headers[0]!.tensors.find((t) => t.name.endsWith("mlp.up_proj.weight"))!;
  const raw = new Uint8Array(t.end - t.start);
  for await (
    const p of source.readRanges([{ path: headers[0]!.file, start: t.start, end: t.end }])
  ) {
    raw.set(p.bytes, p.offset);
  }
  const values = new Float32Array(raw.length / 2);
  decodeBf16(raw, values);
  const dst = new Uint8Array((values.length / 32) * 34);
  const nPerRow = t.shape[1]!;
  ggmlQuantizeInto("q8_0", values.subarray(0, nPerRow * 64), dst, nPerRow); // warm-up
  let reps = 0;
  const seconds = await timed(() => {
    for (; reps < 3; reps++) ggmlQuantizeInto("q8_0", values, dst, nPerRow);
    return Promise.resolve();
  });
  return { elementsPerSecond: (values.length * reps) / seconds, elements: values.length };
}

/** Runs the benchmark and prints the table. */
export async function benchCore(): Promise<void> {
  const { shards } = await ensureCoreModel();
  let inputBytes = 0;
  for (const s of shards) inputBytes += (await Deno.stat(`${MODEL}/${s}`)).size;
  const elements = inputBytes / 2;
  console.log(`model: ${shards.length} shards, ${(inputBytes / 1e9).toFixed(2)} GB BF16`);
  // The disk here is shared and noisy (cp alone varies 1.7–11 s between runs): every contender
  // runs ROUNDS times, interleaved, its best time shown (peak RSS: its worst). The passthrough
  // ratio is given two ways, best vs best and the median of per-round pairs (cp right before
  // sluice, so both saw the same disk), and the lower of the two counts.
  await cpAnchor(shards); // warms the page cache the same way for everyone
  const cpRuns: number[] = [], bf16Runs: CliConvertResult[] = [], q8Runs: CliConvertResult[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    cpRuns.push(await cpAnchor(shards));
    bf16Runs.push(await sluiceConvert("bf16"));
    q8Runs.push(await sluiceConvert("q8_0"));
  }
  const cpSeconds = Math.min(...cpRuns);
  const paired = cpRuns.map((cp, i) => cp / bf16Runs[i]!.seconds).sort((a, b) => a - b);
  const pairedMedian = paired[paired.length >> 1]!;
  const bf16 = _best(bf16Runs), q8 = _best(q8Runs);
  console.log(
    `runs (s): cp ${cpRuns.map((s) => s.toFixed(2)).join(" ")}; bf16 ${
      bf16Runs.map((r) => r.seconds.toFixed(2)).join(" ")
    }; q8_0 ${q8Runs.map((r) => r.seconds.toFixed(2)).join(" ")}`,
  );
  const ggml = await ggmlQ8Anchor();
  const mb = (bytes: number, s: number) => (bytes / 1e6 / s).toFixed(0);
  const rows = [
    ["cp + sync (anchor)", cpSeconds, mb(inputBytes, cpSeconds), "-", "1.00"],
    [
      "sluice bf16",
      bf16.seconds,
      mb(inputBytes, bf16.seconds),
      (bf16.peakRss / 2 ** 20).toFixed(0),
      (cpSeconds / bf16.seconds).toFixed(2),
    ],
    ["sluice q8_0", q8.seconds, mb(inputBytes, q8.seconds), (q8.peakRss / 2 ** 20).toFixed(0), "-"],
  ];
  console.log("\nrun                      seconds   MB/s(in)  peak RSS MiB  × cp");
  for (const [name, s, rate, rss, ratio] of rows) {
    console.log(
      `${String(name).padEnd(24)} ${Number(s).toFixed(2).padStart(7)} ${
        String(rate).padStart(10)
      } ${String(rss).padStart(13)} ${String(ratio).padStart(5)}`,
    );
  }
  const sluiceQ8Rate = elements / q8.seconds;
  console.log(
    `\nQ8_0: sluice end-to-end ${
      (sluiceQ8Rate / 1e6).toFixed(0)
    } Melem/s (read+decode+quantize+write) ` +
      `vs ggml quantize_q8_0 single-thread ${(ggml.elementsPerSecond / 1e6).toFixed(0)} Melem/s ` +
      `→ ratio ${(sluiceQ8Rate / ggml.elementsPerSecond).toFixed(2)}× (target ≥ 0.5)`,
  );
  const bestRatio = cpSeconds / bf16.seconds;
  console.log(
    `passthrough vs cp: ${Math.min(pairedMedian, bestRatio).toFixed(2)}× (target ≥ 0.7; ` +
      `best vs best ${bestRatio.toFixed(2)}×, median of paired rounds ${
        pairedMedian.toFixed(2)
      }×: ${paired.map((r) => r.toFixed(2)).join(" ")})`,
  );
  const maxRss = Math.max(bf16.peakRss, q8.peakRss) / 2 ** 20;
  console.log(`peak RSS: ${maxRss.toFixed(0)} MiB (target ≤ 512)`);
}
