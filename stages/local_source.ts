/**
 * A model folder on the local disk as a {@linkcode ModelSource}: ranges are read in order in
 * fixed-size pieces into reused buffers, a few reads in flight ahead of the consumer.
 *
 * @module
 */
import { BytePool, type PooledBytes } from "./byte_pool.ts";
import type { ByteRange, ModelSource, RangeChunk, ReadRangesOptions } from "../pipeline/source.ts";

const DEFAULT_CHUNK = 8 << 20;

/** Reads a model from a local directory. */
export class LocalSource implements ModelSource {
  readonly label: string;
  readonly #dir: string;

  constructor(dir: string) {
    this.#dir = dir.replace(/\/+$/, "") || "/";
    this.label = this.#dir;
  }

  #path(path: string): string {
    return `${this.#dir}/${path}`;
  }

  localPath(path: string): string {
    return this.#path(path);
  }

  async list(): Promise<string[]> {
    const out: string[] = [];
    const walk = async (rel: string): Promise<void> => {
      for await (const e of Deno.readDir(this.#path(rel) || ".")) {
        const p = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory) await walk(p);
        else if (e.isFile || e.isSymlink) out.push(p);
      }
    };
    await walk("");
    return out.sort();
  }

  async readFile(path: string): Promise<Uint8Array | null> {
    try {
      return await Deno.readFile(this.#path(path));
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  }

  async size(path: string): Promise<number> {
    return (await Deno.stat(this.#path(path))).size;
  }

  readRanges(
    ranges: readonly ByteRange[],
    options: ReadRangesOptions = {},
  ): ReadableStream<RangeChunk> {
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK;
    const signal = options.signal;
    const pool = new BytePool(chunkSize);
    const handles = new _Handles((path) => this.#path(path));
    const reads = _readsInFlight(chunkSize);
    let index = 0;
    let offset = 0;
    /** Reads started, in order; each settles to its chunk. */
    const inFlight: Promise<RangeChunk>[] = [];
    const startReads = () => {
      while (inFlight.length < reads) {
        while (index < ranges.length && offset >= ranges[index]!.end - ranges[index]!.start) {
          index++;
          offset = 0;
        }
        if (index >= ranges.length) return;
        const range = ranges[index]!;
        const want = Math.min(chunkSize, range.end - range.start - offset);
        const read = _readChunk(handles, range, index, offset, pool.take(want));
        read.catch(() => {}); // rejected reads are rethrown in order, by pull
        inFlight.push(read);
        offset += want;
      }
    };
    const settle = async () => {
      await Promise.allSettled(inFlight.splice(0));
      handles.closeAll();
    };
    return new ReadableStream<RangeChunk>({
      pull: async (controller) => {
        signal?.throwIfAborted();
        startReads();
        const next = inFlight.shift();
        if (next === undefined) {
          handles.closeAll();
          controller.close();
          return;
        }
        try {
          controller.enqueue(await next);
        } catch (e) {
          await settle();
          throw e;
        }
        startReads();
      },
      cancel: settle,
      // The reads in flight are the read-ahead: nothing more is queued.
    }, { highWaterMark: 0 });
  }
}

/**
 * Reads in flight at once: up to 4, and up to 16 MiB. One read at a time left the disk idle
 * whenever the main thread was busy between a read's end and the next pull (NVFP4 on an H100:
 * each 8 MiB read took 6.2 ms in the converter against 2.6 ms alone, and reading spanned the whole
 * run); more bytes ahead left them to cool in memory before the GPU upload copied them. NVFP4
 * `full` + imatrix with outer scales on an H100, 8 MiB pieces (`bench/gpu_convert_trace.ts`,
 * interleaved runs on one machine): 2 reads 2.28–2.72 GB/s (six runs, median 2.58), 4 reads
 * 1.93–2.50 (six, median 2.35), 3 reads 2.41–2.59, 1 read 2.13–2.30, 8 reads 2.26–2.34 (three
 * each); `deno task bench gpu 20` there: 2.48 GB/s with 398 MiB peak RSS against 2.42 with 540.
 */
const MAX_READS_IN_FLIGHT = 4;
const MAX_READ_AHEAD_BYTES = 16 << 20;

function _readsInFlight(chunkSize: number): number {
  return Math.max(1, Math.min(MAX_READS_IN_FLIGHT, Math.floor(MAX_READ_AHEAD_BYTES / chunkSize)));
}

/** Open files, each used by one read at a time; files of earlier shards are closed. */
class _Handles {
  readonly #resolve: (path: string) => string;
  #path = "";
  #idle: Deno.FsFile[] = [];

  constructor(resolve: (path: string) => string) {
    this.#resolve = resolve;
  }

  async take(path: string): Promise<Deno.FsFile> {
    if (path !== this.#path) {
      // Ranges come shard by shard: the previous shard's files are done once idle.
      for (const f of this.#idle) f.close();
      this.#idle = [];
      this.#path = path;
    }
    return this.#idle.pop() ?? await Deno.open(this.#resolve(path), { read: true });
  }

  give(path: string, file: Deno.FsFile): void {
    if (path === this.#path) this.#idle.push(file);
    else file.close();
  }

  closeAll(): void {
    for (const f of this.#idle) f.close();
    this.#idle = [];
  }
}

async function _readChunk(
  handles: _Handles,
  range: ByteRange,
  rangeIndex: number,
  offset: number,
  target: PooledBytes,
): Promise<RangeChunk> {
  const { bytes, release } = target;
  const file = await handles.take(range.path);
  try {
    await file.seek(range.start + offset, Deno.SeekMode.Start);
    let got = 0;
    while (got < bytes.length) {
      const n = await file.read(bytes.subarray(got));
      if (n === null) {
        throw new RangeError(
          `Cannot read ${range.path} bytes ${range.start + offset + got}..${
            range.start + offset + bytes.length
          } as the file ends early (truncated?)`,
        );
      }
      got += n;
    }
  } finally {
    handles.give(range.path, file);
  }
  return { rangeIndex, offset, bytes, release };
}
