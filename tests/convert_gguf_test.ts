/**
 * The files `convert()` writes, read back by an independent GGUF reader (@huggingface/gguf):
 * metadata keys with llama.cpp's value types, tensor names, shapes, types and offsets, and the
 * streaming invariant that the chunk size never changes a byte of the output.
 */
import { gguf, GGUFValueType } from "@huggingface/gguf";
import { assert, assertEquals, assertRejects } from "./_assert.ts";
import { convert, plan } from "../mod.ts";
import { withModel } from "./_model.ts";
import { LocalSource } from "../stages/local_source.ts";
import { encodeStreamTuning } from "../stages/encode_stream.ts";
import type { ModelSource } from "../pipeline/source.ts";

const U32 = GGUFValueType.UINT32, F32 = GGUFValueType.FLOAT32, STR = GGUFValueType.STRING;

Deno.test("convert() writes metadata with llama.cpp's keys and value types", async () => {
  await withModel(
    { arch: "llama", seed: 3, dtype: "BF16", maxShardBytes: 80_000 },
    async (dir, work) => {
      const out = `${work}/m.gguf`;
      await convert({ input: dir, output: out, type: "auto", tokenizerPre: "llama-bpe" });
      const { typedMetadata: md } = await gguf(out, { allowLocalFile: true, typedMetadata: true });
      const expect: [string, GGUFValueType, unknown][] = [
        ["general.architecture", STR, "llama"],
        ["general.name", STR, "model"],
        ["general.file_type", U32, 32], // MOSTLY_BF16: auto keeps BF16
        ["general.quantization_version", U32, 2],
        ["llama.block_count", U32, 2],
        ["llama.context_length", U32, undefined],
        ["llama.embedding_length", U32, 64],
        ["llama.feed_forward_length", U32, 160],
        ["llama.attention.head_count", U32, 4],
        ["llama.attention.head_count_kv", U32, 2],
        ["llama.rope.freq_base", F32, 10000],
        ["llama.attention.layer_norm_rms_epsilon", F32, undefined],
        ["llama.vocab_size", U32, undefined],
        ["llama.rope.dimension_count", U32, 16],
        ["tokenizer.ggml.model", STR, "gpt2"],
        ["tokenizer.ggml.pre", STR, "llama-bpe"],
      ];
      const record = md as unknown as Record<string, { type: GGUFValueType; value: unknown }>;
      for (const [key, type, value] of expect) {
        const got = record[key];
        assert(got, `missing ${key}`);
        assertEquals(got.type, type, `type of ${key}`);
        if (value !== undefined) assertEquals(got.value, value, key);
      }
    },
  );
});

Deno.test("convert() writes the planned tensors in GGUF order (ne[0] = last torch dim)", async () => {
  await withModel({ arch: "qwen3", seed: 4, dtype: "F16", tied: true }, async (dir, work) => {
    const out = `${work}/m.gguf`;
    const { plan: p } = await plan(dir, { type: "q8_0", tokenizerPre: "llama-bpe" });
    await convert({ input: dir, output: out, type: "q8_0", tokenizerPre: "llama-bpe" });
    const parsed = await gguf(out, { allowLocalFile: true });
    assertEquals((await Deno.stat(out)).size, p.layout.fileSize);
    const byName = new Map(parsed.tensorInfos.map((t) => [t.name, t]));
    assert(!byName.has("output.weight"), "tied embeddings write no output.weight");
    const q = byName.get("blk.0.attn_q.weight")!;
    assertEquals(q.shape.map(Number), [64, 64]);
    assertEquals(Number(q.dtype), 8); // Q8_0
    assertEquals(Number(byName.get("blk.0.attn_q_norm.weight")!.dtype), 0); // norms stay F32
    assertEquals(Number(byName.get("blk.1.ffn_down.weight")!.dtype), 8);
    assertEquals(byName.get("blk.1.ffn_down.weight")!.shape.map(Number), [160, 64]);
    parsed.tensorInfos.forEach((t, i) => {
      assertEquals(
        BigInt(t.offset) + BigInt(parsed.tensorDataOffset),
        BigInt(p.layout.tensorOffsets[i]!),
      );
    });
  });
});

Deno.test("convert() output does not depend on the chunk size", async () => {
  await withModel(
    { arch: "llama", seed: 5, dtype: "BF16", maxShardBytes: 50_000 },
    async (dir, work) => {
      for (const type of ["bf16", "q8_0", "f32"] as const) {
        const small = `${work}/small.gguf`, big = `${work}/big.gguf`;
        // 1000 bytes splits rows, heads and tensors across chunks.
        await convert({
          input: dir,
          output: small,
          type,
          chunkSize: 1000,
          tokenizerPre: "llama-bpe",
        });
        await convert({ input: dir, output: big, type, tokenizerPre: "llama-bpe" });
        assertEquals(await Deno.readFile(small), await Deno.readFile(big), type);
      }
    },
  );
});

/** The local folder with its file paths hidden or redirected: writes bytes instead of copying. */
function withLocalPath(dir: string, localPath: ((path: string) => string) | null): ModelSource {
  const local = new LocalSource(dir);
  return {
    label: local.label,
    list: () => local.list(),
    readFile: (path) => local.readFile(path),
    size: (path) => local.size(path),
    readRanges: (ranges, options) => local.readRanges(ranges, options),
    ...(localPath ? { localPath } : {}),
  };
}

Deno.test("convert() copies unchanged tensors file to file with the bytes it would write", async () => {
  await withModel(
    { arch: "llama", seed: 8, dtype: "BF16", maxShardBytes: 60_000 },
    async (dir, work) => {
      const convertFrom = async (input: string | ModelSource, out: string) => {
        const stats = await convert({
          input,
          output: out,
          type: "bf16",
          tokenizerPre: "llama-bpe",
        });
        return { bytes: await Deno.readFile(out), stats };
      };
      const written = await convertFrom(withLocalPath(dir, null), `${work}/written.gguf`);
      assertEquals(written.stats.kernelCopiedBytes, 0);
      const copied = await convertFrom(dir, `${work}/copied.gguf`);
      if (Deno.build.os === "linux") {
        // Every 2-D weight but Q/K (permuted) is copied; norms are widened to F32.
        assert(copied.stats.kernelCopiedBytes > copied.stats.bytesRead / 2);
      }
      assertEquals(copied.bytes, written.bytes);
      // The kernel meets a file that ends early: the bytes already read are written instead.
      const empty = `${work}/empty.safetensors`;
      await Deno.writeFile(empty, new Uint8Array(0));
      const refused = await convertFrom(withLocalPath(dir, () => empty), `${work}/refused.gguf`);
      assertEquals(refused.stats.kernelCopiedBytes, 0);
      assertEquals(refused.bytes, written.bytes);
    },
  );
});

Deno.test("without FFI the CLI writes through Deno the bytes the kernel writes", async () => {
  await withModel(
    { arch: "llama", seed: 9, dtype: "BF16", maxShardBytes: 60_000 },
    async (dir, work) => {
      const cli = new URL("../cli.ts", import.meta.url).pathname;
      for (const type of ["bf16", "q8_0"] as const) {
        const kernel = `${work}/kernel-${type}.gguf`, deno = `${work}/deno-${type}.gguf`;
        await convert({ input: dir, output: kernel, type, tokenizerPre: "llama-bpe" });
        const run = await new Deno.Command(Deno.execPath(), {
          // No --allow-ffi: libc cannot be loaded, so nothing is copied or written by it.
          args: ["run", "--allow-read", "--allow-write", "--allow-env", cli, "convert", dir, "-o"]
            .concat([deno, "--type", type, "--tokenizer-pre", "llama-bpe", "--log-format", "json"]),
          stdout: "piped",
          stderr: "piped",
        }).output();
        assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
        assertEquals(await Deno.readFile(deno), await Deno.readFile(kernel), type);
      }
    },
  );
});

Deno.test("sluice inspect shows the planned tensor table and size without reading weights", async () => {
  await withModel({ arch: "qwen2", seed: 6, dtype: "BF16" }, async (dir) => {
    const run = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("../cli.ts", import.meta.url).pathname,
        "inspect",
        dir,
        "--type",
        "q8_0",
        "--tokenizer-pre",
        "llama-bpe",
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(run.stdout);
    assertEquals(run.code, 0, new TextDecoder().decode(run.stderr));
    assert(text.includes("checkpoint: Qwen2ForCausalLM"), text);
    assert(/blk\.0\.attn_q\.bias\s+\[64\]\s+F32/.test(text), text);
    assert(/blk\.0\.attn_k\.weight\s+\[64, 32\]\s+Q8_0/.test(text), text);
    assert(/planned GGUF size: .*\(\d+ bytes\)/.test(text), text);
  });
});

Deno.test("convert() encodes big pieces on workers with the same bytes and NaN reports", async () => {
  // Workers serve tensors of every size here (by default only those of 4 Mi elements or more).
  const { poolMinTensor } = encodeStreamTuning;
  encodeStreamTuning.poolMinTensor = 0;
  try {
    await _encodesOnWorkers();
  } finally {
    encodeStreamTuning.poolMinTensor = poolMinTensor;
  }
});

async function _encodesOnWorkers() {
  await withModel(
    { arch: "llama", seed: 8, dtype: "BF16", hiddenSize: 256, intermediateSize: 1024 },
    async (dir, work) => {
      // NVFP4 with outer scales: the amax pre-pass scans big pieces on workers too.
      const fp4 = { encode: { mode: "rtn", device: "cpu" }, outerScale: true } as const;
      for (const type of ["q8_0", "bf16", "nvfp4"] as const) {
        const main = `${work}/main.gguf`, pooled = `${work}/pooled.gguf`;
        const extra = type === "nvfp4" ? fp4 : {};
        // 64 KiB pieces stay on the main thread; 8 MiB ones (whole 512 KiB tensors) go to workers.
        await convert({
          input: dir,
          output: main,
          type,
          chunkSize: 64 << 10,
          tokenizerPre: "llama-bpe",
          ...extra,
        });
        await convert({ input: dir, output: pooled, type, tokenizerPre: "llama-bpe", ...extra });
        assertEquals(await Deno.readFile(pooled), await Deno.readFile(main), type);
      }
      // A NaN deep inside a big tensor is reported at its element, by the worker.
      const path = `${dir}/model.safetensors`;
      const bytes = await Deno.readFile(path);
      const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
      const [start] = header["model.layers.1.mlp.down_proj.weight"].data_offsets as number[];
      new DataView(bytes.buffer).setUint16(8 + n + start! + 2 * 200_001, 0x7fc0, true);
      await Deno.writeFile(path, bytes);
      for (const type of ["q8_0", "bf16"] as const) {
        await assertRejects(
          () =>
            convert({ input: dir, output: `${work}/nan.gguf`, type, tokenizerPre: "llama-bpe" }),
          RangeError,
          /blk\.1\.ffn_down\.weight .* element 200001 is NaN/,
        );
      }
    },
  );
}
