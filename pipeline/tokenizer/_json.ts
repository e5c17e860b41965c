/**
 * Small helpers for reading the JSON files of a Hugging Face model folder, and for reproducing
 * Python's truthiness where llama.cpp's converter relies on it.
 *
 * @module
 */

/** A parsed JSON object. */
export type JsonRecord = Readonly<Record<string, unknown>>;

/** True for a plain JSON object (not an array, not null). */
export function isRecord(value: unknown): value is JsonRecord {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Text of a file given either as text or as UTF-8 bytes. */
export function fileText(content: string | Uint8Array): string {
  return typeof content === "string" ? content : new TextDecoder().decode(content);
}

/**
 * Parses a JSON file that must hold an object.
 * @throws {SyntaxError} naming the file when it is not JSON or not an object.
 */
export function parseJsonObject(content: string | Uint8Array, file: string): JsonRecord {
  let value: unknown;
  try {
    value = JSON.parse(fileText(content));
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new SyntaxError(`Cannot parse ${file} as it is not valid JSON: ${reason}`);
  }
  if (!isRecord(value)) {
    throw new SyntaxError(`Cannot read ${file} as it does not hold a JSON object`);
  }
  return value;
}

/**
 * Python's truthiness for a JSON value: null, false, 0, "", [] and {} are false. The converter
 * writes `if not x:` in many places, and `{}` is true in JavaScript but false in Python.
 */
export function pyTruthy(value: unknown): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === "") {
    return false;
  }
  if (Array.isArray(value)) return value.length > 0;
  if (isRecord(value)) return Object.keys(value).length > 0;
  return true;
}

/** `value[key]` when value is an object, else undefined (Python's `d.get(key)` on a dict). */
export function field(value: unknown, key: string): unknown {
  return isRecord(value) ? value[key] : undefined;
}

/** A JSON number that is a non-negative safe integer, else null. */
export function tokenIdOf(value: unknown): number | null {
  return typeof value === "number" && Number.isSafeInteger(value) && value >= 0 ? value : null;
}
