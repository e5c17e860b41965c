/**
 * Errors of imatrix reading. Every message names the file and, where there is one, the entry.
 *
 * @module
 */

/** How a message names what it is about: an entry of a file, or the file. */
export function imatrixSubject(file: string, entry: string | null): string {
  return entry === null ? `imatrix ${file}` : `imatrix entry ${entry} of ${file}`;
}

/** An imatrix file that is truncated, malformed, or holds a value llama-quantize would reject. */
export class ImatrixError extends SyntaxError {
  readonly file: string;
  /** The entry (a GGUF tensor name) at fault, or null when the file as a whole is. */
  readonly entry: string | null;
  constructor(file: string, entry: string | null, message: string) {
    super(message);
    this.name = "ImatrixError";
    this.file = file;
    this.entry = entry;
  }
}

/** An imatrix entry whose length does not fit the tensor it is asked for (llama-quantize aborts). */
export class ImatrixSizeError extends RangeError {
  readonly file: string;
  readonly entry: string;
  /** Values the tensor needs: ne[0] · number of matrices. */
  readonly expected: number;
  /** Values the entry holds. */
  readonly actual: number;
  constructor(file: string, entry: string, expected: number, actual: number, shape: string) {
    super(
      `Cannot use ${imatrixSubject(file, entry)} as its size does not match the tensor: ` +
        `${actual} values, the tensor needs ${expected} (${shape})`,
    );
    this.name = "ImatrixSizeError";
    this.file = file;
    this.entry = entry;
    this.expected = expected;
    this.actual = actual;
  }
}
