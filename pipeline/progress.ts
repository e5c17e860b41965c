/**
 * Renders {@linkcode ConvertEvent}s for people (a one-line progress bar on a TTY) or for
 * machines (one JSON object per line), to a writer the caller chooses.
 *
 * @module
 */
import type { ConvertEvent } from "./convert.ts";

/** `--log-format`. */
export type LogFormat = "text" | "json";

/** A sink for rendered lines. */
export interface LineWriter {
  write(text: string): void;
  /** True when the writer is a terminal that understands `\r`. */
  readonly isTerminal: boolean;
}

/** Formats bytes for people. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

/** Returns an event handler that renders to `out`. */
export function progressRenderer(format: LogFormat, out: LineWriter): (e: ConvertEvent) => void {
  const started = performance.now();
  if (format === "json") {
    // One line per phase and per tensor, not per write: log collectors want records, not ticks.
    let lastTensor = -1;
    return (e) => {
      if (e.type === "progress") {
        if (e.tensorIndex === lastTensor && e.written < e.total) return;
        lastTensor = e.tensorIndex;
      }
      out.write(JSON.stringify({ time: new Date().toISOString(), ...e }) + "\n");
    };
  }
  return (e) => {
    switch (e.type) {
      case "plan":
        out.write(
          `${e.source}: ${e.tensors} tensors → ${formatBytes(e.outputBytes)} (${e.weightType})\n`,
        );
        for (const n of e.notes) out.write(`  note: ${n}\n`);
        return;
      case "progress": {
        const seconds = (performance.now() - started) / 1000;
        const rate = e.written / Math.max(seconds, 1e-3);
        const eta = (e.total - e.written) / Math.max(rate, 1);
        const width = 30;
        const fill = Math.round((e.written / e.total) * width);
        const line = `[${"#".repeat(fill)}${"-".repeat(width - fill)}] ` +
          `${formatBytes(e.written)}/${formatBytes(e.total)} ${(rate / 1e6).toFixed(1)} MB/s ` +
          `ETA ${eta.toFixed(0)}s ${e.tensor}`;
        if (out.isTerminal) out.write(`\r${line.padEnd(110).slice(0, 110)}`);
        return;
      }
      case "retry":
        out.write(
          `${out.isTerminal ? "\n" : ""}retry ${e.path} (attempt ${e.attempt}, ${e.reason}) in ` +
            `${(e.delayMs / 1000).toFixed(1)} s\n`,
        );
        return;
      case "done": {
        const s = e.stats;
        if (out.isTerminal) out.write("\n");
        out.write(
          `wrote ${s.output}: ${s.tensors} tensors, ${formatBytes(s.bytesWritten)} in ` +
            `${s.seconds.toFixed(2)} s (${s.mbPerSecond.toFixed(1)} MB/s), peak RSS ` +
            `${formatBytes(s.peakRssBytes)}\n`,
        );
        return;
      }
    }
  };
}
