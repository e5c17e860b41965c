/**
 * Faults the test Hub server injects, and the file body stream that carries the byte-level ones
 * (dropped connection, stall, trickle, truncation).
 *
 * @module
 */

/** One misbehaviour of the server. */
export type HubFault =
  /**
   * Answer this status instead (429, 500, 503...), with `Retry-After` seconds when given. With
   * `echo`, the JSON error repeats the request's `Authorization` header, as a careless proxy might.
   */
  | {
    readonly kind: "status";
    readonly status: number;
    readonly retryAfter?: number;
    readonly echo?: boolean;
  }
  /** Break the connection after this many body bytes (Content-Length promised more). */
  | { readonly kind: "drop"; readonly afterBytes: number }
  /** Send nothing for `ms` after this many body bytes, then go on. */
  | { readonly kind: "stall"; readonly afterBytes: number; readonly ms: number }
  /** Send `bytesPerTick` bytes every `tickMs`. */
  | { readonly kind: "trickle"; readonly bytesPerTick: number; readonly tickMs: number }
  /** End the body cleanly after this many bytes: Content-Length says so, Content-Range does not. */
  | { readonly kind: "truncate"; readonly afterBytes: number }
  /** Declare `Content-Length` off by `delta` from the bytes of the range. */
  | { readonly kind: "wrongLength"; readonly delta: number }
  /** Answer with another ETag (and flipped bytes): the file changed. */
  | { readonly kind: "changed" }
  /** Answer with another `X-Repo-Commit`. */
  | { readonly kind: "commit"; readonly commit: string }
  /** The CDN refuses the signed link (403), as when it expired. */
  | { readonly kind: "expired" };

/** Which answers a rule may hit. `data`: any answer carrying file bytes (resolve or CDN). */
export type HubFaultTarget = "api" | "resolve" | "cdn" | "data";

/** When a fault applies. */
export interface HubFaultRule {
  readonly fault: HubFault;
  /** Kind of request; any when absent. */
  readonly on?: HubFaultTarget;
  /** File path in the repo; any when absent. */
  readonly path?: string;
  /** HTTP method; any when absent. */
  readonly method?: string;
  /** Only requests for at least this many file bytes (the Range's length, or the file's size). */
  readonly minLength?: number;
  /** Matching requests let through first. @default 0 */
  readonly skip?: number;
  /** Matching requests that get the fault. @default 1 */
  readonly times?: number;
}

/** Byte-level behaviour of one body. */
export interface BodyPlan {
  /** Bytes to send before closing (fewer than the range means a truncated body). */
  readonly send: number;
  readonly stallAfter?: number;
  readonly stallMs?: number;
  readonly trickle?: { readonly bytesPerTick: number; readonly tickMs: number };
  /** XOR mask applied to every byte (the "changed" file). */
  readonly flip?: number;
}

const CHUNK = 256 << 10;

/** A body stream of file bytes `[start, ...)`, read from disk lazily. */
export class FileBodyStream {
  readonly stream: ReadableStream<Uint8Array>;
  #file: Deno.FsFile | null = null;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #wakeUp: (() => void) | null = null;
  #closed = false;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;

  /**
   * @param onBytes Counts bytes sent.
   * @param onEnd Called once when the body ends, errs or is cancelled.
   */
  constructor(
    file: string,
    start: number,
    plan: BodyPlan,
    onBytes: (n: number) => void,
    onEnd: () => void,
  ) {
    let sent = 0;
    let stalled = false;
    const end = () => {
      this.#release();
      onEnd();
    };
    this.stream = new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
      },
      pull: async (controller) => {
        try {
          if (sent >= plan.send) {
            end();
            controller.close();
            return;
          }
          let n = Math.min(CHUNK, plan.send - sent);
          if (plan.stallAfter !== undefined && !stalled) {
            if (sent >= plan.stallAfter) {
              stalled = true;
              await this.#sleep(plan.stallMs ?? 0);
            } else n = Math.min(n, plan.stallAfter - sent);
          }
          if (plan.trickle) {
            await this.#sleep(plan.trickle.tickMs);
            n = Math.min(n, plan.trickle.bytesPerTick);
          }
          if (this.#closed) return;
          this.#file ??= await this.#open(file, start);
          const bytes = new Uint8Array(n);
          for (let got = 0; got < n;) {
            const read = await this.#file.read(bytes.subarray(got));
            if (read === null) throw new RangeError(`Cannot serve ${file} as it ended early`);
            got += read;
          }
          if (plan.flip !== undefined) { for (let i = 0; i < n; i++) bytes[i]! ^= plan.flip; }
          if (this.#closed) return;
          sent += n;
          onBytes(n);
          controller.enqueue(bytes);
        } catch (error) {
          if (this.#closed) return;
          end();
          controller.error(error);
        }
      },
      cancel: end,
    });
  }

  /** Ends the body early (server shutdown): frees the file and timers. */
  abort(): void {
    if (this.#closed) return;
    this.#release();
    try {
      this.#controller?.close();
    } catch {
      // already closed or errored
    }
  }

  async #open(path: string, start: number): Promise<Deno.FsFile> {
    const file = await Deno.open(path, { read: true });
    await file.seek(start, Deno.SeekMode.Start);
    if (this.#closed) {
      file.close();
      throw new Error("closed");
    }
    return file;
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wakeUp = resolve;
      this.#timer = setTimeout(resolve, ms);
    });
  }

  #release(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#wakeUp?.();
    this.#file?.close();
    this.#file = null;
  }
}
