/**
 * Where the GPU path's time goes, without the source: the FP4 tensors of the model that
 * bench/gpu_convert.ts generates (run that first with SLUICE_BENCH_DIR set) are read into memory,
 * then encoded to NVFP4 `full` + imatrix as the converter does (8 MiB pieces, outer scale found
 * on the GPU or none), timing (1) uploads with the amax fold, (2) the encode kernels alone on the
 * GPU copies, and (3) the whole path from host bytes to encoded bytes, 8 calls in flight.
 *
 * SLUICE_BENCH_DIR=DIR deno run -A bench/gpu_convert_prof.ts
 *
 * @module
 */
import { plan } from "../pipeline/convert.ts";
import { acquireGpu } from "../gpu/device.ts";
import { createFp4Encoder } from "../gpu/fp4/encode.ts";
import { fp4Format } from "../gpu/fp4/formats.ts";
import { fp4OuterScale } from "../gpu/fp4/outer_scale.ts";
import { Fp4ResidentTensor } from "../gpu/fp4/resident.ts";
import { QkPermuteStream } from "../stages/qk_permute_stream.ts";
import { planRanges, RowGroupStream } from "../stages/row_group_stream.ts";
import type { TensorPiece } from "../stages/tensor_piece.ts";
import { fp4Settings } from "../stages/encode/fp4_settings.ts";

const work = Deno.env.get("SLUICE_BENCH_DIR")!;
const mode = (Deno.env.get("SLUICE_MODE") ?? "full") as "full";
const { source, plan: p, imatrix } = await plan(`${work}/model`, {
  type: "nvfp4",
  tokenizerPre: "llama-bpe",
  imatrix: `${work}/imatrix.gguf`,
});
const fp4 = p.tensors.filter((t) => t.fp4 !== null && t.origin.kind === "checkpoint");
const pieces = new Map<number, TensorPiece[]>();
await source.readRanges(planRanges(fp4), { chunkSize: 8 << 20 })
  .pipeThrough(new RowGroupStream(fp4))
  .pipeThrough(new QkPermuteStream(fp4))
  .pipeTo(
    new WritableStream({
      write(piece) {
        const list = pieces.get(piece.tensor) ?? [];
        list.push({ ...piece, bytes: piece.bytes.slice() });
        pieces.set(piece.tensor, list);
      },
    }),
  );
const bytes = [...pieces.values()].flat().reduce((a, q) => a + q.bytes.length, 0);
const gbps = (s: number) => `${(bytes / 1e9 / s).toFixed(2)} GB/s`;
const options = {
  mode,
  device: "gpu" as const,
  imatrixFor: (t: (typeof fp4)[number]) => imatrix!.weightsFor(t.name, t.ne[0]!, t.ne[2] ?? 1),
};
await acquireGpu("gpu");
console.log(`${fp4.length} FP4 tensors, ${(bytes / 1e9).toFixed(2)} GB BF16, mode ${mode}`);

for (let round = 0; round < 2; round++) {
  for (const outer of [true, false]) {
    // (1) uploads + amax, (2) kernels alone on the GPU copies.
    const residents: Fp4ResidentTensor[] = [];
    let t0 = performance.now();
    for (const [i, list] of pieces) {
      const t = fp4[i]!;
      const s = fp4Settings(t, options);
      const r = (await Fp4ResidentTensor.create(s.format, s.nPerRow, s.options))!;
      for (const q of list) r.add({ bf16: q.bytes });
      residents.push(r);
    }
    const scales = await Promise.all(
      residents.map(async (r, k) => {
        const amax = await r.amax();
        return outer ? fp4OuterScale(fp4Format(fp4[k]!.fp4!.format), amax) : 1;
      }),
    );
    const upload = (performance.now() - t0) / 1000;
    t0 = performance.now();
    const outs = await Promise.all(residents.flatMap((r, k) => r.encode(scales[k]!)));
    const kernels = (performance.now() - t0) / 1000;
    const outBytes = outs.reduce((a, o) => a + o.length, 0);
    // (3) host bytes in, encoded bytes out, as the converter without outer scales does.
    t0 = performance.now();
    const inFlight: Promise<Uint8Array>[] = [];
    for (const [i, list] of pieces) {
      const t = fp4[i]!;
      const s = fp4Settings(t, options);
      const encoder = await createFp4Encoder(s.format, s.nPerRow, {
        ...s.options,
        outerScale: scales[[...pieces.keys()].indexOf(i)]!,
      });
      for (const q of list) {
        inFlight.push(encoder.encodeBf16(q.bytes));
        if (inFlight.length >= 8) await inFlight.shift();
      }
    }
    await Promise.all(inFlight);
    const whole = (performance.now() - t0) / 1000;
    console.log(
      `outer ${outer}: upload+amax+read-back ${upload.toFixed(2)} s (${gbps(upload)}), kernels ` +
        `+ read-back on GPU copies ${kernels.toFixed(2)} s (${gbps(kernels)}, ${outBytes} B), ` +
        `host→GPU→host 8 in flight ${whole.toFixed(2)} s (${gbps(whole)})`,
    );
  }
}
