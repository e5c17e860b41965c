/**
 * The output file through libc, called by Deno's FFI. Writes are `pwrite` calls at explicit
 * offsets: with many cores on threads of their own, so the main thread (which reads, scans and
 * drives the GPU) never waits on a write; with few, on the calling thread (see `FEW_CORES`).
 * Deno's own async write cost the main thread about a fifth of a GPU conversion (175 of 610 ms
 * for 0.95 GB, traced on an H100).
 *
 * Byte ranges of local files are copied inside the kernel (Linux `copy_file_range`), so bytes
 * that pass through unchanged are never copied into and back out of this process. A read→write
 * loop moves every byte through user memory twice; measured on 2 GB of BF16 shards, that loop
 * took 3.3–3.5 s where `cp` took 1.7–2.2 s and reading (for the NaN scan) beside kernel copies
 * took 1.9–2.4 s.
 *
 * The same handle starts the disk writeback of output already written (`sync_file_range`), so
 * the disk writes while later tensors are produced and the final fdatasync has little left:
 * 2 GB BF16→BF16 took 2.06–2.33 s with it against 2.88–3.05 s without (about 1 s of that was
 * the final fdatasync).
 *
 * Optional by design: without FFI permission, off Linux, or when the kernel refuses (another file
 * system, an old kernel), {@linkcode openKernelOutput} gives null, or a copy or write reports
 * false, and the caller writes the bytes it holds through Deno, which names the reason (a full
 * disk, say): libc's errno belongs to the thread that made the call and cannot be read here.
 *
 * @module
 */

const O_RDONLY = 0, O_WRONLY = 1, O_CLOEXEC = 0o2000000;
/**
 * How writes go depends on the cores there are. With few, the calling thread writes each piece
 * at once, in 128 KiB calls, while the bytes it has just scanned are still in the CPU cache: the
 * kernel's copy into the page cache costs a few times more from cold memory and in big calls. A
 * bare C loop writing 2 GiB on a 2-core VM took 0.28–0.34 s in 128 KiB calls from a hot buffer,
 * 0.71–0.91 s in 128 KiB calls and 1.3–1.8 s in 512 KiB calls cycling through 256 MiB, 2.0 s in
 * 2 MiB calls; several writers to one file spin on ext4's inode lock and take the cores the
 * pipeline needs. Ad hoc CLI conversions against `deno task bench hub`'s loopback Hub, three
 * rounds: 1.5–2.2 s of kernel time against 2.4–3.6 s with one 512 KiB write at a time on an FFI
 * thread, peak RSS 272–301 against 388–418 MiB.
 *
 * With many cores, whole pieces go several at once on FFI threads: on the 16-core H100 host one
 * call per piece kept the main thread's FFI calls few (`bench/gpu_convert_trace.ts`, three
 * interleaved runs: 2.04–2.40 GB/s against 1.89–1.92 GB/s in 512 KiB calls one at a time).
 */
const FEW_CORES = (navigator.hardwareConcurrency ?? 1) < 8;
const WRITE_CALL_BYTES = 128 << 10;

const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  sync_file_range: {
    parameters: ["i32", "i64", "i64", "u32"],
    result: "i32",
    nonblocking: true,
  },
  pwrite: {
    parameters: ["i32", "buffer", "usize", "i64"],
    result: "isize",
    nonblocking: true,
  },
  pwriteHere: { name: "pwrite", parameters: ["i32", "buffer", "usize", "i64"], result: "isize" },
  copy_file_range: {
    parameters: ["i32", "buffer", "i32", "buffer", "usize", "u32"],
    result: "isize",
    // Runs on a blocking thread, so the copy overlaps with reading and scanning the next bytes.
    nonblocking: true,
  },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;

/** Loaded once and never closed: a copy may still be running on a thread. */
let libc: Libc | null | undefined;

function _libc(): Libc | null {
  if (libc !== undefined) return libc;
  libc = null;
  if (Deno.build.os !== "linux") return null;
  try {
    libc = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch {
    // No --allow-ffi, or no glibc: the caller writes bytes itself.
  }
  return libc;
}

function _cString(s: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(s + "\0");
}

/** One output file written and filled by the kernel, off the main thread. */
export interface KernelOutput {
  /**
   * Copies `length` bytes of the file at `path` from `sourceOffset` to `outputOffset` of the
   * output (several copies may run at once).
   * Resolves false when the kernel could not copy all of them (the caller then writes them).
   */
  copy(path: string, sourceOffset: number, outputOffset: number, length: number): Promise<
    boolean
  >;
  /**
   * Writes `bytes` at `offset`. Resolves false when the kernel did not take all of them (the
   * caller then writes them another way). Keep `bytes` unchanged until it resolves.
   */
  write(offset: number, bytes: Uint8Array): Promise<boolean>;
  /** Starts the disk writeback of output bytes `[offset, offset + length)` without waiting. */
  startWriteback(offset: number, length: number): void;
  /** Closes the file descriptors. Call only when no copy or write is pending. */
  close(): void;
}

/** The kernel's handle on `output` (which must exist), or null where that path is missing. */
export function openKernelOutput(output: string): KernelOutput | null {
  const lib = _libc();
  if (!lib) return null;
  const out = lib.symbols.open(_cString(output), O_WRONLY | O_CLOEXEC);
  if (out < 0) return null;
  // Shards are read one after another: the latest one stays open. Several copies may run at
  // once, so a descriptor is closed only when no copy uses it.
  const sources = new Map<string, { fd: number; users: number }>();
  let latest = "";
  const closeIdle = () => {
    for (const [path, source] of sources) {
      if (source.users > 0 || path === latest) continue;
      lib.symbols.close(source.fd);
      sources.delete(path);
    }
  };
  return {
    async copy(path, sourceOffset, outputOffset, length) {
      let source = sources.get(path);
      if (source === undefined) {
        const fd = lib.symbols.open(_cString(path), O_RDONLY | O_CLOEXEC);
        if (fd < 0) return false;
        source = { fd, users: 0 };
        sources.set(path, source);
      }
      latest = path;
      source.users++;
      try {
        // The kernel advances these offsets itself as it copies.
        const from = new BigInt64Array([BigInt(sourceOffset)]);
        const to = new BigInt64Array([BigInt(outputOffset)]);
        let left = length;
        while (left > 0) {
          const n = Number(
            await lib.symbols.copy_file_range(source.fd, from, out, to, BigInt(left), 0),
          );
          // -1: refused (EXDEV, ENOSYS, EINVAL, ...); 0: the source ended early.
          if (n <= 0) return false;
          left -= n;
        }
        return true;
      } finally {
        source.users--;
        closeIdle();
      }
    },
    async write(offset, bytes) {
      if (!FEW_CORES) {
        for (let done = 0; done < bytes.length;) {
          const part = bytes.subarray(done);
          const n = Number(
            await lib.symbols.pwrite(out, part, BigInt(part.length), BigInt(offset + done)),
          );
          if (n <= 0) return false;
          done += n;
        }
        return true;
      }
      for (let done = 0; done < bytes.length;) {
        const part = bytes.subarray(done, done + WRITE_CALL_BYTES);
        const n = Number(
          lib.symbols.pwriteHere(out, part, BigInt(part.length), BigInt(offset + done)),
        );
        if (n <= 0) return false;
        done += n;
      }
      return true;
    },
    startWriteback(offset, length) {
      // SYNC_FILE_RANGE_WRITE: queue the dirty pages for writing; a hint, so errors are ignored
      // (the final fdatasync reports any).
      lib.symbols.sync_file_range(out, BigInt(offset), BigInt(length), 2).catch(() => {});
    },
    close() {
      latest = "";
      closeIdle();
      lib.symbols.close(out);
    },
  };
}
