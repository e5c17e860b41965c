/**
 * What a quality row's GGUF holds, and the table the benchmark prints. Bits per weight are over
 * the 2-D `blk.*` weights (the quantized set), with ggml's own row sizes; a simulated row counts
 * its simulated tensors at the format's nominal size (they are F32 in the file).
 *
 * @module
 */
import { fp4Format, type Fp4FormatName } from "../gpu/fp4/formats.ts";
import { inspectGguf } from "../pipeline/inspect.ts";
import { ggmlRowSize, ggmlTypeId, ggmlTypeName } from "../testing/ggml.ts";
import type { KldScore } from "./quality_kld.ts";

/** Bits per weight and type census of a GGUF. */
export interface WeightCensus {
  /** Bits per weight over 2-D blk.* weights. */
  readonly bpw: number;
  /** Types of all 2-D weights with counts, e.g. "NVFP4×30 F16×5 Q8_0×1". */
  readonly types: string;
}

/** Reads a GGUF's tensor table. */
export async function weightCensus(path: string, simulate?: Fp4FormatName): Promise<WeightCensus> {
  const { tensors } = await inspectGguf(path);
  const counts = new Map<string, number>();
  let bytes = 0;
  let elements = 0;
  const format = simulate === undefined ? null : fp4Format(simulate);
  for (const t of tensors) {
    if (t.ne.length < 2) continue;
    const id = t.type.startsWith("type ") ? Number(t.type.slice(5)) : ggmlTypeId(t.type);
    let name = (ggmlTypeName(id) ?? t.type).toUpperCase();
    const n = t.ne.reduce((a, b) => a * b, 1);
    let size = ggmlRowSize(id, t.ne[0]!) * (n / t.ne[0]!);
    if (format && name === "F32" && t.name.startsWith("blk.")) {
      name = `${format.label}(sim)`;
      size = (n / format.blockSize) * format.blockBytes;
    }
    counts.set(name, (counts.get(name) ?? 0) + 1);
    if (t.name.startsWith("blk.")) {
      bytes += size;
      elements += n;
    }
  }
  const types = [...counts].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}×${v}`).join(" ");
  return { bpw: (8 * bytes) / elements, types };
}

/** One printed line. */
export interface QualityResult {
  readonly label: string;
  readonly imatrix: string;
  readonly score: KldScore;
  readonly census: WeightCensus;
  /** Seconds to build the file. */
  readonly buildSeconds: number;
}

function _pad(cells: readonly string[], widths: readonly number[]): string {
  return cells.map((
    c,
    i,
  ) => (i === 0 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
    .join("  ").trimEnd();
}

/** Formats results as a fixed-width table. */
export function formatTable(results: readonly QualityResult[]): string[] {
  const head = [
    "row",
    "imatrix",
    "KLD mean",
    "± err",
    "KLD p99",
    "same top",
    "ppl",
    "bpw",
    "build s",
    "types",
  ];
  const rows = results.map((r) => [
    r.label,
    r.imatrix,
    // The base row's KLD is a float32 rounding residue, possibly −0.000000.
    Math.max(0, r.score.kld).toFixed(6),
    r.score.kldError.toFixed(6),
    r.score.kld99.toFixed(5),
    `${(100 * r.score.sameTop).toFixed(2)}%`,
    r.score.ppl.toFixed(4),
    r.census.bpw.toFixed(3),
    r.buildSeconds.toFixed(1),
    r.census.types,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = widths.map((w) => "-".repeat(w)).join("  ");
  return [_pad(head, widths), line, ...rows.map((r) => _pad(r, widths))];
}
