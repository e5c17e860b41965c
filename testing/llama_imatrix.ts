/**
 * The real `llama-imatrix`, for cross-checks: `tools/imatrix/imatrix.cpp` of the llama.cpp source
 * that the prebuilt libraries of `@node-llama-cpp/linux-x64` were built from (v0.5.0), compiled
 * with g++ and linked against those libraries (a few seconds; nothing else of llama.cpp is built).
 * The source tree is `$LLAMA_CPP_SRC`, by default /tmp/llama.cpp.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const LIB_DIR = fileURLToPath(
  new URL("../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/", import.meta.url),
);

/** Where the llama.cpp sources are looked for. */
export const LLAMA_CPP_SRC = Deno.env.get("LLAMA_CPP_SRC") ?? "/tmp/llama.cpp";

/** A built tool, or why there is none. */
export type LlamaImatrixTool = { readonly path: string } | { readonly missing: string };

async function _exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** Compiles llama-imatrix into `dir`, or says why it cannot. */
export async function buildLlamaImatrix(dir: string): Promise<LlamaImatrixTool> {
  const source = `${LLAMA_CPP_SRC}/tools/imatrix/imatrix.cpp`;
  if (!(await _exists(source))) return { missing: `${source} is absent` };
  if (!(await _exists(`${LIB_DIR}libllama-common.so`))) {
    return { missing: `${LIB_DIR}libllama-common.so is absent` };
  }
  const path = `${dir}/llama-imatrix`;
  const args = [
    "-std=c++17",
    "-O1",
    ...["include", "common", "ggml/include", "vendor"].map((d) => `-I${LLAMA_CPP_SRC}/${d}`),
    source,
    "-o",
    path,
    `-L${LIB_DIR}`,
    ...["libllama-common.so", "libllama.v0.5.0.so", "libggml.v0.5.0.so", "libggml-base.so"]
      .map((l) => `-l:${l}`),
    `-Wl,-rpath,${LIB_DIR}`,
    "-pthread",
  ];
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("g++", { args, stdout: "piped", stderr: "piped" }).output();
  } catch (e) {
    return { missing: `g++ cannot run: ${(e as Error).message}` };
  }
  if (!out.success) {
    const log = new TextDecoder().decode(out.stderr).slice(-2000);
    throw new Error(`Cannot build llama-imatrix as g++ failed (${out.code}):\n${log}`);
  }
  return { path };
}

/** Options for {@linkcode runLlamaImatrix}. */
export interface LlamaImatrixRun {
  /** A GGUF model. */
  readonly model: string;
  /** The text file (`-f`). */
  readonly text: string;
  /** The imatrix to write (`-o`). */
  readonly output: string;
  /** n_ctx, also the batch size. */
  readonly chunkSize: number;
  readonly chunks: number;
  /** @default "gguf" */
  readonly format?: "gguf" | "dat";
}

/**
 * Runs llama-imatrix on the CPU with an F32 KV cache, no flash attention, no perplexity, 2 threads.
 * It runs in the library folder, where ggml looks for its CPU backends.
 *
 * @throws {Error} with the tool's last output when it fails.
 */
export async function runLlamaImatrix(tool: string, run: LlamaImatrixRun): Promise<void> {
  const n = String(run.chunkSize);
  const args = [
    ...["-m", run.model, "-f", run.text, "-o", run.output, "--output-format", run.format ?? "gguf"],
    ...["-c", n, "-b", n, "-ub", n, "--chunks", String(run.chunks)],
    ...["-fa", "off", "-ctk", "f32", "-ctv", "f32", "-t", "2", "--no-ppl"],
  ];
  const out = await new Deno.Command(tool, { args, cwd: LIB_DIR, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    const log = new TextDecoder().decode(out.stderr).slice(-2000);
    throw new Error(`Cannot collect an imatrix as llama-imatrix failed (${out.code}):\n${log}`);
  }
}
