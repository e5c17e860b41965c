/**
 * Aborts a request that stops making progress: no headers, or no body byte, for a while. One timer
 * per request, re-armed lazily, so touching it per network chunk costs nothing.
 *
 * @module
 */

/** Aborts `signal` when {@linkcode StallWatchdog.touch} is not called for `timeoutMs`. */
export class StallWatchdog implements Disposable {
  readonly #controller = new AbortController();
  readonly #parent: AbortSignal;
  readonly #timeoutMs: number;
  readonly #onParentAbort = () => this.#controller.abort(this.#parent.reason);
  #last = Date.now();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #stalled = false;

  /**
   * @param parent Aborting it aborts {@linkcode StallWatchdog.signal} too.
   * @param timeoutMs Longest time without progress.
   */
  constructor(parent: AbortSignal, timeoutMs: number) {
    this.#parent = parent;
    this.#timeoutMs = timeoutMs;
    if (parent.aborted) this.#controller.abort(parent.reason);
    else parent.addEventListener("abort", this.#onParentAbort, { once: true });
    this.#arm(timeoutMs);
  }

  /** For the request: aborted by the parent or on a stall. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Whether the watchdog (not the parent) aborted. */
  get stalled(): boolean {
    return this.#stalled;
  }

  /** Records progress. */
  touch(): void {
    this.#last = Date.now();
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      const idle = Date.now() - this.#last;
      if (idle < this.#timeoutMs) return this.#arm(this.#timeoutMs - idle);
      this.#timer = undefined;
      this.#stalled = true;
      this.#controller.abort(new DOMException(`No progress for ${idle} ms`, "TimeoutError"));
    }, ms);
  }

  [Symbol.dispose](): void {
    clearTimeout(this.#timer);
    this.#parent.removeEventListener("abort", this.#onParentAbort);
  }
}
