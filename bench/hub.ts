/**
 * `deno task bench hub`: a loopback Hub (in its own process) serves the generated ~2 GB sharded
 * BF16 model of `bench core`. Measured in the same run with the same connection count, each in a
 * child process started cold (fresh connections, as a user runs either): a plain parallel ranged
 * download of the shards to disk (the anchor), and Sluice converting `hf:` → BF16 GGUF
 * (passthrough, so the network path dominates). Prints MB/s, the ratio, and the converter's peak
 * RSS against its memory budget. For reference it also times the same download inside this
 * process, where connections and compiled code stay warm from round to round.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { cliConvert, type CliConvertResult } from "./_cli_convert.ts";
import { ensureCoreModel } from "./core.ts";
import { downloadFiles } from "./hub_download_files.ts";

const ROOT = fileURLToPath(new URL("../", import.meta.url));
const CONNECTIONS = 8;
const MAX_MEMORY_MIB = 512;

/** Starts `bench/hub_serve.ts` and waits for its endpoint line. */
async function startServer(model: string) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${ROOT}bench/hub_serve.ts`, model],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error("Cannot start the loopback Hub");
    text += value;
  }
  const endpoint = JSON.parse(text.split("\n")[0]!).endpoint as string;
  reader.releaseLock();
  return { endpoint, child };
}

/**
 * Rounds, each a plain download (its own process, then in this one) and a conversion. The disk
 * and CPUs here are shared and noisy: the ratio is given best vs best and as the median of
 * per-round pairs (both saw the same moment), and the lower of the two counts.
 */
const ROUNDS = 5;

/** Removes the files `downloadFiles` wrote, so each round writes fresh ones. */
async function removeDownloads(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await Deno.remove(`${ROOT}.bench/download-${i}.bin`);
}

/** The anchor: the downloader's process, timed from spawn to exit; its files are then removed. */
async function downloadProcess(
  endpoint: string,
  shards: string[],
  sizes: number[],
): Promise<number> {
  const t0 = performance.now();
  const run = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}bench/hub_download_files.ts`,
      `${endpoint}/bench/core/resolve/main`,
      `${ROOT}.bench`,
      String(CONNECTIONS),
      ...shards.map((s, i) => `${s}:${sizes[i]}`),
    ],
    stdout: "inherit",
    stderr: "piped",
  }).output();
  const seconds = (performance.now() - t0) / 1000;
  if (!run.success) {
    throw new Error(`The plain download failed:\n${new TextDecoder().decode(run.stderr)}`);
  }
  await removeDownloads(shards.length);
  return seconds;
}

/** The same download inside this process (warm connections and code), for reference. */
async function downloadInProcess(
  endpoint: string,
  shards: string[],
  sizes: number[],
): Promise<number> {
  const t0 = performance.now();
  const files = shards.map((name, i) => ({ name, size: sizes[i]! }));
  await downloadFiles(`${endpoint}/bench/core/resolve/main`, `${ROOT}.bench`, CONNECTIONS, files);
  const seconds = (performance.now() - t0) / 1000;
  await removeDownloads(shards.length);
  return seconds;
}

function convertFromHub(endpoint: string): Promise<CliConvertResult> {
  return cliConvert("hf:bench/core", `${ROOT}.bench/hub-out.gguf`, [
    "--type",
    "bf16",
    "--tokenizer-pre",
    "llama-bpe",
    "--endpoint",
    endpoint,
    "--connections",
    String(CONNECTIONS),
    "--max-memory",
    String(MAX_MEMORY_MIB),
  ]);
}

/** Runs the benchmark and prints the table. */
export async function benchHub(): Promise<void> {
  const { dir, shards } = await ensureCoreModel();
  const { endpoint, child } = await startServer(dir);
  try {
    let total = 0;
    const sizes: number[] = [];
    for (const s of shards) {
      const size = (await Deno.stat(`${dir}/${s}`)).size;
      sizes.push(size);
      total += size;
    }
    console.log(
      `model: ${shards.length} shards, ${(total / 1e9).toFixed(2)} GB, ${CONNECTIONS} connections`,
    );
    // Anchor: the same bytes, file by file, over the same number of connections, written to disk
    // (positioned writes, then fsync) as a downloader does; the conversion writes its GGUF too.
    const downloadSeconds: number[] = [];
    const warmSeconds: number[] = [];
    const convertRuns: { seconds: number; peakRss: number }[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      downloadSeconds.push(await downloadProcess(endpoint, shards, sizes));
      warmSeconds.push(await downloadInProcess(endpoint, shards, sizes));
      convertRuns.push(await convertFromHub(endpoint));
    }
    const plainSeconds = Math.min(...downloadSeconds);
    const paired = downloadSeconds.map((d, i) => d / convertRuns[i]!.seconds).sort((a, b) => a - b);
    const pairedMedian = paired[paired.length >> 1]!;
    console.log(
      `runs (s): download ${downloadSeconds.map((s) => s.toFixed(2)).join(" ")}; in-process ${
        warmSeconds.map((s) => s.toFixed(2)).join(" ")
      }; convert ${convertRuns.map((r) => r.seconds.toFixed(2)).join(" ")}`,
    );
    const best = convertRuns.reduce((a, b) => (a.seconds <= b.seconds ? a : b));
    const convertSeconds = best.seconds;
    const peakRss = Math.max(...convertRuns.map((r) => r.peakRss));
    const mbs = (s: number) => (total / 1e6 / s).toFixed(0);
    console.log("\nrun                          seconds   MB/s   peak RSS MiB");
    console.log(
      `plain download to disk       ${plainSeconds.toFixed(2).padStart(7)} ${
        mbs(plainSeconds).padStart(6)
      }              -`,
    );
    const warm = Math.min(...warmSeconds);
    console.log(
      `  same, inside the bench     ${warm.toFixed(2).padStart(7)} ${
        mbs(warm).padStart(6)
      }              -`,
    );
    console.log(
      `sluice hf: → bf16 GGUF       ${convertSeconds.toFixed(2).padStart(7)} ${
        mbs(convertSeconds).padStart(6)
      } ${(peakRss / 2 ** 20).toFixed(0).padStart(14)}`,
    );
    const bestRatio = plainSeconds / convertSeconds;
    console.log(
      `\nconversion vs plain download: ${Math.min(pairedMedian, bestRatio).toFixed(2)}× ` +
        `(target ≥ 0.9; best vs best ${bestRatio.toFixed(2)}×, median of paired rounds ${
          pairedMedian.toFixed(2)
        }×: ${paired.map((r) => r.toFixed(2)).join(" ")})\npeak RSS ${
          (peakRss / 2 ** 20).toFixed(0)
        } MiB with --max-memory ${MAX_MEMORY_MIB} MiB\n(against the download inside the bench, ` +
        `warm from round to round: best vs best ${(warm / convertSeconds).toFixed(2)}×)`,
    );
  } finally {
    child.kill();
    await child.status;
  }
}
