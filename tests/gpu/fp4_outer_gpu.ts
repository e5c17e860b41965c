/**
 * Outer scales found on the GPU as tensors stream in (no second read) give the same bytes as the
 * CPU pre-pass: the amax kernel against `finiteAmax`, a tensor's GPU copy encoded against the CPU
 * twin, and whole conversions (NVFP4 `.scale` tensors, AMD-FP4 `--simulate`, BF16/F16/F32 input,
 * imatrix, a VRAM budget that makes tensors wait or leaves some to the pre-pass, NaN reports)
 * against `--device cpu`. Runs on whatever adapter WebGPU has (llvmpipe in CI), with the budget
 * set explicitly since software adapters default to the pre-pass.
 */
import { assertEquals, assertRejects } from "../_assert.ts";
import { seededRows } from "../_fp4_data.ts";
import { convert, type ConvertOptions } from "../../mod.ts";
import { acquireGpu } from "../../gpu/device.ts";
import { encodeFp4RowsCpu } from "../../gpu/fp4/encode_cpu.ts";
import { FP4_FORMATS } from "../../gpu/fp4/formats.ts";
import { Fp4InputError } from "../../gpu/fp4/input_error.ts";
import { fp4OuterDivisor, fp4OuterScale } from "../../gpu/fp4/outer_scale.ts";
import { GpuAmax, outerScalesOnGpu, readOuterRecord } from "../../gpu/fp4/amax_gpu.ts";
import { Fp4GpuEncoder } from "../../gpu/fp4/encode_gpu.ts";
import { Fp4ResidentTensor, fp4ResidentTuning } from "../../gpu/fp4/resident.ts";
import { decodeBf16, encodeBf16 } from "../../stages/encode/float_codecs.ts";
import { finiteAmax } from "../../stages/encode/finite.ts";
import { planGpuOuterScales } from "../../stages/encode/gpu_outer_scale.ts";
import { plan } from "../../pipeline/convert.ts";
import { encodeImatrixGguf } from "../../testing/imatrix_files.ts";
import { withModel } from "../_model.ts";

const gpu = await acquireGpu("auto");
if (gpu === null) console.warn("gpu/fp4_outer_gpu: skipped, WebGPU has no adapter here");
const ignore = gpu === null;

Deno.test({
  name: "A tensor kept on the GPU gives the pre-pass's amax and the CPU twin's bytes",
  ignore,
  async fn() {
    const nvfp4 = FP4_FORMATS.nvfp4;
    const n = 256;
    const x = seededRows(7, 40, n);
    x[999] = 3.5; // the amax, in the second piece
    x[5000] = NaN; // skipped by both amaxes; a NaN row is encoded below without it
    const bf16 = new Uint8Array(x.length * 2);
    encodeBf16(x, bf16);
    const widened = new Float32Array(x.length);
    decodeBf16(bf16, widened);
    const rowsAt = [0, 3, 19, 40];
    // One call per piece, then one call for all (each piece gets its part, or the call's error
    // restated from its own first element).
    for (const [dtype, callBytes] of [["F32", 0], ["BF16", 0], ["BF16", 2 ** 30]] as const) {
      const label = `${dtype}, ${callBytes ? "one call" : "a call per piece"}`;
      const bytes = dtype === "F32" ? new Uint8Array(x.buffer) : bf16;
      const values = dtype === "F32" ? x : widened;
      const resident =
        (await Fp4ResidentTensor.create(nvfp4, n, { mode: "window", device: "gpu" }))!;
      for (let k = 0; k + 1 < rowsAt.length; k++) {
        const from = rowsAt[k]! * n, to = rowsAt[k + 1]! * n;
        resident.add(
          dtype === "F32" ? x.slice(from, to) : { bf16: bf16.subarray(2 * from, 2 * to) },
        );
      }
      const saved = fp4ResidentTuning.callBytes;
      fp4ResidentTuning.callBytes = callBytes;
      const encoded = resident.encode();
      fp4ResidentTuning.callBytes = saved;
      const results = await Promise.allSettled(encoded.pieces);
      // The scale comes back with the first call, which fails for its NaN: none for one call.
      const scale = await encoded.scale.catch(() => null);
      const amax = finiteAmax(dtype, bytes);
      const outer = fp4OuterScale(nvfp4, amax);
      if (scale !== null) assertEquals([scale.amax, scale.outerScale], [amax, outer], label);
      for (let k = 0; k + 1 < rowsAt.length; k++) {
        const first = rowsAt[k]! * n;
        const rows = callBytes ? values : values.subarray(first, rowsAt[k + 1]! * n);
        let cpu: Uint8Array | Error;
        try {
          cpu = encodeFp4RowsCpu(nvfp4, rows, n, { mode: "window", outerScale: outer });
          if (callBytes) cpu = cpu.subarray(first / 64 * 36, rowsAt[k + 1]! * n / 64 * 36);
        } catch (e: unknown) {
          cpu = e as Error;
        }
        const result = results[k]!;
        const got = result.status === "fulfilled" ? result.value : result.reason as Error;
        if (cpu instanceof Fp4InputError) {
          // GPU copies are not read back for the reason: "NaN or infinite", at the same element.
          const index = cpu.index - (callBytes ? first : 0);
          assertEquals(got instanceof Fp4InputError && got.index, index, `${label}: piece ${k}`);
        } else {
          assertEquals(got, cpu, `${label}: piece ${k}`);
        }
      }
    }
  },
});

Deno.test({
  name: "The amax kernel skips NaN and ±inf and keeps subnormals and signs, as finiteAmax",
  ignore,
  async fn() {
    const nvfp4 = FP4_FORMATS.nvfp4;
    const kernel = await Fp4GpuEncoder.create(gpu!, nvfp4);
    const cases = [
      [0, -0],
      [1e-42, -3e-41, 0],
      [-7, 6.5, Infinity, NaN],
      [-Infinity, NaN],
      [3.4e38, -3.4028234663852886e38],
    ];
    for (const values of cases) {
      const x = new Float32Array(128);
      x.set(values, 64);
      const rows = kernel.upload(x, 64);
      const amax = await GpuAmax.create(gpu!);
      amax.fold(rows);
      const { records, valid } = amax.queue(fp4OuterDivisor(nvfp4)!);
      await valid;
      const got = await readOuterRecord(gpu!, records);
      kernel.release(rows);
      amax.release();
      const want = finiteAmax("F32", new Uint8Array(x.buffer));
      const outer = fp4OuterScale(nvfp4, want);
      assertEquals(
        [got.amax, got.outerScale, got.inverse],
        [want, outer, Math.fround(1 / outer)],
        `${values}`,
      );
    }
  },
});

Deno.test({
  name: "The outer-scale kernel gives the CPU's outer scale and reciprocal, bit for bit",
  ignore,
  async fn() {
    // Seeded finite magnitudes over every exponent, and the edges: zero, subnormals, the clamps
    // at 2^±100 (one ulp either side), amax equal to the divisor (outer scale 1), the largest.
    let state = 0x9e3779b9;
    const next = () => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return state >>> 0;
    };
    const bitsOf = (v: number) => new Uint32Array(new Float32Array([v]).buffer)[0]!;
    for (
      const [format, fourOverSix] of [
        [FP4_FORMATS.nvfp4, false],
        [FP4_FORMATS.nvfp4, true],
        [FP4_FORMATS.amdfp4, false],
        [FP4_FORMATS.amdfp4, true],
      ] as const
    ) {
      const divisor = fp4OuterDivisor(format, { fourOverSix })!;
      const edges = [0, 1, 0x7fffff, 0x800000, 0x7f7fffff, bitsOf(divisor)];
      for (const clamp of [2 ** -100, 2 ** 100]) {
        const bits = bitsOf(divisor * clamp);
        edges.push(bits - 1, bits, bits + 1);
      }
      const amaxBits = new Uint32Array(20_000);
      amaxBits.set(edges);
      for (let k = edges.length; k < amaxBits.length; k++) amaxBits[k] = next() % 0x7f800000;
      const got = await outerScalesOnGpu(gpu!, amaxBits, divisor);
      const amaxes = new Float32Array(amaxBits.buffer);
      for (let k = 0; k < amaxBits.length; k++) {
        const outer = fp4OuterScale(format, amaxes[k]!, { fourOverSix });
        const want = [bitsOf(outer), bitsOf(1 / outer)];
        if (got.outer[k] !== want[0] || got.inverse[k] !== want[1]) {
          assertEquals(
            [got.outer[k], got.inverse[k]],
            want,
            `${format.name}${fourOverSix ? " 4/6" : ""}: amax ${amaxes[k]} (bits ${amaxBits[k]})`,
          );
        }
      }
    }
  },
});

Deno.test({
  name: "convert() with outer scales on the GPU writes the pre-pass's bytes",
  ignore,
  async fn() {
    await withModel(
      { arch: "llama", seed: 12, dtype: "BF16", hiddenSize: 128, intermediateSize: 384 },
      async (dir, work) => {
        const base = { input: dir, tokenizerPre: "llama-bpe", type: "nvfp4" } as const;
        const run = async (name: string, extra: Partial<ConvertOptions>) => {
          const output = `${work}/${name}.gguf`;
          await convert({ ...base, output, ...extra } as ConvertOptions);
          return await Deno.readFile(output);
        };
        const encode = { mode: "window", device: "cpu" } as const;
        const cpu = await run("cpu", { encode });
        const gpuEncode = { ...encode, device: "gpu" } as const;
        const { plan: p } = await plan(dir, base);
        const ffn = p.tensors.find((t) => t.name === "blk.0.ffn_down.weight")!;
        const ffnBytes = ffn.origin.kind === "checkpoint"
          ? ffn.origin.entry.end - ffn.origin.entry.start
          : 0;
        for (
          const [label, bytes, chunkSize] of [
            ["all on the GPU", 2 ** 30, undefined],
            ["small pieces", 2 ** 30, 16 << 10],
            // Room for about one big tensor: each waits for the one before to be encoded.
            ["tensors wait for room", ffnBytes + 4096, 16 << 10],
            // The biggest tensors do not fit: the pre-pass reads those, the GPU keeps the rest.
            ["some by the pre-pass", ffnBytes - 1, undefined],
            ["all by the pre-pass", 0, undefined],
          ] as const
        ) {
          const got = await run("gpu", {
            encode: { ...gpuEncode, gpuOuterScaleBytes: bytes },
            ...(chunkSize ? { chunkSize } : {}),
          });
          assertEquals(got, cpu, label);
        }
        // Several pieces of a tensor encoded in one call, each given its part.
        const saved = fp4ResidentTuning.callBytes;
        fp4ResidentTuning.callBytes = 2 ** 30;
        try {
          const got = await run("gpu", {
            encode: { ...gpuEncode, gpuOuterScaleBytes: 2 ** 30 },
            chunkSize: 16 << 10,
          });
          assertEquals(got, cpu, "pieces share calls");
        } finally {
          fp4ResidentTuning.callBytes = saved;
        }
        const onGpu = await planGpuOuterScales(p.tensors, {
          ...gpuEncode,
          gpuOuterScaleBytes: ffnBytes - 1,
        });
        const scaled = p.tensors.filter((t) => t.fp4?.outerScale).length;
        assertEquals(onGpu.size > 0 && onGpu.size < scaled, true, `${onGpu.size} of ${scaled}`);
        assertEquals(
          (await planGpuOuterScales(p.tensors, { ...gpuEncode, device: "cpu" })).size,
          0,
          "cpu",
        );

        // AMD-FP4 simulated (outer scale, no `.scale` tensor) with an imatrix.
        const entries = p.tensors.filter((t) => t.fp4).map((t) => ({
          name: t.name,
          sums: Float32Array.from({ length: t.ne[0]! }, (_, i) => 1 + (i % 7)),
          counts: [1],
        }));
        const imatrix = `${work}/imatrix.gguf`;
        await Deno.writeFile(
          imatrix,
          encodeImatrixGguf({ entries, datasets: ["t"], chunkCount: 1, chunkSize: 1 }),
        );
        const sim = { type: "f32", simulate: "amdfp4", imatrix } as const;
        assertEquals(
          await run("sim-gpu", { ...sim, encode: { ...gpuEncode, gpuOuterScaleBytes: 2 ** 30 } }),
          await run("sim-cpu", { ...sim, encode }),
          "amdfp4 simulate + imatrix",
        );
      },
    );
  },
});

Deno.test({
  name: "convert() finds outer scales on the GPU from F16 and F32 input, and names a NaN",
  ignore,
  async fn() {
    for (const dtype of ["F16", "F32"] as const) {
      await withModel(
        { arch: "llama", seed: 13, dtype, hiddenSize: 128, intermediateSize: 256 },
        async (dir, work) => {
          const base = { input: dir, tokenizerPre: "llama-bpe", type: "nvfp4" } as const;
          const encode = { mode: "rtn", device: "cpu" } as const;
          await convert({ ...base, output: `${work}/cpu.gguf`, encode });
          const gpuEncode = { ...encode, device: "gpu", gpuOuterScaleBytes: 2 ** 30 } as const;
          await convert({ ...base, output: `${work}/gpu.gguf`, encode: gpuEncode });
          assertEquals(
            await Deno.readFile(`${work}/gpu.gguf`),
            await Deno.readFile(`${work}/cpu.gguf`),
            dtype,
          );
          if (dtype !== "F32") return;
          // A NaN in a tensor kept on the GPU is reported at its element, as on the CPU.
          const path = `${dir}/model.safetensors`;
          const bytes = await Deno.readFile(path);
          const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
          const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
          const [start] = header["model.layers.1.mlp.up_proj.weight"].data_offsets as number[];
          new DataView(bytes.buffer).setFloat32(8 + n + start! + 4 * 20_001, NaN, true);
          await Deno.writeFile(path, bytes);
          for (const e of [encode, gpuEncode]) {
            await assertRejects(
              () => convert({ ...base, output: `${work}/nan.gguf`, encode: e }),
              RangeError,
              /blk\.1\.ffn_up\.weight .* element 20001 is NaN or infinite/,
            );
          }
        },
      );
    }
  },
});
