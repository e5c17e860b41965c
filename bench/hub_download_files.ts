/**
 * A plain downloader: fetches whole files with {@linkcode plainParallelDownload}, writes each
 * received piece at its offset as it arrives, and fsyncs the files. Run as its own process, `bench
 * hub` times it from spawn to exit, as it times the conversion's process: both start cold, with
 * fresh connections. The bench also calls it in-process, for reference.
 *
 * Usage: `hub_download_files.ts <resolve-url-prefix> <out-dir> <connections> <file>:<size>...`
 * (file i is written to `<out-dir>/download-<i>.bin`)
 *
 * @module
 */
import { plainParallelDownload } from "./hub_download.ts";

/** One file to download: its path under the URL prefix and its size in bytes. */
export interface DownloadFile {
  readonly name: string;
  readonly size: number;
}

/** Downloads `files` one after another to `<outDir>/download-<i>.bin`, each fsynced. */
export async function downloadFiles(
  prefix: string,
  outDir: string,
  connections: number,
  files: readonly DownloadFile[],
): Promise<void> {
  for (const [i, { name, size }] of files.entries()) {
    using file = await Deno.open(`${outDir}/download-${i}.bin`, {
      write: true,
      create: true,
      truncate: true,
    });
    await plainParallelDownload(`${prefix}/${name}`, size, connections, {
      onBytes: (offset, bytes) => {
        file.seekSync(offset, Deno.SeekMode.Start);
        for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
      },
    });
    await file.syncData();
  }
}

if (import.meta.main) {
  const [prefix, outDir, connections, ...specs] = Deno.args;
  if (!prefix || !outDir || !connections || specs.length === 0) {
    throw new TypeError(
      "usage: hub_download_files.ts <resolve-url-prefix> <out-dir> <connections> <file>:<size>...",
    );
  }
  const files = specs.map((spec) => {
    const at = spec.lastIndexOf(":");
    return { name: spec.slice(0, at), size: Number(spec.slice(at + 1)) };
  });
  await downloadFiles(prefix, outDir, Number(connections), files);
}
