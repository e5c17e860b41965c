/**
 * Typed GGUF metadata values. llama.cpp checks the GGUF type of every key it reads, so each value
 * carries its exact type rather than a JavaScript guess.
 *
 * @module
 */

/** GGUF value type ids (`enum gguf_type`). */
export const GGUF_VALUE_TYPE = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;

/** A GGUF type name that holds a JavaScript number. */
export type GgufNumberType = "u8" | "i8" | "u16" | "i16" | "u32" | "i32" | "f32" | "f64";
/** A GGUF type name that holds a bigint. */
export type GgufBigIntType = "u64" | "i64";

/** One metadata value with its GGUF type. */
export type GgufValue =
  | { readonly type: GgufNumberType; readonly value: number }
  | { readonly type: GgufBigIntType; readonly value: bigint }
  | { readonly type: "bool"; readonly value: boolean }
  | { readonly type: "string"; readonly value: string }
  | { readonly type: "array"; readonly itemType: GgufNumberType; readonly value: ArrayLike<number> }
  | { readonly type: "array"; readonly itemType: "string"; readonly value: readonly string[] }
  | { readonly type: "array"; readonly itemType: "bool"; readonly value: readonly boolean[] };

/** Ordered metadata: insertion order is file order. */
export type GgufMetadata = Map<string, GgufValue>;

/** Shorthands that keep metadata tables readable. */
export const gv = {
  u32: (value: number): GgufValue => ({ type: "u32", value }),
  i32: (value: number): GgufValue => ({ type: "i32", value }),
  u16: (value: number): GgufValue => ({ type: "u16", value }),
  f32: (value: number): GgufValue => ({ type: "f32", value }),
  bool: (value: boolean): GgufValue => ({ type: "bool", value }),
  str: (value: string): GgufValue => ({ type: "string", value }),
  strings: (value: readonly string[]): GgufValue => ({ type: "array", itemType: "string", value }),
  i32s: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "i32", value }),
  f32s: (value: ArrayLike<number>): GgufValue => ({ type: "array", itemType: "f32", value }),
} as const;
