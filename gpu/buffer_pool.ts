/**
 * GPU buffers reused by size class and usage. Sizes round up to a power of two (at least 256
 * bytes), so a stream of chunks of similar size keeps hitting the same few buffers. A buffer goes
 * back to the pool only after the commands using it are submitted: the queue orders later writes
 * after them. The pool keeps at most `maxIdleBytes` idle and destroys the rest.
 *
 * @module
 */

/** Options for {@linkcode BufferPool}. */
export interface BufferPoolOptions {
  /** Idle bytes kept for reuse; buffers released beyond it are destroyed. @default 512 MiB */
  maxIdleBytes?: number;
}

/** Buffers pooled by size class and usage. */
export class BufferPool {
  readonly #device: GPUDevice;
  readonly #idle = new Map<string, GPUBuffer[]>();
  readonly #maxIdle: number;
  #idleBytes = 0;
  #liveBytes = 0;
  #destroyed = 0;

  constructor(device: GPUDevice, options: BufferPoolOptions = {}) {
    this.#device = device;
    this.#maxIdle = options.maxIdleBytes ?? 512 * 1024 * 1024;
  }

  /** Bytes in buffers handed out and not yet released. */
  get liveBytes(): number {
    return this.#liveBytes;
  }

  /** Bytes in idle pooled buffers. */
  get idleBytes(): number {
    return this.#idleBytes;
  }

  /** Buffers this pool has destroyed so far: objects that cache bindings of its buffers drop them when it changes. */
  get destroyed(): number {
    return this.#destroyed;
  }

  /** A buffer of at least `size` bytes with exactly this usage. */
  acquire(size: number, usage: GPUBufferUsageFlags, label: string): GPUBuffer {
    const bytes = Math.max(256, 2 ** Math.ceil(Math.log2(Math.max(1, size))));
    let buffer = this.#idle.get(`${usage}:${bytes}`)?.pop();
    if (buffer === undefined) {
      buffer = this.#device.createBuffer({ size: bytes, usage, label });
    } else {
      this.#idleBytes -= bytes;
    }
    this.#liveBytes += bytes;
    return buffer;
  }

  /** Returns a buffer for reuse (after the commands using it were submitted). */
  release(buffer: GPUBuffer): void {
    this.#liveBytes -= buffer.size;
    if (this.#idleBytes + buffer.size > this.#maxIdle) {
      buffer.destroy();
      this.#destroyed++;
      return;
    }
    const key = `${buffer.usage}:${buffer.size}`;
    const list = this.#idle.get(key);
    if (list === undefined) this.#idle.set(key, [buffer]);
    else list.push(buffer);
    this.#idleBytes += buffer.size;
  }

  /** Destroys every idle buffer. */
  clear(): void {
    for (const list of this.#idle.values()) {
      for (const b of list) b.destroy();
      this.#destroyed += list.length;
    }
    this.#idle.clear();
    this.#idleBytes = 0;
  }
}
