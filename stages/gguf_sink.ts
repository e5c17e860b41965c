/**
 * Writes a planned GGUF incrementally: header first, then each tensor's bytes in plan order with
 * alignment padding, checking that every tensor fills exactly the size the header declared. The
 * file is written as `<out>.partial`, synced and renamed only when complete, and removed on any
 * error, so a half-written file never looks finished.
 *
 * @module
 */
import type { GgufLayout } from "../pipeline/gguf_header.ts";
import type { EncodedPiece, SourceBytes } from "./tensor_piece.ts";
import { type KernelOutput, openKernelOutput } from "./kernel_output.ts";

/** Called after each write with the bytes written so far. */
export type SinkProgress = (written: number, tensor: number) => void;

/** Options for {@linkcode GgufSink}. */
export interface GgufSinkOptions {
  /** Tensor names, for messages. */
  names: readonly string[];
  onProgress?: SinkProgress;
  /**
   * Resolves a model file to its local path. Given, bytes that pieces mark as unchanged from such
   * a file are copied file to file by the kernel where it can.
   */
  localPath?: (path: string) => string;
  /** Called once the file is complete, with the bytes the kernel copied. */
  onDone?: (stats: { kernelCopiedBytes: number }) => void;
}

/** The suffix of the file being written. */
export const PARTIAL_SUFFIX = ".partial";

/**
 * Largest single write through Deno (the fallback when the kernel handle is missing). Deno's async
 * write slows down badly above about 1 MiB (2 GB in 8 MiB writes: 7.7 s; in 1 MiB writes: 0.5 s,
 * measured on this project's machines), so bigger buffers go out in slices.
 */
const MAX_WRITE = 1 << 20;

/** Pieces below this size are gathered into one buffer; bigger ones are written as they are. */
const SMALL_PIECE = 256 << 10;

/**
 * Output bytes between writeback starts: the disk writes while later tensors are produced, so the
 * final fdatasync has little left.
 */
const WRITEBACK_EVERY = 32 << 20;

/** Largest run of unchanged source bytes handed to the kernel in one copy. */
const MAX_SPAN = 16 << 20;

/**
 * Bytes handed to the kernel and not yet on file. Their buffers stay held until then, so this
 * bounds the memory the sink adds; a new write waits while more is in flight.
 */
const MAX_IN_FLIGHT = 16 << 20;

/** Output bytes `[start, start + length)`, held in memory until they are on file. */
interface _Run {
  readonly start: number;
  length: number;
  readonly pieces: Uint8Array[];
  /** Gives those pieces' buffers back once the bytes are on file. */
  readonly releases: (() => void)[];
}

/** A run being written or copied by the kernel (written through Deno if the kernel fails). */
interface _KernelJob extends _Run {
  /** Resolves whether the kernel did it all; never rejects. */
  readonly done: Promise<boolean>;
  /** Set once the kernel succeeded (the job's buffers are given back then). */
  ok: boolean;
}

/** A run that equals a run of one source file, gathering before its copy. */
interface _Span extends _Run {
  readonly path: string;
  readonly sourceStart: number;
}

/**
 * The output file at explicit offsets. With the kernel handle (Linux, FFI allowed), pieces are
 * written by `pwrite` (on threads of their own with many cores, at once on this thread with few:
 * kernel_output.ts) and bytes known to equal a local source file are copied file to file on
 * threads of their own while the main thread goes on; small pieces are gathered into few writes.
 * Every 32 MiB, what is on file goes to the disk's writeback early.
 * Without the handle, or once the kernel fails, bytes are written through Deno.
 */
class _Output {
  readonly #file: Deno.FsFile;
  #kernel: KernelOutput | null;
  readonly #localPath: ((path: string) => string) | null;
  #buf = new Uint8Array(SMALL_PIECE);
  #used = 0;
  /** Offset of the next byte handed to {@linkcode write}. */
  #end = 0;
  /** Where the Deno file's own position is. */
  #filePos = 0;
  #span: _Span | null = null;
  /** Kernel jobs not yet settled, in output order. */
  readonly #jobs: _KernelJob[] = [];
  #inFlight = 0;
  /** The kernel failed once: the rest goes through Deno. */
  #kernelFailed = false;
  /** Output bytes before this offset were handed to the disk's writeback. */
  #writebackFrom = 0;
  /** Bytes the kernel copied. */
  copied = 0;

  constructor(
    file: Deno.FsFile,
    kernel: KernelOutput | null,
    localPath: ((path: string) => string) | null,
  ) {
    this.#file = file;
    this.#kernel = kernel;
    this.#localPath = localPath;
  }

  /** Appends `bytes`, then calls `release` once they are on file or copied. */
  async write(bytes: Uint8Array, origin?: SourceBytes, release?: () => void): Promise<void> {
    if (origin && this.#localPath && this.#kernel && !this.#kernelFailed) {
      return await this.#extendSpan(this.#localPath(origin.path), origin.offset, bytes, release);
    }
    await this.#issueSpan();
    if (this.#used + bytes.length > this.#buf.length) await this.#flushBuffer();
    if (bytes.length >= this.#buf.length) {
      await this.#put(this.#end, bytes, release);
    } else {
      this.#buf.set(bytes, this.#used);
      this.#used += bytes.length;
      release?.();
    }
    this.#end += bytes.length;
  }

  /** Writes and copies everything pending and waits for every byte to reach the disk. */
  async sync(): Promise<void> {
    await this.#issueSpan();
    await this.#flushBuffer();
    await this.#settle(0, this.#end);
    await this.#file.syncData();
  }

  /** Drops the kernel's descriptors; waits for its jobs still running so none is cut off. */
  async close(): Promise<void> {
    await Promise.all(this.#jobs.map((job) => job.done));
    this.#jobs.length = 0;
    this.#kernel?.close();
    this.#kernel = null;
  }

  async #extendSpan(
    path: string,
    sourceStart: number,
    bytes: Uint8Array,
    release: (() => void) | undefined,
  ): Promise<void> {
    const span = this.#span;
    const continues = span !== null && span.path === path &&
      span.sourceStart + span.length === sourceStart &&
      span.start + span.length === this.#end && span.length < MAX_SPAN;
    if (!continues) {
      await this.#issueSpan();
      await this.#flushBuffer();
      this.#span = { path, sourceStart, start: this.#end, length: 0, pieces: [], releases: [] };
    }
    this.#span!.pieces.push(bytes);
    if (release) this.#span!.releases.push(release);
    this.#span!.length += bytes.length;
    this.#end += bytes.length;
  }

  /** Hands the gathered span to the kernel's copy. */
  async #issueSpan(): Promise<void> {
    const span = this.#span;
    if (span === null) return;
    this.#span = null;
    await this.#settle(MAX_IN_FLIGHT - span.length, span.start);
    const kernel = this.#kernel;
    if (kernel === null || this.#kernelFailed) return await this.#writeThroughDeno(span);
    this.#track(span, kernel.copy(span.path, span.sourceStart, span.start, span.length), true);
  }

  /** Writes `bytes` at `offset` through the kernel, or through Deno once that is not possible. */
  async #put(offset: number, bytes: Uint8Array, release?: () => void): Promise<void> {
    const run = {
      start: offset,
      length: bytes.length,
      pieces: [bytes],
      releases: release ? [release] : [],
    };
    const kernel = this.#kernel;
    if (kernel === null || this.#kernelFailed) return await this.#writeThroughDeno(run);
    await this.#settle(MAX_IN_FLIGHT - bytes.length, offset);
    this.#track(run, kernel.write(offset, bytes), false);
  }

  /** Follows the kernel's work on `run` (a copy from a source file, or a write). */
  #track(run: _Run, work: Promise<boolean>, copy: boolean): void {
    const job: _KernelJob = { ...run, done: work.catch(() => false), ok: false };
    this.#inFlight += run.length;
    // Given back as soon as the kernel is done, not when the job is next looked at.
    job.done.then((ok) => {
      if (!ok) return;
      job.ok = true;
      if (copy) this.copied += run.length;
      for (const r of run.releases) r();
    });
    this.#jobs.push(job);
  }

  /**
   * Settles the oldest kernel jobs until at most `limit` bytes are in flight; a job the kernel
   * failed is written through Deno instead (and the kernel is not asked again). `next` is where
   * the bytes not yet handed to the kernel begin.
   */
  async #settle(limit: number, next: number): Promise<void> {
    while (this.#jobs.length > 0 && (this.#inFlight > limit || this.#jobs[0]!.ok)) {
      const job = this.#jobs[0]!;
      await job.done;
      this.#jobs.shift();
      this.#inFlight -= job.length;
      if (!job.ok) {
        this.#kernelFailed = true;
        await this.#writeThroughDeno(job);
      }
    }
    this.#startWriteback(this.#jobs[0]?.start ?? next);
  }

  /** Starts writing back what lies before `end` once enough has gathered. */
  #startWriteback(end: number): void {
    if (this.#kernel === null || end - this.#writebackFrom < WRITEBACK_EVERY) return;
    this.#kernel.startWriteback(this.#writebackFrom, end - this.#writebackFrom);
    this.#writebackFrom = end;
  }

  async #flushBuffer(): Promise<void> {
    if (this.#used === 0) return;
    const bytes = this.#buf.subarray(0, this.#used);
    // The kernel may still read the old buffer: gather into a new one.
    this.#buf = new Uint8Array(SMALL_PIECE);
    this.#used = 0;
    await this.#put(this.#end - bytes.length, bytes);
  }

  async #writeThroughDeno(run: _Run): Promise<void> {
    let offset = run.start;
    for (const bytes of run.pieces) {
      if (this.#filePos !== offset) await this.#file.seek(offset, Deno.SeekMode.Start);
      let done = 0;
      while (done < bytes.length) {
        done += await this.#file.write(
          bytes.subarray(done, Math.min(bytes.length, done + MAX_WRITE)),
        );
      }
      offset += bytes.length;
      this.#filePos = offset;
    }
    for (const r of run.releases) r();
  }
}

/** A WritableStream of encoded pieces that produces the finished GGUF at `path`. */
export class GgufSink extends WritableStream<EncodedPiece> {
  constructor(path: string, layout: GgufLayout, options: GgufSinkOptions) {
    const partial = path + PARTIAL_SUFFIX;
    const { names, onProgress } = options;
    let file: Deno.FsFile | null = null;
    let out: _Output | null = null;
    let tensor = 0;
    let filled = 0;
    let written = 0;
    const zeros = new Uint8Array(64);

    const closeTensor = async (f: _Output) => {
      const want = layout.tensorSizes[tensor]!;
      if (filled !== want) {
        throw new RangeError(
          `Cannot finish tensor ${names[tensor]} as it got ${filled} of ${want} bytes`,
        );
      }
      const padded = (layout.tensorOffsets[tensor + 1] ?? layout.fileSize) -
        layout.tensorOffsets[tensor]!;
      if (padded > want) await f.write(zeros.subarray(0, padded - want));
      written += padded - want;
      tensor++;
      filled = 0;
    };
    const discard = async () => {
      await out?.close().catch(() => {});
      out = null;
      try {
        file?.close();
      } catch { /* already closed */ }
      file = null;
      await Deno.remove(partial).catch(() => {});
    };

    super({
      async start() {
        try {
          file = await Deno.open(partial, { write: true, create: true, truncate: true });
        } catch (e) {
          throw new Deno.errors.PermissionDenied(
            `Cannot write output ${partial}: ${(e as Error).message}`,
          );
        }
        out = new _Output(file, openKernelOutput(partial), options.localPath ?? null);
        try {
          await out.write(layout.header);
        } catch (e) {
          await discard();
          throw e;
        }
        written = layout.header.length;
      },
      async write(piece) {
        const f = out!;
        try {
          while (piece.tensor > tensor) await closeTensor(f);
          if (piece.tensor !== tensor) {
            throw new RangeError(`Cannot write tensor ${names[piece.tensor]} out of order`);
          }
          if (filled + piece.bytes.length > layout.tensorSizes[tensor]!) {
            throw new RangeError(
              `Cannot write tensor ${names[tensor]} as it got more than its ${
                layout.tensorSizes[tensor]
              } bytes`,
            );
          }
          await f.write(piece.bytes, piece.origin, piece.release);
          filled += piece.bytes.length;
          written += piece.bytes.length;
          onProgress?.(written, tensor);
        } catch (e) {
          await discard();
          throw e;
        }
      },
      async close() {
        const f = file!;
        try {
          while (tensor < layout.tensorSizes.length) await closeTensor(out!);
          if (written !== layout.fileSize) {
            throw new RangeError(
              `Cannot finish file as ${written} of ${layout.fileSize} bytes were written`,
            );
          }
          await out!.sync();
          await out!.close();
          options.onDone?.({ kernelCopiedBytes: out!.copied });
          out = null;
          f.close();
          file = null;
          await Deno.rename(partial, path);
        } catch (e) {
          await discard();
          throw e;
        }
      },
      async abort() {
        await discard();
      },
    });
  }
}
