/**
 * Downloads parts over several connections and emits their bytes strictly in order, within a
 * byte budget: a part is started only when its whole size fits in the budget, and its bytes leave
 * the budget as the consumer takes them. The stream pulls (high-water mark 0), so a slow consumer
 * stops new downloads instead of growing a buffer.
 *
 * @module
 */
import { BytePool } from "../byte_pool.ts";
import type { RangeChunk } from "../../pipeline/source.ts";
import { PartBuffer, type PartSink } from "./part_buffer.ts";
import type { RangePart } from "./range_parts.ts";

/** Downloads one part into the sink, retrying as it sees fit; rejects to fail the stream. */
export type FetchPart = (part: RangePart, sink: PartSink, signal: AbortSignal) => Promise<void>;

/** Memory counters of the read-ahead, updated in place while it runs. */
export interface ReadAheadStats {
  /** Bytes received and not yet handed to the consumer. */
  bufferedBytes: number;
  maxBufferedBytes: number;
  /** Bytes of started parts not yet handed to the consumer (received or not). */
  reservedBytes: number;
  maxReservedBytes: number;
}

/** Options for {@linkcode orderedReadAhead}. */
export interface ReadAheadOptions {
  /** Parts downloading at once. */
  connections: number;
  /** Budget for reserved bytes; every part must fit in it. */
  maxMemory: number;
  /** Largest piece emitted. */
  chunkSize: number;
  /** Aborting errors the stream with the signal's reason and stops every download. */
  signal?: AbortSignal;
  /** Counters to update; a fresh object when absent. */
  stats?: ReadAheadStats;
}

/** Creates counters at zero. */
export function emptyReadAheadStats(): ReadAheadStats {
  return { bufferedBytes: 0, maxBufferedBytes: 0, reservedBytes: 0, maxReservedBytes: 0 };
}

/**
 * Streams the bytes of `parts` as {@linkcode RangeChunk}s, in order, fetching up to `connections`
 * parts at once within `maxMemory`.
 *
 * @throws {RangeError} (synchronously) when options are out of range or a part exceeds the budget.
 */
export function orderedReadAhead(
  parts: readonly RangePart[],
  fetchPart: FetchPart,
  options: ReadAheadOptions,
): ReadableStream<RangeChunk> {
  const { connections, maxMemory, chunkSize, signal } = options;
  for (const [key, value] of Object.entries({ connections, maxMemory, chunkSize })) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new RangeError(`Cannot read ahead as ${key} is not a positive integer: ${value}`);
    }
  }
  // Pieces land in reused buffers of this size, copied into straight from the network. The pool
  // keeps as many idle as the budget holds: it never allocates while one is idle, so it owns no
  // more than were once in use together, and a consumer that gives back a part's pieces in a
  // burst does not make it drop buffers only to fault in fresh ones a moment later. (A 2 GB Hub
  // conversion in 2 MiB pieces allocated 242 fresh buffers and dropped 224 with 32 MiB idle; with
  // the budget idle, `perf` counted about a tenth less CPU; ad hoc peak RSS 321–339 against
  // 271–303 MiB.)
  const pool = new BytePool(chunkSize, maxMemory);
  for (const part of parts) {
    if (part.end - part.start > maxMemory) {
      throw new RangeError(
        `Cannot read ahead as a part is larger than the memory budget: ${part.path} ${part.start}..${part.end}, budget ${maxMemory} bytes`,
      );
    }
  }
  const stats = options.stats ?? emptyReadAheadStats();
  /** Landing buffers of started parts, and which parts have finished downloading. */
  const buffers: (PartBuffer | null)[] = parts.map(() => null);
  const done: boolean[] = parts.map(() => false);
  const abort = new AbortController();
  let failure: { reason: unknown } | null = null;
  let finished = false;
  let next = 0;
  let active = 0;
  let head = 0;
  let waiters: (() => void)[] = [];
  // This stream's own counters; `stats` may be shared by several streams of one source.
  let reserved = 0;
  let buffered = 0;
  const account = (reserve: number, buffer: number) => {
    reserved += reserve;
    buffered += buffer;
    stats.reservedBytes += reserve;
    stats.bufferedBytes += buffer;
    stats.maxReservedBytes = Math.max(stats.maxReservedBytes, stats.reservedBytes);
    stats.maxBufferedBytes = Math.max(stats.maxBufferedBytes, stats.bufferedBytes);
  };

  const notify = () => {
    const woken = waiters;
    waiters = [];
    for (const wake of woken) wake();
  };
  const changed = () => new Promise<void>((resolve) => waiters.push(resolve));
  const release = (n: number) => account(-n, -n);
  const fail = (reason: unknown) => {
    if (failure !== null || finished) return;
    failure = { reason };
    abort.abort(reason);
    notify();
  };
  const onAbort = () => fail(signal?.reason);
  const finish = () => {
    finished = true;
    signal?.removeEventListener("abort", onAbort);
    buffers.fill(null);
    account(-reserved, -buffered);
  };

  const start = (index: number) => {
    const part = parts[index]!;
    const size = part.end - part.start;
    active++;
    account(size, 0);
    const buffer = new PartBuffer(part, pool, (delta) => {
      account(0, delta);
      if (delta > 0 && index === head) notify();
    });
    buffers[index] = buffer;
    fetchPart(part, buffer, abort.signal).then(() => {
      active--;
      if (failure !== null || finished) return;
      if (buffer.position !== size) {
        fail(
          new RangeError(
            `Cannot finish ${part.path} ${part.start}..${part.end} as ${buffer.position} of ${size} bytes arrived`,
          ),
        );
        return;
      }
      done[index] = true;
      notify();
      pump();
    }, (reason) => {
      active--;
      fail(reason);
      notify();
    });
  };

  const pump = () => {
    while (failure === null && !finished && next < parts.length && active < connections) {
      const size = parts[next]!.end - parts[next]!.start;
      if (reserved > 0 && reserved + size > maxMemory) return;
      start(next++);
    }
  };

  /** The next piece of the head part, "advance" when the head part is done, or "wait". */
  const step = (): RangeChunk | "advance" | "wait" => {
    const buffer = buffers[head];
    if (!buffer) return "wait";
    for (;;) {
      const out = buffer.next();
      if (out === null) return buffer.drained && done[head] ? "advance" : "wait";
      if ("gap" in out) {
        release(out.gap);
        continue;
      }
      release(out.chunk.bytes.length);
      return out.chunk;
    }
  };

  return new ReadableStream<RangeChunk>({
    start() {
      if (signal?.aborted) return fail(signal.reason);
      signal?.addEventListener("abort", onAbort, { once: true });
      pump();
    },
    async pull(controller) {
      for (;;) {
        if (failure !== null) {
          // Let aborted downloads settle so nothing runs once the stream has errored.
          while (active > 0) await changed();
          finish();
          throw failure.reason;
        }
        if (head >= parts.length) {
          finish();
          controller.close();
          return;
        }
        const out = step();
        if (out === "advance") {
          buffers[head++] = null;
          continue;
        }
        if (out === "wait") {
          await changed();
          continue;
        }
        controller.enqueue(out);
        pump();
        return;
      }
    },
    async cancel(reason) {
      fail(reason ?? new DOMException("The range stream was cancelled", "AbortError"));
      while (active > 0) await changed();
      finish();
    },
  }, { highWaterMark: 0 });
}
