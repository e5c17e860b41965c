/**
 * Where model files come from. A source serves small whole files (config, tokenizer) and streams
 * an ordered list of byte ranges of large files (tensor data), doing its own read-ahead within a
 * memory budget. The local folder and the Hugging Face Hub are the two sources.
 *
 * @module
 */

/** Bytes `[start, end)` of one file of the model. */
export interface ByteRange {
  /** File path relative to the model root, `/`-separated. */
  readonly path: string;
  readonly start: number;
  readonly end: number;
}

/** A piece of one requested range; pieces of a range arrive in order and cover it exactly. */
export interface RangeChunk {
  /** Index of the range in the list passed to {@linkcode ModelSource.readRanges}. */
  readonly rangeIndex: number;
  /** Offset of `bytes` from the start of the range. */
  readonly offset: number;
  readonly bytes: Uint8Array;
  /**
   * Present when `bytes` lives in a reused buffer: whichever stage touches the bytes last calls
   * it once, after which no view of them may be used. Never calling it is safe.
   */
  readonly release?: () => void;
}

/** Options for {@linkcode ModelSource.readRanges}. */
export interface ReadRangesOptions {
  /** Largest piece to emit, in bytes. @default 8 MiB */
  chunkSize?: number;
  /** Stops reading and errors the stream. */
  signal?: AbortSignal;
}

/** A model folder, local or remote. */
export interface ModelSource {
  /** Where the model lives, for messages (a path, or `hf:owner/name@commit`). Never has a token. */
  readonly label: string;
  /** Every file path of the model, relative to its root. */
  list(): Promise<string[]>;
  /** A whole small file, or null when the model has no such file. */
  readFile(path: string): Promise<Uint8Array | null>;
  /**
   * The file's path on this machine, for a source that is a local folder: lets the sink copy
   * unchanged bytes file to file. Absent for remote sources.
   */
  localPath?(path: string): string;
  /** The size of a file in bytes. Throws when the file does not exist. */
  size(path: string): Promise<number>;
  /**
   * Streams the ranges in the order given. Pieces of range i all arrive before any piece of range
   * i+1. A source may fetch ahead, but never holds more than its memory budget.
   */
  readRanges(ranges: readonly ByteRange[], options?: ReadRangesOptions): ReadableStream<RangeChunk>;
}
