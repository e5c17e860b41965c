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
import type { RangePart } from "./range_parts.ts";

/** Receives the bytes of a part, in order, exactly `end - start` of them in total. */
export type PartSink = (bytes: Uint8Array) => void;

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

interface _PartState {
  readonly queue: Uint8Array[];
  queued: number;
  received: number;
  done: boolean;
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
  // Network chunks are small (≤ 64 KiB on loopback): pieces are gathered into reused buffers.
  const pool = new BytePool(chunkSize);
  for (const part of parts) {
    if (part.end - part.start > maxMemory) {
      throw new RangeError(
        `Cannot read ahead as a part is larger than the memory budget: ${part.path} ${part.start}..${part.end}, budget ${maxMemory} bytes`,
      );
    }
  }
  const stats = options.stats ?? emptyReadAheadStats();
  const states: _PartState[] = parts.map(() => ({
    queue: [],
    queued: 0,
    received: 0,
    done: false,
  }));
  const abort = new AbortController();
  let failure: { reason: unknown } | null = null;
  let finished = false;
  let next = 0;
  let active = 0;
  let head = 0;
  let slice = 0;
  let pos = parts[0]?.start ?? 0;
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
    for (const state of states) state.queue.length = 0;
    account(-reserved, -buffered);
  };

  const start = (index: number) => {
    const part = parts[index]!;
    const state = states[index]!;
    const size = part.end - part.start;
    active++;
    account(size, 0);
    const sink: PartSink = (bytes) => {
      if (failure !== null || finished || bytes.length === 0) return;
      if (state.received + bytes.length > size) {
        fail(
          new RangeError(
            `Cannot accept bytes of ${part.path} as the part would exceed ${size} bytes`,
          ),
        );
        return;
      }
      state.queue.push(bytes);
      state.queued += bytes.length;
      state.received += bytes.length;
      account(0, bytes.length);
      if (index === head) notify();
    };
    fetchPart(part, sink, abort.signal).then(() => {
      active--;
      if (state.received !== size) {
        fail(
          new RangeError(
            `Cannot finish ${part.path} ${part.start}..${part.end} as ${state.received} of ${size} bytes arrived`,
          ),
        );
        return;
      }
      state.done = true;
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

  /** Takes `n` queued bytes of a part, copying only when they span several network chunks. */
  const take = (state: _PartState, n: number): { bytes: Uint8Array; release?: () => void } => {
    state.queued -= n;
    const first = state.queue[0]!;
    if (first.length >= n) {
      if (first.length === n) state.queue.shift();
      else state.queue[0] = first.subarray(n);
      return { bytes: first.subarray(0, n) };
    }
    const { bytes: out, release } = pool.take(n);
    for (let at = 0; at < n;) {
      const chunk = state.queue[0]!;
      const use = Math.min(chunk.length, n - at);
      out.set(chunk.subarray(0, use), at);
      at += use;
      if (use === chunk.length) state.queue.shift();
      else state.queue[0] = chunk.subarray(use);
    }
    return { bytes: out, release };
  };

  /** The next chunk of the head part, "advance" when the head part is done, or "wait". */
  const step = (): RangeChunk | "advance" | "wait" => {
    const part = parts[head]!;
    const state = states[head]!;
    while (slice < part.slices.length) {
      const s = part.slices[slice]!;
      if (pos >= s.fileEnd) {
        slice++;
        continue;
      }
      if (state.queued === 0) return "wait";
      if (pos < s.fileStart) {
        const gap = Math.min(s.fileStart - pos, state.queued);
        take(state, gap).release?.();
        release(gap);
        pos += gap;
        continue;
      }
      // Emit big pieces: downstream cost is per piece (one write per piece), network chunks are
      // small. Wait for a whole piece unless the part has finished arriving.
      const want = Math.min(s.fileEnd - pos, chunkSize);
      if (state.queued < want && !state.done) return "wait";
      const n = Math.min(want, state.queued);
      const chunk = {
        rangeIndex: s.rangeIndex,
        offset: s.rangeOffset + pos - s.fileStart,
        ...take(state, n),
      };
      release(n);
      pos += n;
      return chunk;
    }
    if (!state.done) return "wait";
    head++;
    slice = 0;
    pos = parts[head]?.start ?? 0;
    return "advance";
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
        if (out === "advance") continue;
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
