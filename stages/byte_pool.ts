/**
 * Reuses the equal-size buffers that sources read tensor bytes into. A fresh big allocation costs
 * page faults and zeroing on every use: gathering 2 GB into fresh 8 MiB buffers took 0.54–0.74 s,
 * into reused ones 0.17 s (1 MiB: 0.48 s against 0.11 s), and the faults add as much again in
 * kernel time.
 *
 * A buffer comes back only through the `release` handed out with it, which the last stage to
 * touch the bytes calls (see `RangeChunk.release`). A stage that never calls it only costs the
 * reuse: the buffer is garbage-collected like any other.
 *
 * @module
 */

/** Bytes from a {@linkcode BytePool}, and how to give them back. */
export interface PooledBytes {
  readonly bytes: Uint8Array;
  /** Returns the buffer for reuse. Call once, when no view of `bytes` is used any more. */
  readonly release: () => void;
}

/**
 * Most bytes kept idle in a pool by default: about the pieces a local run has in flight (4 reads,
 * a few queued between stages), so a buffer given back is not dropped only for a fresh one to be
 * allocated a moment later (H100 NVFP4 without outer scales: 1.94–2.00 GB/s against 1.69 with
 * 32 MiB, `deno task bench gpu 20`).
 */
const IDLE_BYTES = 64 << 20;

function _keep(): void {}

/** A pool of buffers of one capacity. */
export class BytePool {
  readonly #capacity: number;
  readonly #idle: ArrayBuffer[] = [];
  readonly #maxIdle: number;

  /**
   * @param capacity bytes per buffer: the largest piece taken.
   * @param idleBytes most bytes kept for reuse (at least two buffers).
   */
  constructor(capacity: number, idleBytes: number = IDLE_BYTES) {
    this.#capacity = capacity;
    this.#maxIdle = Math.max(2, Math.floor(idleBytes / capacity));
  }

  /** A buffer of `length` ≤ capacity bytes; its contents are whatever was there before. */
  take(length: number): PooledBytes {
    if (length > this.#capacity) {
      throw new RangeError(`Cannot take ${length} bytes from a pool of ${this.#capacity}`);
    }
    // Small pieces (norms, a range's tail) are cheap to allocate and would pin a whole buffer.
    if (length < this.#capacity / 4) return { bytes: new Uint8Array(length), release: _keep };
    const buffer = this.acquire();
    return { bytes: new Uint8Array(buffer, 0, length), release: this.releaser(buffer) };
  }

  /** A whole buffer of the pool's capacity. */
  acquire(): ArrayBuffer {
    return this.#idle.pop() ?? new ArrayBuffer(this.#capacity);
  }

  /**
   * The one-shot release of `buffer` (from {@linkcode acquire}, or the buffer it was transferred
   * to, as a BYOB read does).
   */
  releaser(buffer: ArrayBuffer): () => void {
    let released = false;
    return () => {
      // A second release would hand one buffer to two readers.
      if (released) throw new Error("Cannot release pooled bytes twice");
      released = true;
      // A buffer moved to a worker is detached: nothing to reuse.
      if (buffer.byteLength === this.#capacity && this.#idle.length < this.#maxIdle) {
        this.#idle.push(buffer);
      }
    };
  }

  /** Bytes per buffer. */
  get capacity(): number {
    return this.#capacity;
  }
}
