/**
 * Worker side of bench/gpu_workers.ts: encodes BF16 pieces to NVFP4 `full` + imatrix with an
 * outer scale on this worker's own GPU device, 8 calls in flight, and posts the bytes back.
 *
 * @module
 */
import { createFp4Encoder, type Fp4Encoder } from "../gpu/fp4/encode.ts";

const N_PER_ROW = 4096;
let encoder: Promise<Fp4Encoder> | null = null;
// deno-lint-ignore no-explicit-any
const scope = self as any as {
  onmessage:
    | ((e: MessageEvent<{ id: number; bytes: Uint8Array; imatrix: Float32Array }>) => void)
    | null;
  postMessage(m: unknown, transfer?: Transferable[]): void;
};
scope.onmessage = async (e) => {
  encoder ??= createFp4Encoder("nvfp4", N_PER_ROW, {
    mode: "full",
    device: "gpu",
    imatrix: e.data.imatrix,
    outerScale: 2.1e-5,
  });
  const out = await (await encoder).encodeBf16(e.data.bytes);
  scope.postMessage({ id: e.data.id, bytes: out }, [out.buffer as ArrayBuffer]);
};
