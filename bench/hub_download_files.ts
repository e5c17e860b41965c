/**
 * A plain downloader as its own process: fetches whole files of a Hub repo with
 * {@linkcode plainParallelDownload} (each received piece written at its offset as it arrives),
 * fsyncs them and exits. `bench hub` times it from spawn to exit, as it times the conversion's
 * process: both start cold, with fresh connections.
 *
 * Usage: `hub_download_files.ts <resolve-url-prefix> <out-dir> <connections> <file>:<size>...`
 *
 * @module
 */
import { plainParallelDownload } from "./hub_download.ts";

if (import.meta.main) {
  const [prefix, outDir, connections, ...files] = Deno.args;
  if (!prefix || !outDir || !connections || files.length === 0) {
    throw new TypeError(
      "usage: hub_download_files.ts <resolve-url-prefix> <out-dir> <connections> <file>:<size>...",
    );
  }
  for (const [i, spec] of files.entries()) {
    const at = spec.lastIndexOf(":");
    const [name, size] = [spec.slice(0, at), Number(spec.slice(at + 1))];
    using file = await Deno.open(`${outDir}/download-${i}.bin`, {
      write: true,
      create: true,
      truncate: true,
    });
    await plainParallelDownload(`${prefix}/${name}`, size, Number(connections), {
      onBytes: (offset, bytes) => {
        file.seekSync(offset, Deno.SeekMode.Start);
        for (let done = 0; done < bytes.length;) done += file.writeSync(bytes.subarray(done));
      },
    });
    await file.syncData();
  }
}
