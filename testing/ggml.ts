/**
 * ggml's own quantizers and float conversions through `Deno.dlopen` on the prebuilt
 * `libggml-base.so` of `@node-llama-cpp/linux-x64` (llama.cpp v0.5.0, GGML_TYPE_COUNT 43). This is
 * the byte-level oracle every Sluice encoder is tested against, and the speed anchor its
 * benchmarks compare with.
 *
 * Timing: every function here is a synchronous FFI call into plain single-threaded C (the library
 * is built without AVX/FMA, and `ggml_quantize_chunk` never spawns threads), so wall time measured
 * around one call, e.g. with `performance.now()`, is ggml's single-thread time. Use
 * {@link ggmlQuantizeInto} in timing loops so that no output buffer is allocated per call.
 *
 * Signatures follow `ggml/include/ggml.h` of that release; `struct ggml_type_traits` offsets were
 * derived from its field order on x86-64 (see {@link TRAITS_TO_FLOAT}).
 *
 * @module
 */
import { fileURLToPath } from "node:url";

const LIB_PATH = fileURLToPath(
  new URL(
    "../node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/libggml-base.so",
    import.meta.url,
  ),
);

/** `GGML_TYPE_COUNT` of this build; ids at or above it are out of bounds in ggml. */
export const GGML_TYPE_COUNT = 43;
const GGML_TYPE_F32 = 0;

/**
 * Byte offset of `to_float` in `struct ggml_type_traits`:
 * type_name (ptr, 0), blck_size (i64, 8), blck_size_interleave (i64, 16), type_size (size_t, 24),
 * is_quantized (bool, 32, padded to 8), to_float (fn ptr, 40), from_float_ref (fn ptr, 48).
 */
const TRAITS_TO_FLOAT = 40;

const symbols = {
  ggml_quantize_init: { parameters: ["i32"], result: "void" },
  ggml_quantize_requires_imatrix: { parameters: ["i32"], result: "bool" },
  ggml_quantize_chunk: {
    parameters: ["i32", "buffer", "buffer", "i64", "i64", "i64", "buffer"],
    result: "usize",
  },
  ggml_row_size: { parameters: ["i32", "i64"], result: "usize" },
  ggml_blck_size: { parameters: ["i32"], result: "i64" },
  ggml_type_size: { parameters: ["i32"], result: "usize" },
  ggml_type_name: { parameters: ["i32"], result: "pointer" },
  ggml_get_type_traits: { parameters: ["i32"], result: "pointer" },
  ggml_validate_row_data: { parameters: ["i32", "buffer", "usize"], result: "bool" },
  ggml_fp32_to_fp16_row: { parameters: ["buffer", "buffer", "i64"], result: "void" },
  ggml_fp16_to_fp32_row: { parameters: ["buffer", "buffer", "i64"], result: "void" },
  ggml_fp32_to_bf16_row_ref: { parameters: ["buffer", "buffer", "i64"], result: "void" },
  ggml_bf16_to_fp32_row: { parameters: ["buffer", "buffer", "i64"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

const TO_FLOAT = { parameters: ["buffer", "buffer", "i64"], result: "void" } as const;

type GgmlLib = Deno.DynamicLibrary<typeof symbols>["symbols"];
type ToFloat = Deno.UnsafeFnPointer<typeof TO_FLOAT>;

let lib: GgmlLib | null = null;
let idsByName: Map<string, number> | null = null;
const toFloatById = new Map<number, ToFloat>();

/** A ggml type given by its `enum ggml_type` id or by name in any case ("q8_0", "BF16"). */
export type GgmlTypeRef = number | string;

/** Opens `libggml-base.so` once per process. */
export function ggmlLibrary(): GgmlLib {
  if (lib === null) lib = Deno.dlopen(LIB_PATH, symbols).symbols;
  return lib;
}

/** ggml's lower-case name of a type id ("q8_0", "bf16"), or null for an id this build removed. */
export function ggmlTypeName(id: number): string | null {
  checkId(id);
  const g = ggmlLibrary();
  // Removed ids keep a placeholder name ("DEPRECATED", "... REMOVED ...") and a block size of 0.
  if (Number(g.ggml_blck_size(id)) === 0) return null;
  const ptr = g.ggml_type_name(id);
  return ptr === null ? null : Deno.UnsafePointerView.getCString(ptr);
}

/**
 * Resolves a type name or id to its id.
 * @throws {RangeError} for an id out of bounds or a name this build does not know.
 */
export function ggmlTypeId(type: GgmlTypeRef): number {
  if (typeof type === "number") {
    checkId(type);
    if (ggmlTypeName(type) === null) {
      throw new RangeError(`Cannot use ggml type ${type} as this build removed it`);
    }
    return type;
  }
  if (idsByName === null) {
    idsByName = new Map();
    for (let id = 0; id < GGML_TYPE_COUNT; id++) {
      const name = ggmlTypeName(id);
      if (name !== null) idsByName.set(name.toLowerCase(), id);
    }
  }
  const id = idsByName.get(type.toLowerCase());
  if (id === undefined) {
    throw new RangeError(`Cannot resolve ggml type as this build has no type named: ${type}`);
  }
  return id;
}

/** Elements per block of a type (`ggml_blck_size`). */
export function ggmlBlockSize(type: GgmlTypeRef): number {
  return Number(ggmlLibrary().ggml_blck_size(ggmlTypeId(type)));
}

/** Bytes per block of a type (`ggml_type_size`). */
export function ggmlTypeSize(type: GgmlTypeRef): number {
  return Number(ggmlLibrary().ggml_type_size(ggmlTypeId(type)));
}

/**
 * Bytes of a row of `n` elements (`ggml_row_size`).
 * @throws {RangeError} when `n` is not a multiple of the block size (ggml would assert).
 */
export function ggmlRowSize(type: GgmlTypeRef, n: number): number {
  const id = ggmlTypeId(type);
  checkBlocks(id, n, "size a row");
  return Number(ggmlLibrary().ggml_row_size(id, BigInt(n)));
}

/** Whether ggml refuses to quantize a type without an importance matrix. */
export function ggmlRequiresImatrix(type: GgmlTypeRef): boolean {
  return ggmlLibrary().ggml_quantize_requires_imatrix(ggmlTypeId(type));
}

/** `ggml_validate_row_data`: false for bytes ggml would reject (NaN/Inf scales and the like). */
export function ggmlValidateRowData(type: GgmlTypeRef, bytes: Uint8Array): boolean {
  return ggmlLibrary().ggml_validate_row_data(ggmlTypeId(type), bytes, BigInt(bytes.length));
}

/**
 * Quantizes whole rows with `ggml_quantize_chunk` (which dispatches to `quantize_<type>`; F16 is
 * `ggml_fp32_to_fp16_row`, BF16 is `ggml_fp32_to_bf16_row_ref`, F32 a copy).
 * @param imatrix one weight per column (`nPerRow` values), or null/undefined for none.
 * @returns the quantized bytes, `rows * ggmlRowSize(type, nPerRow)` long.
 * @throws {RangeError} on sizes ggml would assert on.
 * @throws {TypeError} when the type requires an imatrix and none is given.
 */
export function ggmlQuantize(
  type: GgmlTypeRef,
  src: Float32Array,
  nPerRow: number,
  imatrix?: Float32Array | null,
): Uint8Array {
  const id = ggmlTypeId(type);
  const rows = rowCount(id, src, nPerRow);
  const dst = new Uint8Array(rows * Number(ggmlLibrary().ggml_row_size(id, BigInt(nPerRow))));
  ggmlQuantizeInto(id, src, dst, nPerRow, imatrix);
  return dst;
}

/**
 * {@link ggmlQuantize} into a caller-provided buffer (for timing loops).
 * @returns bytes written.
 */
export function ggmlQuantizeInto(
  type: GgmlTypeRef,
  src: Float32Array,
  dst: Uint8Array,
  nPerRow: number,
  imatrix?: Float32Array | null,
): number {
  const g = ggmlLibrary();
  const id = ggmlTypeId(type);
  const rows = rowCount(id, src, nPerRow);
  const need = rows * Number(g.ggml_row_size(id, BigInt(nPerRow)));
  if (dst.length < need) {
    throw new RangeError(
      `Cannot quantize into the buffer as it holds ${dst.length} bytes: ${need} needed`,
    );
  }
  const weights = imatrix ?? null;
  if (weights === null && g.ggml_quantize_requires_imatrix(id)) {
    throw new TypeError(`Cannot quantize as ggml requires an imatrix for type: ${typeLabel(id)}`);
  }
  if (weights !== null && weights.length !== nPerRow) {
    throw new RangeError(
      `Cannot quantize as the imatrix must have one weight per column: ${weights.length} for ${nPerRow}`,
    );
  }
  g.ggml_quantize_init(id);
  return Number(g.ggml_quantize_chunk(id, src, dst, 0n, BigInt(rows), BigInt(nPerRow), weights));
}

/**
 * Converts `n` elements of a type back to float32 with the type's `to_float` trait
 * (`dequantize_row_<type>`, `ggml_fp16_to_fp32_row`, `ggml_bf16_to_fp32_row`; F32 is a copy).
 * @throws {RangeError} when `bytes` is shorter than `n` elements need.
 * @throws {TypeError} when the type has no `to_float`.
 */
export function ggmlDequantize(type: GgmlTypeRef, bytes: Uint8Array, n: number): Float32Array {
  const id = ggmlTypeId(type);
  const need = ggmlRowSize(id, n);
  if (bytes.length < need) {
    throw new RangeError(
      `Cannot dequantize ${n} elements as the input holds ${bytes.length} bytes: ${need} needed`,
    );
  }
  const out = new Float32Array(n);
  if (id === GGML_TYPE_F32) {
    out.set(new Float32Array(bytes.slice(0, need).buffer));
    return out;
  }
  toFloat(id).call(bytes, out, BigInt(n));
  return out;
}

/** `ggml_fp32_to_fp16_row`: float32 → IEEE half bits (RNE, NaN → 0x7E00 with the sign kept). */
export function ggmlFp32ToFp16Row(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  ggmlLibrary().ggml_fp32_to_fp16_row(src, out, BigInt(src.length));
  return out;
}

/** `ggml_fp16_to_fp32_row`: IEEE half bits → float32. */
export function ggmlFp16ToFp32Row(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  ggmlLibrary().ggml_fp16_to_fp32_row(src, out, BigInt(src.length));
  return out;
}

/** `ggml_fp32_to_bf16_row_ref`: float32 → bfloat16 bits (RNE, NaN made quiet with `| 0x40`). */
export function ggmlFp32ToBf16Row(src: Float32Array): Uint16Array {
  const out = new Uint16Array(src.length);
  ggmlLibrary().ggml_fp32_to_bf16_row_ref(src, out, BigInt(src.length));
  return out;
}

/** `ggml_bf16_to_fp32_row`: bfloat16 bits → float32. */
export function ggmlBf16ToFp32Row(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  ggmlLibrary().ggml_bf16_to_fp32_row(src, out, BigInt(src.length));
  return out;
}

function toFloat(id: number): ToFloat {
  const cached = toFloatById.get(id);
  if (cached !== undefined) return cached;
  const traits = ggmlLibrary().ggml_get_type_traits(id);
  const fn = traits === null
    ? null
    : new Deno.UnsafePointerView(traits).getPointer(TRAITS_TO_FLOAT);
  if (fn === null) {
    throw new TypeError(`Cannot dequantize as ggml has no to_float for type: ${typeLabel(id)}`);
  }
  const ptr = new Deno.UnsafeFnPointer(fn as Deno.PointerObject<typeof TO_FLOAT>, TO_FLOAT);
  toFloatById.set(id, ptr);
  return ptr;
}

function rowCount(id: number, src: Float32Array, nPerRow: number): number {
  checkBlocks(id, nPerRow, "quantize a row");
  if (nPerRow <= 0 || src.length % nPerRow !== 0) {
    throw new RangeError(
      `Cannot split the input into rows as ${src.length} elements are not a multiple of ${nPerRow}`,
    );
  }
  return src.length / nPerRow;
}

function checkBlocks(id: number, n: number, action: string): void {
  const block = Number(ggmlLibrary().ggml_blck_size(id));
  if (!Number.isInteger(n) || n < 0 || n % block !== 0) {
    throw new RangeError(
      `Cannot ${action} as its length ${n} is not a multiple of the ${
        typeLabel(id)
      } block: ${block}`,
    );
  }
}

function checkId(id: number): void {
  if (!Number.isInteger(id) || id < 0 || id >= GGML_TYPE_COUNT) {
    throw new RangeError(`Cannot use ggml type ${id} as ids run from 0 to ${GGML_TYPE_COUNT - 1}`);
  }
}

function typeLabel(id: number): string {
  return ggmlTypeName(id) ?? String(id);
}
