/**
 * A model folder on the local disk as a {@linkcode ModelSource}: ranges are read sequentially in
 * fixed-size pieces, one piece ahead of the consumer.
 *
 * @module
 */
import { BytePool } from "./byte_pool.ts";
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
    const files = new Map<string, Deno.FsFile>();
    let index = 0;
    let offset = 0;
    const closeAll = () => {
      for (const f of files.values()) f.close();
      files.clear();
    };
    const fileFor = (path: string): Deno.FsFile => {
      let f = files.get(path);
      if (!f) {
        // Keep one file open at a time: ranges come shard by shard.
        closeAll();
        f = Deno.openSync(this.#path(path), { read: true });
        files.set(path, f);
      }
      return f;
    };
    return new ReadableStream<RangeChunk>({
      pull: async (controller) => {
        signal?.throwIfAborted();
        while (index < ranges.length && offset >= ranges[index]!.end - ranges[index]!.start) {
          index++;
          offset = 0;
        }
        if (index >= ranges.length) {
          closeAll();
          controller.close();
          return;
        }
        const range = ranges[index]!;
        const want = Math.min(chunkSize, range.end - range.start - offset);
        const file = fileFor(range.path);
        const { bytes, release } = pool.take(want);
        await file.seek(range.start + offset, Deno.SeekMode.Start);
        let got = 0;
        while (got < want) {
          const n = await file.read(bytes.subarray(got));
          if (n === null) {
            throw new RangeError(
              `Cannot read ${range.path} bytes ${range.start + offset + got}..${
                range.start + offset + want
              } as the file ends early (truncated?)`,
            );
          }
          got += n;
        }
        controller.enqueue({ rangeIndex: index, offset, bytes, release });
        offset += want;
      },
      cancel: closeAll,
    }, { highWaterMark: 2 });
  }
}
