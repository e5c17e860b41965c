/**
 * ggml's own quantization of a whole GGUF: `llama_model_quantize` of the prebuilt libllama
 * (llama.cpp v0.5.0) through `Deno.dlopen`, as `llama-quantize` would run it. The anchor that
 * Sluice's FP4 files are compared with.
 *
 * `struct llama_model_quantize_params` is 64 bytes on x86-64 (include/llama.h of that release):
 * nthread i32 @0, ftype i32 @4, output_tensor_type i32 @8, token_embedding_type i32 @12, six bools
 * @16..21 (allow_requantize, quantize_output_tensor, only_copy, pure, keep_split, dry_run),
 * pointers imatrix @24, kv_overrides @32, tt_overrides @40, prune_layers @48, max_buf_size @56.
 * `llama_model_tensor_override` is {const char* pattern; enum ggml_type type} (16 bytes) and
 * `llama_model_imatrix_data` is {const char* name; const float* data; size_t size} (24 bytes);
 * both lists end with a NULL first pointer.
 *
 * This release has no NVFP4 ftype, so NVFP4 goes through ftype Q8_0 plus a tensor-type override;
 * its `quantize_nvfp4` and `quantize_mxfp4` ignore the imatrix.
 *
 * @module
 */
import { fileURLToPath } from "node:url";
import { llamaLibrary, llamaLogTail } from "./llama_cpp.ts";

const LIB_PATH = fileURLToPath(
  new URL(
    "../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libllama.v0.5.0.so",
    import.meta.url,
  ),
);

const PARAMS_SIZE = 64;
const P_NTHREAD = 0;
const P_FTYPE = 4;
const P_IMATRIX = 24;
const P_TT_OVERRIDES = 40;
const PARAMS: Deno.NativeStructType = { struct: new Array<Deno.NativeType>(8).fill("u64") };

const symbols = {
  llama_model_quantize_default_params: { parameters: [], result: PARAMS },
  llama_model_quantize: { parameters: ["buffer", "buffer", "buffer"], result: "u32" },
} as const satisfies Deno.ForeignLibraryInterface;

type QuantizeLib = Deno.DynamicLibrary<typeof symbols>["symbols"];
let lib: QuantizeLib | null = null;

/** `llama_ftype` values used here (include/llama.h). */
export const LLAMA_FTYPES = { q8_0: 7, q4_k_m: 15, mxfp4_moe: 38 } as const;

/** Options for {@linkcode llamaQuantize}. */
export interface LlamaQuantizeOptions {
  /** `llama_ftype`, e.g. {@linkcode LLAMA_FTYPES}.q4_k_m. */
  readonly ftype: number;
  /** `--tensor-type` rules as (ECMAScript-compatible std::regex, ggml type id); first match wins. */
  readonly tensorTypes?: readonly (readonly [string, number])[];
  /** mean(x²) per input column by GGUF tensor name, as llama-quantize's `load_imatrix` gives. */
  readonly imatrix?: ReadonlyMap<string, Float32Array>;
  /** Worker threads. @default 2 */
  readonly threads?: number;
}

function _cString(text: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(text);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

function _address(buffer: Uint8Array<ArrayBuffer> | Float32Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buffer)));
}

/** Keeps every buffer that a pointer refers to alive until the call returns. */
class _Arena {
  readonly held: (Uint8Array<ArrayBuffer> | Float32Array<ArrayBuffer>)[] = [];
  pin(buffer: Uint8Array<ArrayBuffer> | Float32Array<ArrayBuffer>): bigint {
    this.held.push(buffer);
    return _address(buffer);
  }
}

function _overrides(arena: _Arena, rules: readonly (readonly [string, number])[]): bigint {
  const list = new Uint8Array(16 * (rules.length + 1));
  const view = new DataView(list.buffer);
  rules.forEach(([pattern, type], i) => {
    view.setBigUint64(16 * i, arena.pin(_cString(pattern)), true);
    view.setInt32(16 * i + 8, type, true);
  });
  return arena.pin(list);
}

function _imatrix(arena: _Arena, entries: ReadonlyMap<string, Float32Array>): bigint {
  const list = new Uint8Array(24 * (entries.size + 1));
  const view = new DataView(list.buffer);
  let i = 0;
  for (const [name, values] of entries) {
    view.setBigUint64(24 * i, arena.pin(_cString(name)), true);
    view.setBigUint64(24 * i + 8, arena.pin(Float32Array.from(values)), true);
    view.setBigUint64(24 * i + 16, BigInt(values.length), true);
    i++;
  }
  return arena.pin(list);
}

/**
 * Quantizes the GGUF at `input` into `output` with llama.cpp's `llama_model_quantize`.
 * @throws {Error} with llama.cpp's log when it fails.
 */
export function llamaQuantize(input: string, output: string, options: LlamaQuantizeOptions): void {
  llamaLibrary(); // backend init and the log callback
  lib ??= Deno.dlopen(LIB_PATH, symbols).symbols;
  const params = new Uint8Array(lib.llama_model_quantize_default_params());
  if (params.length !== PARAMS_SIZE) throw new Error(`unexpected params size ${params.length}`);
  const view = new DataView(params.buffer);
  view.setInt32(P_NTHREAD, options.threads ?? 2, true);
  view.setInt32(P_FTYPE, options.ftype, true);
  const arena = new _Arena();
  if (options.tensorTypes?.length) {
    view.setBigUint64(P_TT_OVERRIDES, _overrides(arena, options.tensorTypes), true);
  }
  if (options.imatrix?.size) {
    view.setBigUint64(P_IMATRIX, _imatrix(arena, options.imatrix), true);
  }
  const rc = lib.llama_model_quantize(_cString(input), _cString(output), params);
  void arena.held.length;
  if (rc !== 0) {
    throw new Error(
      `Cannot quantize ${input} as llama_model_quantize returned ${rc}:\n${llamaLogTail()}`,
    );
  }
}
