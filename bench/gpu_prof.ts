/**
 * Where the time of the GPU FP4 encode goes (run on a machine with a real GPU): host-side costs
 * (BF16 decode, uploads, read-backs, mapAsync latency), the kernel alone on resident data (the
 * production kernel and any variant WGSL files given in FP4_VARIANTS, comma-separated, whose bytes
 * must equal the production kernel's), and end-to-end throughput of several feeding schemes.
 * Imports nothing from npm.
 *
 * deno run -A bench/gpu_prof.ts [elements]
 *
 * @module
 */
import { acquireGpu } from "../gpu/device.ts";
import { createFp4Encoder } from "../gpu/fp4/encode.ts";
import { fp4GpuTimings, fp4GpuTuning } from "../gpu/fp4/encode_gpu.ts";
import { fp4Format } from "../gpu/fp4/formats.ts";
import { fp4Tables, packFp4Tables } from "../gpu/fp4/tables.ts";
import { decodeBf16, encodeBf16 } from "../stages/encode/float_codecs.ts";
import { heavyTailed } from "./_gpu_data.ts";

const N_PER_ROW = 4096;
const MiB = 2 ** 20;

const ms = (t: number) => (performance.now() - t).toFixed(1);
const gpu = (await acquireGpu("gpu"))!;
const device = gpu.device;
console.log(`adapter: ${gpu.description}; limits ${JSON.stringify(gpu.limits)}`);
console.log(`features: ${[...device.features].join(",")}`);

const total = Number(Deno.args[0] ?? 1024 * MiB);
const chunk = 16 * MiB;
const values = heavyTailed(chunk, 13) as Float32Array<ArrayBuffer>;
const chunkBf16 = new Uint8Array(chunk * 2);
encodeBf16(values, chunkBf16);

// ---- host side ----
for (let r = 0; r < 3; r++) {
  let t = performance.now();
  const v = new Float32Array(chunk);
  const a = ms(t);
  t = performance.now();
  decodeBf16(chunkBf16, v);
  console.log(`host: alloc f32 16Mi ${a} ms, decodeBf16 16Mi ${ms(t)} ms`);
}
{
  const dst = device.createBuffer({
    size: 64 * MiB,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST | GPUBufferUsage.COPY_SRC,
  });
  const f32 = new Uint8Array(64 * MiB);
  for (let r = 0; r < 4; r++) {
    let t = performance.now();
    device.queue.writeBuffer(dst, 0, chunkBf16);
    const w32 = ms(t);
    t = performance.now();
    device.queue.writeBuffer(dst, 0, f32);
    const w64 = ms(t);
    t = performance.now();
    await device.queue.onSubmittedWorkDone();
    console.log(`upload: writeBuffer 32MiB ${w32} ms, 64MiB ${w64} ms, then workDone ${ms(t)} ms`);
  }
  // Mapped upload buffers (mappedAtCreation or mapAsync(WRITE)) took 1.1-1.5 s to fill 32 MiB
  // through getMappedRange on an H200 with Deno 2.9.6, against 8-9 ms for writeBuffer: not measured
  // again here.
  const rb = device.createBuffer({
    size: 16 * MiB,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const n = 9437184 + 8;
  for (let r = 0; r < 6; r++) {
    let t = performance.now();
    const e = device.createCommandEncoder();
    e.copyBufferToBuffer(dst, 0, rb, 0, 16 * MiB);
    device.queue.submit([e.finish()]);
    await rb.mapAsync(GPUMapMode.READ, 0, n);
    const m = ms(t);
    t = performance.now();
    const range = rb.getMappedRange(0, n);
    const g = ms(t);
    t = performance.now();
    let how: string;
    if (r % 2 === 0) {
      const out = new Uint8Array(range.slice(0, n - 8));
      how = `slice ${ms(t)}`;
      if (out.length !== n - 8) throw new Error("slice");
    } else {
      const out = new Uint8Array(n - 8);
      const a = ms(t);
      t = performance.now();
      out.set(new Uint8Array(range, 0, n - 8));
      how = `alloc ${a} + set ${ms(t)}`;
    }
    t = performance.now();
    rb.unmap();
    console.log(
      `readback 9MiB: copy+mapAsync ${m} ms, getMappedRange ${g} ms, ${how} ms, unmap ${ms(t)} ms`,
    );
  }
  {
    const t = performance.now();
    const host = new Uint8Array(n);
    const a = ms(t);
    const t2 = performance.now();
    const copy = new Uint8Array(n);
    copy.set(host);
    console.log(`host memcpy 9MiB: alloc ${a} ms, alloc+set ${ms(t2)} ms`);
  }
  const small = device.createBuffer({
    size: 256,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const lat: string[] = [];
  for (let r = 0; r < 6; r++) {
    const t = performance.now();
    const e = device.createCommandEncoder();
    e.clearBuffer(small);
    device.queue.submit([e.finish()]);
    await small.mapAsync(GPUMapMode.READ);
    small.unmap();
    lat.push(ms(t));
  }
  const done: string[] = [];
  for (let r = 0; r < 6; r++) {
    const t = performance.now();
    device.queue.submit([]);
    await device.queue.onSubmittedWorkDone();
    done.push(ms(t));
  }
  console.log(`latency: small mapAsync ${lat.join(" ")} ms; empty workDone ${done.join(" ")} ms`);
  dst.destroy();
  rb.destroy();
}

// ---- kernel alone on resident data ----
const format = fp4Format("nvfp4");
const imatrix: Float32Array<ArrayBuffer> = Float32Array.from(
  heavyTailed(N_PER_ROW, 11),
  (v) => v * v * 1e4 + 1e-3,
);

function paramsOf(
  blocks: number,
  strideY: number,
  words: number,
  inputKind: number,
  bytes: number,
) {
  const u = new Uint32Array(bytes / 4);
  const f = new Float32Array(u.buffer);
  u.set([blocks, N_PER_ROW, 2, 12, 0, 1]);
  f[6] = 1;
  u.set([0x7f7fffff, 0, strideY, words, format.blockSize, format.subBlockSize], 7);
  u.set([format.blockBytes, format.scaleOffset, format.codeOffset, format.pairSpan], 13);
  u.set([format.minSearchCode, format.maxCode, 0], 17);
  if (bytes === 112) f.set(format.levels, 20);
  else {
    u[20] = inputKind;
    f.set(format.levels, 24);
  }
  return u;
}

async function kernelAlone(path: string, workgroup: number, reference: Uint8Array | null) {
  const code = await Deno.readTextFile(path);
  const old = !code.includes("input_kind");
  const paramsBytes = old ? 112 : 128;
  device.pushErrorScope("validation");
  const t0 = performance.now();
  const module = device.createShaderModule({ code });
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "main" },
  });
  const err = await device.popErrorScope();
  if (err) {
    console.log(`kernel ${path}: rejected: ${err.message}`);
    return null;
  }
  const compile = ms(t0);
  const usage = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST;
  const input = device.createBuffer({ size: chunk * 4, usage });
  if (old) device.queue.writeBuffer(input, 0, values);
  else device.queue.writeBuffer(input, 0, chunkBf16);
  const w = device.createBuffer({ size: N_PER_ROW * 4, usage });
  device.queue.writeBuffer(w, 0, imatrix);
  const packed = packFp4Tables(fp4Tables(format));
  const tables = device.createBuffer({ size: packed.byteLength, usage });
  device.queue.writeBuffer(tables, 0, packed);
  const blocks = chunk / format.blockSize;
  const paddedBytes = Math.ceil((blocks * format.blockBytes) / 4) * 4;
  const out = device.createBuffer({
    size: paddedBytes + 8,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  const flags = device.createBuffer({ size: 8, usage: usage | GPUBufferUsage.COPY_SRC });
  device.queue.writeBuffer(flags, 0, new Uint32Array([0xffffffff, 0xffffffff]));
  const perGroup = code.match(/@workgroup_size\((\d+)\)/);
  const wg = perGroup ? Number(perGroup[1]) : workgroup;
  const threadsPerBlock = Number(code.match(/\/\/ THREADS_PER_BLOCK (\d+)/)?.[1] ?? 4);
  const workgroups = Math.ceil((blocks * threadsPerBlock) / wg);
  const groupsX = Math.min(workgroups, gpu.limits.maxComputeWorkgroupsPerDimension);
  const groupsY = Math.ceil(workgroups / groupsX);
  const params = paramsOf(blocks, groupsX * wg, paddedBytes / 4, 1, paramsBytes);
  const uniform = device.createBuffer({
    size: paramsBytes,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(uniform, 0, params);
  const entries: GPUBindGroupEntry[] = [
    { binding: 0, resource: { buffer: uniform } },
    { binding: 1, resource: { buffer: input } },
    { binding: 2, resource: { buffer: w } },
    { binding: 3, resource: { buffer: tables } },
    { binding: 4, resource: { buffer: out } },
  ];
  if (code.includes("@binding(5)")) entries.push({ binding: 5, resource: { buffer: flags } });
  const bind = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  const run = (n: number) => {
    for (let i = 0; i < n; i++) {
      const e = device.createCommandEncoder();
      e.clearBuffer(out);
      const p = e.beginComputePass();
      p.setPipeline(pipeline);
      p.setBindGroup(0, bind);
      p.dispatchWorkgroups(groupsX, groupsY);
      p.end();
      device.queue.submit([e.finish()]);
    }
  };
  run(1);
  await device.queue.onSubmittedWorkDone();
  const reps = Math.max(1, Math.round(total / chunk));
  const t = performance.now();
  run(reps);
  await device.queue.onSubmittedWorkDone();
  const seconds = (performance.now() - t) / 1000;
  const rb = device.createBuffer({
    size: paddedBytes,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const e = device.createCommandEncoder();
  e.copyBufferToBuffer(out, 0, rb, 0, paddedBytes);
  device.queue.submit([e.finish()]);
  await rb.mapAsync(GPUMapMode.READ);
  const bytes = new Uint8Array(rb.getMappedRange().slice(0, blocks * format.blockBytes));
  rb.unmap();
  let same = "reference";
  if (reference !== null) {
    let diff = 0;
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== reference[i]) diff++;
    same = diff === 0 ? "bytes == production" : `${diff} bytes DIFFER`;
  }
  console.log(
    `kernel ${path} (wg ${wg}, compile ${compile} ms): ${reps}×16Mi in ${seconds.toFixed(3)} s = ` +
      `${((reps * chunk * 2) / 1e9 / seconds).toFixed(2)} GB/s of BF16; ${same}`,
  );
  for (const b of [input, w, tables, out, flags, uniform, rb]) b.destroy();
  return bytes;
}

const reference = await kernelAlone("gpu/fp4/encode.wgsl", 64, null);
for (const path of (Deno.env.get("FP4_VARIANTS") ?? "").split(",").filter((p) => p !== "")) {
  await kernelAlone(path, 64, reference);
}

// ---- end to end ----
const bf16 = new Uint8Array(total * 2);
for (let at = 0; at < total; at += chunk) {
  bf16.set(chunkBf16.subarray(0, Math.min(chunk, total - at) * 2), at * 2);
}

async function endToEnd(
  label: string,
  chunkElements: number,
  depth: number,
  viaBf16: boolean,
  tuning: Partial<typeof fp4GpuTuning> = {},
) {
  const saved = { ...fp4GpuTuning };
  Object.assign(fp4GpuTuning, tuning, { profile: true });
  for (const k of Object.keys(fp4GpuTimings) as (keyof typeof fp4GpuTimings)[]) {
    fp4GpuTimings[k] = 0;
  }
  const enc = await createFp4Encoder("nvfp4", N_PER_ROW, { mode: "full", imatrix, device: "gpu" });
  const inFlight: Promise<Uint8Array>[] = [];
  let busy = 0;
  let outBytes = 0;
  const t0 = performance.now();
  for (let at = 0; at < total; at += chunkElements) {
    const n = Math.min(chunkElements, total - at);
    const t = performance.now();
    const bytes = bf16.subarray(at * 2, (at + n) * 2);
    if (viaBf16) inFlight.push(enc.encodeBf16(bytes));
    else {
      const v = new Float32Array(n);
      decodeBf16(bytes, v);
      inFlight.push(enc.encode(v));
    }
    busy += performance.now() - t;
    if (inFlight.length >= depth) outBytes += (await inFlight.shift()!).length;
  }
  for (const r of await Promise.all(inFlight)) outBytes += r.length;
  const s = (performance.now() - t0) / 1000;
  const tm = fp4GpuTimings;
  const per = (v: number) => (v / 1000).toFixed(2);
  console.log(
    `e2e ${label}: ${(bf16.length / 1e9 / s).toFixed(2)} GB/s (${
      s.toFixed(2)
    } s, ${outBytes} B out; ` +
      `in encode calls ${(busy / 1000).toFixed(2)} s) | ${tm.calls} calls: sync ${
        per(tm.syncMs)
      } s ` +
      `(upload ${per(tm.uploadMs)}, bind+encode ${per(tm.encodeMs)}, submit ${per(tm.submitMs)}; ` +
      `${tm.pieces} pieces), validation wait ${per(tm.validationMs)}, mapAsync calls ` +
      `${per(tm.mapCallMs)}, map wait ` +
      `${per(tm.mapWaitMs)}, read ${per(tm.readMs)} s (sums over calls)`,
  );
  Object.assign(fp4GpuTuning, saved);
}

const MB = 2 ** 20;
await endToEnd("f32 decode on CPU, 16Mi ×3 (encode)", 16 * MiB, 3, false);
await endToEnd("bf16, 16Mi ×3", 16 * MiB, 3, true);
await endToEnd("bf16, 16Mi ×3, piece 16MiB", 16 * MiB, 3, true, { pieceBytes: 16 * MB });
await endToEnd("bf16, 16Mi ×8", 16 * MiB, 8, true);
await endToEnd("bf16, 32Mi ×4", 32 * MiB, 4, true);
await endToEnd("bf16, 4Mi ×3 (converter-like)", 4 * MiB, 3, true);
await endToEnd("bf16, 4Mi ×8", 4 * MiB, 8, true);
