/**
 * Buffer releases are safe: every stage that gives a piece's buffer back (the encode stage after
 * an upload or a CPU encode, Q/K permute, the sink) must be done reading it. Here each release
 * overwrites the piece's bytes with 0xff (NaN in BF16) at once, as a reused buffer would be
 * overwritten later; the encoded bytes must equal a run whose releases do nothing.
 */
import { assert, assertEquals } from "../_assert.ts";
import { plan } from "../../pipeline/convert.ts";
import type { PlannedTensor } from "../../pipeline/plan.ts";
import { acquireGpu } from "../../gpu/device.ts";
import { type EncodeOptions, EncodeStream } from "../../stages/encode_stream.ts";
import { planGpuOuterScales } from "../../stages/encode/gpu_outer_scale.ts";
import { fillOuterScales } from "../../stages/amax_prepass.ts";
import { QkPermuteStream } from "../../stages/qk_permute_stream.ts";
import { planRanges, RowGroupStream } from "../../stages/row_group_stream.ts";
import type { EncodedPiece, TensorPiece } from "../../stages/tensor_piece.ts";
import { withModel } from "../_model.ts";

const gpu = await acquireGpu("auto");
if (gpu === null) console.warn("gpu/piece_release: GPU cases skipped, WebGPU has no adapter here");

/** Encoded bytes of every tensor, in order; `poison` makes each release overwrite its bytes. */
async function encodeAll(
  dir: string,
  type: "nvfp4" | "q8_0" | "bf16",
  encode: EncodeOptions,
  poison: boolean,
): Promise<{ bytes: Uint8Array[]; released: number }> {
  const { source, plan: p } = await plan(dir, { type, tokenizerPre: "llama-bpe" });
  const onGpu = await planGpuOuterScales(p.tensors, encode);
  await fillOuterScales(source, p.tensors.filter((_, i) => !onGpu.has(i)));
  let released = 0;
  const own = new TransformStream<TensorPiece, TensorPiece>({
    transform(piece, controller) {
      // Generated tensors (outer scales) have no buffer to give back, and their bytes are a live
      // view that the GPU's amax fills in later: passed on as they are.
      if (piece.release === undefined) return controller.enqueue(piece);
      // A buffer of its own per piece, so a poisoned one cannot be read through another view.
      const bytes = piece.bytes.slice();
      piece.release?.();
      controller.enqueue({
        tensor: piece.tensor,
        dtype: piece.dtype,
        firstRow: piece.firstRow,
        bytes,
        release: () => {
          released++;
          if (poison) bytes.fill(0xff);
        },
      });
    },
  });
  const out: Uint8Array[] = [];
  await source.readRanges(planRanges(p.tensors), { chunkSize: 32 << 10 })
    .pipeThrough(new RowGroupStream(p.tensors))
    .pipeThrough(own)
    .pipeThrough(new QkPermuteStream(p.tensors))
    .pipeThrough(new EncodeStream(p.tensors, encode, onGpu))
    .pipeTo(
      new WritableStream<EncodedPiece>({
        write(piece) {
          out.push(piece.bytes.slice());
          piece.release?.();
        },
      }),
    );
  return { bytes: out, released };
}

Deno.test("no stage reads a piece's bytes after giving its buffer back", async () => {
  const spec = { hiddenSize: 256, intermediateSize: 512 };
  await withModel({ arch: "llama", seed: 12, dtype: "BF16", ...spec }, async (dir) => {
    const cases: [string, "nvfp4" | "q8_0" | "bf16", EncodeOptions][] = [
      ["bf16", "bf16", {}],
      ["q8_0", "q8_0", {}],
      ["nvfp4 on the CPU", "nvfp4", { mode: "window", device: "cpu" }],
    ];
    if (gpu !== null) {
      cases.push(["nvfp4 on the GPU", "nvfp4", { mode: "window", device: "gpu" }]);
      cases.push(["nvfp4 kept on the GPU for its outer scale", "nvfp4", {
        mode: "window",
        device: "gpu",
        gpuOuterScaleBytes: 2 ** 30,
      }]);
    }
    for (const [label, type, encode] of cases) {
      const plain = await encodeAll(dir, type, encode, false);
      const poisoned = await encodeAll(dir, type, encode, true);
      assert(poisoned.released > 0, `${label}: no piece was released`);
      assertEquals(poisoned.bytes, plain.bytes, label);
    }
  });
});

Deno.test("the outer-scale pre-pass gives every buffer back, once it has scanned it", async () => {
  // FFN pieces (256 KiB) go to a worker, attention pieces are scanned here.
  const spec = { hiddenSize: 256, intermediateSize: 512 };
  await withModel({ arch: "llama", seed: 14, dtype: "BF16", ...spec }, async (dir) => {
    const options = { type: "nvfp4", tokenizerPre: "llama-bpe" } as const;
    const scales = (tensors: readonly PlannedTensor[]) =>
      tensors.flatMap((t) => t.fp4?.outerScale ? [t.fp4.outerScale[0]] : []);

    const plain = await plan(dir, options);
    await fillOuterScales(plain.source, plain.plan.tensors);

    const { source, plan: p } = await plan(dir, options);
    let chunks = 0, released = 0;
    const counted = Object.create(source) as typeof source;
    counted.readRanges = (ranges, readOptions) =>
      source.readRanges(ranges, readOptions).pipeThrough(
        new TransformStream({
          transform(chunk, controller) {
            chunks++;
            const bytes = chunk.bytes.slice();
            chunk.release?.();
            controller.enqueue({
              ...chunk,
              bytes,
              release: () => {
                released++;
                bytes.fill(0xff); // NaN in BF16: a scan after the release would see it
              },
            });
          },
        }),
      );
    await fillOuterScales(counted, p.tensors);
    assert(chunks > 0);
    assertEquals(released, chunks, "releases");
    assertEquals(scales(p.tensors), scales(plain.plan.tensors), "outer scales");
  });
});
