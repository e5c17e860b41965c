/**
 * A small pool of workers for the CPU-bound part of encoding (Q8_0), so a conversion
 * uses more than one core while the main thread keeps reading and writing. Jobs go to the least
 * busy worker; answers come back as promises, in any order (callers keep their own order).
 *
 * @module
 */
import type { FloatDtype } from "./float_codecs.ts";
import type { EncodeJob, EncodeReply } from "./encode_worker.ts";

/** Workers to start: one per core beyond the main thread, at least one, at most four. */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(4, (navigator.hardwareConcurrency ?? 2) - 1));
}

interface _Pending {
  resolve: (r: { out: Uint8Array; value: number }) => void;
  reject: (e: Error) => void;
}

/**
 * Encoding workers, started as jobs need them: a new one only when every running one is busy,
 * up to `size`. Starting a worker blocks the calling thread for 12–38 ms (measured here), which
 * a model with only a few CPU pieces (say, token_embd before a GPU run) should not pay four
 * times. Call {@linkcode EncoderPool.close} when done; a pool that never got a job holds nothing.
 */
export class EncoderPool {
  readonly #size: number;
  readonly #workers: Worker[] = [];
  readonly #busy: number[] = [];
  readonly #pending = new Map<number, _Pending & { worker: number }>();
  #next = 0;

  constructor(size: number = defaultWorkers()) {
    this.#size = Math.max(1, size);
  }

  /** Whether a worker runs already (the next job then costs no start). */
  get started(): boolean {
    return this.#workers.length > 0;
  }

  #start(): number {
    const i = this.#workers.length;
    const worker = new Worker(new URL("./encode_worker.ts", import.meta.url).href, {
      type: "module",
    });
    worker.onmessage = (e: MessageEvent<EncodeReply>) => this.#answer(e.data);
    worker.onerror = (e) => {
      e.preventDefault();
      for (const [id, p] of this.#pending) {
        if (p.worker !== i) continue;
        this.#pending.delete(id);
        p.reject(new Error(`Cannot encode as a worker failed: ${e.message}`));
      }
    };
    this.#workers.push(worker);
    this.#busy.push(0);
    return i;
  }

  #answer(reply: EncodeReply): void {
    const p = this.#pending.get(reply.id);
    if (!p) return;
    this.#pending.delete(reply.id);
    this.#busy[p.worker]!--;
    if ("error" in reply) p.reject(new Error(reply.error));
    else p.resolve({ out: reply.out, value: reply.value });
  }

  #post(dtype: FloatDtype, bytes: Uint8Array) {
    let w = 0;
    for (let i = 1; i < this.#workers.length; i++) if (this.#busy[i]! < this.#busy[w]!) w = i;
    const idle = this.#workers.length > 0 && this.#busy[w] === 0;
    if (!idle && this.#workers.length < this.#size) w = this.#start();
    const id = this.#next++;
    this.#busy[w]!++;
    return new Promise<{ out: Uint8Array; value: number }>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, worker: w });
      // Structured clone copies the bytes: the caller's buffer may back other pieces.
      this.#workers[w]!.postMessage({ id, dtype, bytes } satisfies EncodeJob);
    });
  }

  /** Q8_0 of whole rows; `bad` is the first NaN/Inf element or -1. */
  async q8_0(dtype: FloatDtype, bytes: Uint8Array): Promise<{ out: Uint8Array; bad: number }> {
    const r = await this.#post(dtype, bytes);
    return { out: r.out, bad: r.value };
  }

  /** Stops the workers; jobs still running are rejected. */
  close(): void {
    for (const w of this.#workers) w.terminate();
    for (const p of this.#pending.values()) p.reject(new Error("Cannot encode as the pool closed"));
    this.#pending.clear();
  }
}
