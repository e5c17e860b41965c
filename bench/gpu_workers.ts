/**
 * The ceiling of moving GPU encodes off the main thread: Deno's WebGPU blocks the calling thread
 * for as long as the GPU works whenever a read-back (or onSubmittedWorkDone) is pending, so on the
 * main thread GPU time adds to reading time instead of overlapping it. This encodes 1 GiB of BF16
 * (8 MiB pieces, copied to the workers as postMessage does) to NVFP4 `full` + imatrix with an
 * outer scale on 0 (the main thread itself, the anchor), 1, 2 and 4 worker threads, each with its
 * own device, and reports GB/s and how long the main thread was blocked.
 *
 * deno run -A bench/gpu_workers.ts [MiB, default 1024]
 *
 * @module
 */
import { createFp4Encoder } from "../gpu/fp4/encode.ts";
import { encodeBf16 } from "../stages/encode/float_codecs.ts";
import { heavyTailed } from "./_gpu_data.ts";

const N_PER_ROW = 4096;
const PIECE = 8 << 20;
const total = Number(Deno.args[0] ?? 1024) << 20;
const values = heavyTailed(PIECE / 2, 13);
const piece = new Uint8Array(PIECE);
encodeBf16(values, piece);
const imatrix = Float32Array.from(heavyTailed(N_PER_ROW, 11), (v) => v * v * 1e4 + 1e-3);

/** Longest gap of a 1 ms ticker: how long the main thread was blocked at a time. */
function ticker(): () => string {
  let last = performance.now(), max = 0, blocked = 0;
  const id = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last);
    if (now - last > 5) blocked += now - last;
    last = now;
  }, 1);
  return () => {
    clearInterval(id);
    return `main thread blocked ${(blocked / 1000).toFixed(2)} s (longest ${max.toFixed(0)} ms)`;
  };
}

async function onMain(): Promise<number> {
  const encoder = await createFp4Encoder("nvfp4", N_PER_ROW, {
    mode: "full",
    device: "gpu",
    imatrix,
    outerScale: 2.1e-5,
  });
  await encoder.encodeBf16(piece);
  const t0 = performance.now();
  const inFlight: Promise<Uint8Array>[] = [];
  for (let at = 0; at < total; at += PIECE) {
    inFlight.push(encoder.encodeBf16(piece));
    if (inFlight.length >= 8) await inFlight.shift();
  }
  await Promise.all(inFlight);
  return (performance.now() - t0) / 1000;
}

async function onWorkers(n: number): Promise<number> {
  const workers = Array.from(
    { length: n },
    () => new Worker(new URL("./_gpu_worker_probe.ts", import.meta.url).href, { type: "module" }),
  );
  const waiting = new Map<number, () => void>();
  for (const w of workers) {
    w.onmessage = (e: MessageEvent<{ id: number }>) => waiting.get(e.data.id)!();
    w.onerror = (e) => {
      e.preventDefault();
      console.error(`worker failed: ${e.message}`);
      Deno.exit(1);
    };
  }
  let next = 0;
  const send = (w: Worker) =>
    new Promise<void>((resolve) => {
      const id = next++;
      waiting.set(id, resolve);
      w.postMessage({ id, bytes: piece, imatrix }); // a copy, as the converter's pooled pieces need
    });
  await Promise.all(workers.map(send)); // warm up: device, kernel
  const t0 = performance.now();
  const inFlight: Promise<void>[] = [];
  let k = 0;
  for (let at = 0; at < total; at += PIECE) {
    inFlight.push(send(workers[k++ % n]!));
    if (inFlight.length >= 8 * n) await inFlight.shift();
  }
  await Promise.all(inFlight);
  const s = (performance.now() - t0) / 1000;
  for (const w of workers) w.terminate();
  return s;
}

const anchorDone = ticker();
const anchor = await onMain();
console.log(`main thread (anchor): ${(total / 1e9 / anchor).toFixed(2)} GB/s; ${anchorDone()}`);
for (const n of [1, 2, 4]) {
  const done = ticker();
  const s = await onWorkers(n);
  console.log(
    `${n} worker(s): ${(total / 1e9 / s).toFixed(2)} GB/s = ${(anchor / s).toFixed(2)}× the main ` +
      `thread; ${done()}`,
  );
}
