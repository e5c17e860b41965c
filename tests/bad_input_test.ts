/**
 * Bad input through the real CLI: every case exits non-zero with a message naming the file (and
 * tensor where there is one) and leaves no output file, finished or partial, behind.
 */
import { assert, assertEquals, assertMatch } from "./_assert.ts";
import { generateModel } from "../testing/synthetic_model.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;

interface _Run {
  code: number;
  stderr: string;
}

async function runCli(args: string[]): Promise<_Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CLI, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stderr: new TextDecoder().decode(out.stderr) };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads a safetensors file's header JSON and data section. */
async function readParts(path: string) {
  const bytes = await Deno.readFile(path);
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  return { header: header as Record<string, Record<string, unknown>>, data: bytes.subarray(8 + n) };
}

async function writeParts(path: string, header: unknown, data: Uint8Array) {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  await Deno.writeFile(path, out);
}

/** Generates a small model, breaks it, converts it, and checks the failure. */
async function expectFailure(
  breakIt: (dir: string) => Promise<void>,
  expected: RegExp,
  options: { sharded?: boolean; output?: (dir: string) => string } = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "sluice-bad-" });
  try {
    await generateModel(dir, {
      arch: "llama",
      seed: 7,
      ...(options.sharded ? { maxShardBytes: 60_000 } : {}),
    });
    await breakIt(dir);
    const output = options.output?.(dir) ?? `${dir}/out.gguf`;
    const run = await runCli([
      "convert",
      dir,
      "-o",
      output,
      "--tokenizer-pre",
      "llama-bpe",
      "--log-format",
      "json",
    ]);
    assertEquals(run.code, 1, `exit code (stderr: ${run.stderr})`);
    const message = run.stderr.split("\n").find((l) => l.startsWith("sluice: error:")) ?? "";
    assertMatch(message, expected);
    assert(!(await exists(output)), "no output file");
    assert(!(await exists(`${output}.partial`)), "no partial file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("convert rejects a truncated shard naming file and tensor", async () => {
  await expectFailure(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const size = (await Deno.stat(path)).size;
    await Deno.truncate(path, size - 1000);
  }, /model\.safetensors \(tensor [\w.]+\): .*runs? past|truncated/);
});

Deno.test("convert rejects a header length past the end of the file", async () => {
  await expectFailure(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const bytes = await Deno.readFile(path);
    new DataView(bytes.buffer).setBigUint64(0, BigInt(bytes.length), true);
    await Deno.writeFile(path, bytes);
  }, /model\.safetensors: Cannot read header as its length \d+ runs past the end of the file/);
});

Deno.test("convert rejects overlapping tensor offsets", async () => {
  await expectFailure(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const { header, data } = await readParts(path);
    const q = header["model.layers.0.self_attn.q_proj.weight"]!;
    const k = header["model.layers.0.self_attn.k_proj.weight"]!;
    const [qs] = q.data_offsets as number[];
    const [ks, ke] = k.data_offsets as number[];
    // Same size as k, but starting inside q.
    k.data_offsets = [qs! + 4, qs! + 4 + (ke! - ks!)];
    await writeParts(path, header, data);
  }, /model\.safetensors \(tensor model\.layers\.0\.self_attn\.[qk]_proj\.weight\): .*overlap/);
});

Deno.test("convert rejects out-of-range offsets", async () => {
  await expectFailure(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const { header, data } = await readParts(path);
    const t = header["model.norm.weight"]!;
    const [s, e] = t.data_offsets as number[];
    t.data_offsets = [data.length + s!, data.length + e!];
    await writeParts(path, header, data);
  }, /model\.safetensors \(tensor model\.norm\.weight\): Cannot read bytes \d+\.\.\d+/);
});

Deno.test("convert rejects an unknown dtype", async () => {
  await expectFailure(async (dir) => {
    const path = `${dir}/model.safetensors`;
    const { header, data } = await readParts(path);
    header["model.norm.weight"]!.dtype = "C64";
    await writeParts(path, header, data);
  }, /model\.safetensors \(tensor model\.norm\.weight\): Cannot read dtype "C64"/);
});

Deno.test("convert rejects a shape that contradicts config.json", async () => {
  await expectFailure(async (dir) => {
    const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
    config.intermediate_size += 32;
    await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
  }, /model\.safetensors \(tensor model\.layers\.0\.mlp\.\w+_proj\.weight\): Cannot convert shape/);
});

Deno.test("convert rejects a shard named in the index but missing", async () => {
  await expectFailure(
    async (dir) => {
      const index = JSON.parse(await Deno.readTextFile(`${dir}/model.safetensors.index.json`));
      const shards = [...new Set(Object.values(index.weight_map) as string[])].sort();
      assert(shards.length >= 2, "the model is sharded");
      await Deno.remove(`${dir}/${shards[1]}`);
    },
    /model-00002-of-\d+\.safetensors: Cannot open shard named in model\.safetensors\.index\.json/,
    { sharded: true },
  );
});

Deno.test("convert rejects an unknown architecture listing the supported ones", async () => {
  await expectFailure(
    async (dir) => {
      const config = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
      config.architectures = ["GPT2LMHeadModel"];
      await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(config));
    },
    /Cannot convert architecture GPT2LMHeadModel: supported are LlamaForCausalLM, MistralForCausalLM/,
  );
});

Deno.test("convert rejects an output path that is not writable", async () => {
  await expectFailure(
    () => Promise.resolve(),
    /Cannot write output .*no-such-dir\/out\.gguf\.partial/,
    { output: (dir) => `${dir}/no-such-dir/out.gguf` },
  );
});

Deno.test("convert rejects NaN weights naming the tensor and removes the partial file", async () => {
  await expectFailure(
    async (dir) => {
      const path = `${dir}/model.safetensors`;
      const { header, data } = await readParts(path);
      const [s] = header["model.layers.1.mlp.up_proj.weight"]!.data_offsets as number[];
      new DataView(data.buffer, data.byteOffset).setFloat32(s! + 4 * 70, NaN, true);
      await writeParts(path, header, data);
    },
    /Cannot convert tensor blk\.1\.ffn_up\.weight \(model\.layers\.1\.mlp\.up_proj\.weight in model\.safetensors\) as element 70 is NaN/,
  );
});
