/**
 * Real llama.cpp through `Deno.dlopen`: the prebuilt libraries of the npm package
 * `@node-llama-cpp/linux-x64` (llama.cpp v0.5.0). Used by tests, the demo and benchmarks as the
 * independent implementation that loads and runs what Sluice writes.
 *
 * Struct offsets below were read from `include/llama.h` of that exact release (checked with
 * `offsetof` in a C program); a newer release must re-check them.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const LIB_DIR = fileURLToPath(
  new URL("../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/", import.meta.url),
);

/** Size in bytes of `struct llama_model_params`. */
const MODEL_PARAMS_SIZE = 80;
/** Size in bytes of `struct llama_context_params`. */
const CONTEXT_PARAMS_SIZE = 160;
const MODEL_PARAMS_N_GPU_LAYERS = 16;
const MODEL_PARAMS_VOCAB_ONLY = 72;
const CTX_N_CTX = 0;
const CTX_N_BATCH = 4;
const CTX_N_UBATCH = 8;
const CTX_N_THREADS = 28;
const CTX_N_THREADS_BATCH = 32;
const CTX_NO_PERF = 130;
const CTX_FLASH_ATTN_TYPE = 52;
const CTX_TYPE_K = 104;
const CTX_TYPE_V = 108;

function structOf(size: number): Deno.NativeStructType {
  return { struct: new Array<Deno.NativeType>(size / 8).fill("u64") };
}
const MODEL_PARAMS = structOf(MODEL_PARAMS_SIZE);
const CONTEXT_PARAMS = structOf(CONTEXT_PARAMS_SIZE);
/** `struct llama_batch`: n_tokens, then six pointers. */
const BATCH: Deno.NativeStructType = {
  struct: ["i32", "pointer", "pointer", "pointer", "pointer", "pointer", "pointer"],
};

const llamaSymbols = {
  llama_backend_init: { parameters: [], result: "void" },
  llama_log_set: { parameters: ["function", "pointer"], result: "void" },
  llama_model_default_params: { parameters: [], result: MODEL_PARAMS },
  llama_context_default_params: { parameters: [], result: CONTEXT_PARAMS },
  llama_model_load_from_file: { parameters: ["buffer", MODEL_PARAMS], result: "pointer" },
  llama_model_free: { parameters: ["pointer"], result: "void" },
  llama_init_from_model: { parameters: ["pointer", CONTEXT_PARAMS], result: "pointer" },
  llama_free: { parameters: ["pointer"], result: "void" },
  llama_model_get_vocab: { parameters: ["pointer"], result: "pointer" },
  llama_vocab_n_tokens: { parameters: ["pointer"], result: "i32" },
  llama_tokenize: {
    parameters: ["pointer", "buffer", "i32", "buffer", "i32", "bool", "bool"],
    result: "i32",
  },
  llama_token_to_piece: {
    parameters: ["pointer", "i32", "buffer", "i32", "i32", "bool"],
    result: "i32",
  },
  llama_batch_get_one: { parameters: ["buffer", "i32"], result: BATCH },
  llama_decode: { parameters: ["pointer", BATCH], result: "i32", nonblocking: false },
  llama_get_logits_ith: { parameters: ["pointer", "i32"], result: "pointer" },
  llama_get_memory: { parameters: ["pointer"], result: "pointer" },
  llama_memory_clear: { parameters: ["pointer", "bool"], result: "void" },
  llama_model_meta_val_str: {
    parameters: ["pointer", "buffer", "buffer", "usize"],
    result: "i32",
  },
} as const satisfies Deno.ForeignLibraryInterface;

const ggmlSymbols = {
  ggml_backend_load_all_from_path: { parameters: ["buffer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

type LlamaLib = Deno.DynamicLibrary<typeof llamaSymbols>["symbols"];

let loaded: LlamaLib | null = null;
const LOG_CALLBACK = { parameters: ["i32", "pointer", "pointer"], result: "void" } as const;
/** Keeps the log callback alive for the life of the process. */
const keepAlive: Deno.UnsafeCallback<typeof LOG_CALLBACK>[] = [];
/** Lines llama.cpp logged most recently (errors explain load failures). */
const recentLog: string[] = [];

function cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/** Opens libllama once per isolate and loads ggml's CPU backend. */
export function llamaLibrary(): LlamaLib {
  if (loaded) return loaded;
  const lib = Deno.dlopen(`${LIB_DIR}libllama.v0.5.0.so`, llamaSymbols).symbols;
  // The logger is process-global but the callback belongs to this isolate: install it before
  // anything logs, and take it back out when the isolate ends (a test file's), or the next file's
  // llama.cpp would call freed code. Test files that load llama.cpp run one at a time
  // (tests/llama/), so no other isolate's llama.cpp calls this one meanwhile.
  const callback = new Deno.UnsafeCallback(LOG_CALLBACK, (_level, text) => {
    if (text === null) return;
    recentLog.push(Deno.UnsafePointerView.getCString(text));
    if (recentLog.length > 200) recentLog.shift();
  });
  keepAlive.push(callback);
  lib.llama_log_set(callback.pointer, null);
  globalThis.addEventListener("unload", () => lib.llama_log_set(null, null));
  const ggml = Deno.dlopen(`${LIB_DIR}libggml.v0.5.0.so`, ggmlSymbols);
  ggml.symbols.ggml_backend_load_all_from_path(cString(LIB_DIR));
  lib.llama_backend_init();
  loaded = lib;
  return lib;
}

/**
 * The last `count` lines llama.cpp logged (after {@linkcode llamaLibrary}), oldest first; for
 * error messages of other libllama calls.
 */
export function llamaLogTail(count = 8): string {
  return recentLog.slice(-count).join("");
}

/** Options for {@linkcode LlamaModel.load}. */
export interface LlamaLoadOptions {
  /** Context length. @default 256 */
  nCtx?: number;
  /** Threads for decoding. @default 2 */
  threads?: number;
  /** Load only the vocabulary (a GGUF with tokenizer metadata and no tensors). @default false */
  vocabOnly?: boolean;
  /**
   * F32 KV cache and no flash attention, so an F32 model's logits carry only float32 rounding
   * (llama.cpp's defaults, an F16 cache, add ~1e-3 relative error). @default false
   */
  exact?: boolean;
}

/** A GGUF loaded into real llama.cpp with one context. */
export class LlamaModel implements Disposable {
  readonly #lib: LlamaLib;
  readonly #model: Deno.PointerObject;
  readonly #ctx: Deno.PointerObject;
  readonly #vocab: Deno.PointerObject;
  /** Number of tokens in the vocabulary. */
  readonly nVocab: number;

  private constructor(lib: LlamaLib, model: Deno.PointerObject, ctx: Deno.PointerObject) {
    this.#lib = lib;
    this.#model = model;
    this.#ctx = ctx;
    const vocab = lib.llama_model_get_vocab(model);
    if (vocab === null) throw new Error("Cannot read vocabulary as llama.cpp returned none");
    this.#vocab = vocab;
    this.nVocab = lib.llama_vocab_n_tokens(vocab);
  }

  /**
   * Loads a GGUF file with llama.cpp on the CPU.
   * @throws {Error} with llama.cpp's last log lines when the file does not load.
   */
  static load(path: string, options: LlamaLoadOptions = {}): LlamaModel {
    const lib = llamaLibrary();
    const mp = new Uint8Array(lib.llama_model_default_params());
    new DataView(mp.buffer).setInt32(MODEL_PARAMS_N_GPU_LAYERS, 0, true);
    if (options.vocabOnly) mp[MODEL_PARAMS_VOCAB_ONLY] = 1;
    recentLog.length = 0;
    const model = lib.llama_model_load_from_file(cString(path), mp);
    if (model === null) {
      throw new Error(`Cannot load ${path} in llama.cpp:\n${recentLog.slice(-8).join("")}`);
    }
    const cp = new Uint8Array(lib.llama_context_default_params());
    const view = new DataView(cp.buffer);
    const nCtx = options.nCtx ?? 256;
    const threads = options.threads ?? 2;
    view.setUint32(CTX_N_CTX, nCtx, true);
    view.setUint32(CTX_N_BATCH, nCtx, true);
    view.setUint32(CTX_N_UBATCH, nCtx, true);
    view.setInt32(CTX_N_THREADS, threads, true);
    view.setInt32(CTX_N_THREADS_BATCH, threads, true);
    view.setUint8(CTX_NO_PERF, 1);
    if (options.exact) {
      view.setInt32(CTX_FLASH_ATTN_TYPE, 0, true);
      view.setInt32(CTX_TYPE_K, 0, true); // GGML_TYPE_F32
      view.setInt32(CTX_TYPE_V, 0, true);
    }
    const ctx = lib.llama_init_from_model(model, cp);
    if (ctx === null) {
      lib.llama_model_free(model);
      throw new Error(`Cannot create a llama.cpp context for ${path}:\n${recentLog.join("")}`);
    }
    return new LlamaModel(lib, model, ctx);
  }

  /** Reads a metadata string as llama.cpp parsed it, or null when absent. */
  meta(key: string): string | null {
    const buf = new Uint8Array(4096);
    const n = this.#lib.llama_model_meta_val_str(
      this.#model,
      cString(key),
      buf,
      BigInt(buf.length),
    );
    return n < 0 ? null : new TextDecoder().decode(buf.subarray(0, n));
  }

  /** Tokenizes text with llama.cpp's tokenizer for this vocabulary. */
  tokenize(text: string, addSpecial: boolean, parseSpecial = false): number[] {
    const bytes = new TextEncoder().encode(text);
    let capacity = bytes.length + 16;
    for (;;) {
      const out = new Int32Array(capacity);
      const n = this.#lib.llama_tokenize(
        this.#vocab,
        bytes,
        bytes.length,
        new Uint8Array(out.buffer),
        capacity,
        addSpecial,
        parseSpecial,
      );
      if (n >= 0) return Array.from(out.subarray(0, n));
      capacity = -n;
    }
  }

  /** The text of one token, as llama.cpp detokenizes it. */
  tokenToPiece(token: number): string {
    const buf = new Uint8Array(256);
    const n = this.#lib.llama_token_to_piece(this.#vocab, token, buf, buf.length, 0, false);
    return new TextDecoder().decode(buf.subarray(0, Math.max(0, n)));
  }

  /**
   * Runs the tokens as one fresh sequence and returns the logits of every position
   * (`nTokens × nVocab`, row-major).
   */
  logits(tokens: readonly number[]): Float32Array[] {
    const lib = this.#lib;
    lib.llama_memory_clear(lib.llama_get_memory(this.#ctx), true);
    const ids = new Int32Array(tokens);
    const batch = new Uint8Array(lib.llama_batch_get_one(new Uint8Array(ids.buffer), ids.length));
    // llama_batch_get_one leaves `logits` null, which asks only for the last position; point it at
    // an all-ones array so every position's logits come back.
    const want = new Int8Array(ids.length).fill(1);
    const wantPtr = Deno.UnsafePointer.of(want);
    new DataView(batch.buffer).setBigUint64(48, BigInt(Deno.UnsafePointer.value(wantPtr)), true);
    const rc = lib.llama_decode(this.#ctx, batch);
    if (rc !== 0) throw new Error(`Cannot decode as llama_decode returned ${rc}`);
    const rows: Float32Array[] = [];
    for (let i = 0; i < ids.length; i++) {
      const ptr = lib.llama_get_logits_ith(this.#ctx, i);
      if (ptr === null) throw new Error(`Cannot read logits for position ${i}`);
      const view = new Deno.UnsafePointerView(ptr);
      rows.push(new Float32Array(view.getArrayBuffer(this.nVocab * 4).slice(0)));
    }
    // Keep the arrays alive until after the call.
    void ids.length;
    void want.length;
    return rows;
  }

  /** Greedy continuation of a prompt, `count` tokens long. */
  greedy(prompt: readonly number[], count: number): number[] {
    const seq = [...prompt];
    for (let i = 0; i < count; i++) {
      const last = this.logits(seq).at(-1)!;
      let best = 0;
      for (let v = 1; v < last.length; v++) if (last[v]! > last[best]!) best = v;
      seq.push(best);
    }
    return seq.slice(prompt.length);
  }

  [Symbol.dispose](): void {
    this.#lib.llama_free(this.#ctx);
    this.#lib.llama_model_free(this.#model);
  }
}
