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
import { type KernelCopier, openKernelCopier } from "./file_copy.ts";

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
 * Largest single write. Deno's async write slows down badly above about 1 MiB (2 GB in 8 MiB
 * writes: 7.7 s; in 1 MiB writes: 0.5 s, measured on this project's machines), so bigger buffers
 * go out in slices.
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

/** A run of output bytes that equals a run of one source file, not yet copied. */
interface _Span {
  readonly path: string;
  readonly sourceStart: number;
  readonly outputStart: number;
  length: number;
  /** The same bytes in memory, written instead if the kernel copy fails. */
  readonly pieces: Uint8Array[];
  /** Gives those pieces' buffers back once the span is on file. */
  readonly releases: (() => void)[];
}

/**
 * The output file at explicit offsets: small pieces are gathered into few writes, big ones go
 * straight to the file, and bytes known to equal a local source file are copied file to file by
 * the kernel (one copy in flight while the next span gathers). Every 32 MiB, what is on file
 * goes to the disk's writeback early.
 */
class _Output {
  readonly #file: Deno.FsFile;
  #copier: KernelCopier | null;
  readonly #localPath: ((path: string) => string) | null;
  readonly #buf = new Uint8Array(SMALL_PIECE);
  #used = 0;
  /** Offset of the next byte handed to {@linkcode write}. */
  #end = 0;
  /** Where the file's own position is. */
  #filePos = 0;
  #span: _Span | null = null;
  #copying: { span: _Span; done: Promise<boolean> } | null = null;
  /** The kernel refused a copy: the rest is written from memory. */
  #copyFailed = false;
  /** Output bytes before this offset were handed to the disk's writeback. */
  #writebackFrom = 0;
  /** Bytes the kernel copied. */
  copied = 0;

  constructor(
    file: Deno.FsFile,
    copier: KernelCopier | null,
    localPath: ((path: string) => string) | null,
  ) {
    this.#file = file;
    this.#copier = copier;
    this.#localPath = localPath;
  }

  /** Appends `bytes`, then calls `release` once they are on file or copied. */
  async write(bytes: Uint8Array, origin?: SourceBytes, release?: () => void): Promise<void> {
    if (origin && this.#copier && !this.#copyFailed && this.#localPath) {
      return await this.#extendSpan(this.#localPath(origin.path), origin.offset, bytes, release);
    }
    await this.#issueSpan();
    if (this.#used + bytes.length > this.#buf.length) await this.#flushBuffer();
    if (bytes.length >= this.#buf.length) {
      await this.#writeAt(this.#end, bytes);
    } else {
      this.#buf.set(bytes, this.#used);
      this.#used += bytes.length;
    }
    this.#end += bytes.length;
    release?.();
  }

  /** Writes and copies everything pending and waits for every byte to reach the disk. */
  async sync(): Promise<void> {
    await this.#issueSpan();
    await this.#settleCopy();
    await this.#flushBuffer();
    await this.#file.syncData();
  }

  /** Drops the copier's descriptors; waits for a copy still running so none is cut off. */
  async close(): Promise<void> {
    await this.#copying?.done;
    this.#copying = null;
    this.#copier?.close();
    this.#copier = null;
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
      span.outputStart + span.length === this.#end && span.length < MAX_SPAN;
    if (!continues) {
      await this.#issueSpan();
      await this.#flushBuffer();
      this.#span = {
        path,
        sourceStart,
        outputStart: this.#end,
        length: 0,
        pieces: [],
        releases: [],
      };
    }
    this.#span!.pieces.push(bytes);
    if (release) this.#span!.releases.push(release);
    this.#span!.length += bytes.length;
    this.#end += bytes.length;
  }

  /** Starts the kernel copy of the gathered span, after the previous one has finished. */
  async #issueSpan(): Promise<void> {
    const span = this.#span;
    if (span === null) return;
    this.#span = null;
    await this.#settleCopy();
    if (this.#copier === null || this.#copyFailed) return await this.#writePieces(span);
    // The pieces stay held until the copy settles: a failed copy writes them instead.
    const done = this.#copier.copy(span.path, span.sourceStart, span.outputStart, span.length)
      .catch(() => false);
    this.#copying = { span, done };
  }

  /** Waits for the copy in flight; if the kernel failed, writes its bytes and stops copying. */
  async #settleCopy(): Promise<void> {
    const copying = this.#copying;
    if (copying === null) return;
    this.#copying = null;
    if (await copying.done) {
      this.copied += copying.span.length;
      this.#startWriteback(copying.span.outputStart + copying.span.length);
      for (const release of copying.span.releases) release();
      return;
    }
    this.#copyFailed = true;
    await this.#writePieces(copying.span);
  }

  /** Starts writing back what lies before `end` once enough has gathered. */
  #startWriteback(end: number): void {
    if (this.#copier === null || end - this.#writebackFrom < WRITEBACK_EVERY) return;
    this.#copier.startWriteback(this.#writebackFrom, end - this.#writebackFrom);
    this.#writebackFrom = end;
  }

  async #writePieces(span: _Span): Promise<void> {
    let at = span.outputStart;
    for (const piece of span.pieces) {
      await this.#writeAt(at, piece);
      at += piece.length;
    }
    for (const release of span.releases) release();
  }

  async #flushBuffer(): Promise<void> {
    if (this.#used === 0) return;
    await this.#writeAt(this.#end - this.#used, this.#buf.subarray(0, this.#used));
    this.#used = 0;
  }

  async #writeAt(offset: number, bytes: Uint8Array): Promise<void> {
    if (this.#filePos !== offset) await this.#file.seek(offset, Deno.SeekMode.Start);
    let done = 0;
    while (done < bytes.length) {
      done += await this.#file.write(
        bytes.subarray(done, Math.min(bytes.length, done + MAX_WRITE)),
      );
    }
    this.#filePos = offset + bytes.length;
    this.#startWriteback(this.#filePos);
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
        const copier = openKernelCopier(partial);
        out = new _Output(file, copier, options.localPath ?? null);
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
