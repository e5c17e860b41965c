/**
 * `deno task bench quality`: how close each FP4 encoding keeps a model to its F32 original,
 * measured in real llama.cpp as `llama-perplexity --kl-divergence` does (mean KL(p_f32 ‖ p_q) per
 * scored position, same-top-token rate, perplexity for reference), on stories260K and on a
 * generated heavy-tailed llama. Rows: Sluice NVFP4 rtn/window/full × {no imatrix, per-column,
 * K-quant row-σ weighting} and window+Four-over-Six, Sluice MXFP4, simulated AMD-FP4 and ROCmFP4,
 * and ggml's own NVFP4, MXFP4, Q4_0, IQ4_NL and Q4_K_M through `llama_model_quantize`.
 *
 * Every model runs with an F32 KV cache and no flash attention on one thread; encoders run on the
 * CPU. Options: `--model=stories|generated`, `--rows=REGEX` (labels), `--chunks=N` (evaluation
 * chunks per model).
 *
 * @module
 */
import { LlamaModel } from "../testing/llama_cpp.ts";
import { kldReference, type KldScore, pairedDifference, scoreKld } from "./quality_kld.ts";
import {
  prepareGenerated,
  prepareStories,
  type QualityModel,
  type QualitySizes,
} from "./quality_models.ts";
import { type QualityRow, qualityRows } from "./quality_rows.ts";
import { formatTable, type QualityResult, weightCensus } from "./quality_table.ts";

/** Options for {@linkcode benchQuality}. */
export interface QualityOptions {
  /** @default both */
  readonly models?: readonly ("stories" | "generated")[];
  /** Only rows whose label matches (the base row always runs). */
  readonly rows?: RegExp;
  /** Evaluation chunks per model. @default 200 for stories260K, 80 for the generated model */
  readonly chunks?: number;
  /** Where lines go. @default console.log */
  readonly write?: (line: string) => void;
}

/** Reads `--model=`, `--rows=` and `--chunks=` arguments. */
export function qualityArgs(args: readonly string[]): QualityOptions {
  const get = (key: string) => args.find((a) => a.startsWith(`--${key}=`))?.slice(key.length + 3);
  const model = get("model");
  const rows = get("rows");
  const chunks = get("chunks");
  return {
    ...(model === "stories" || model === "generated" ? { models: [model] } : {}),
    ...(rows ? { rows: new RegExp(rows) } : {}),
    ...(chunks ? { chunks: Number(chunks) } : {}),
  };
}

const N_CTX = 256;
/**
 * llama.cpp threads. One: on 2 shared cores ggml's spinning thread barrier makes 2 threads several
 * times slower than 1 as soon as anything else runs, and these models are small.
 */
const THREADS = 1;

const IMATRIX_LABEL: Record<QualityRow["imatrix"], string> = {
  none: "-",
  column: "column",
  "row-sigma": "row-σ",
  default: "fmt default",
  ggml: "ggml",
};

async function _runRows(
  model: QualityModel,
  rows: readonly QualityRow[],
  work: string,
  write: (line: string) => void,
): Promise<QualityResult[]> {
  let reference;
  {
    using base = LlamaModel.load(model.f32, { nCtx: N_CTX, exact: true, threads: THREADS });
    reference = kldReference(base, model.chunks);
  }
  write(`  F32 model's mean entropy at scored positions: ${reference.entropy.toFixed(3)} nats`);
  const results: QualityResult[] = [];
  for (const [i, row] of rows.entries()) {
    const out = row.family === "base" ? model.f32 : `${work}/${model.name}-row${i}.gguf`;
    const started = performance.now();
    await row.build(model, out);
    const buildSeconds = (performance.now() - started) / 1000;
    const census = await weightCensus(out, row.simulate);
    let score: KldScore;
    {
      using q = LlamaModel.load(out, { nCtx: N_CTX, exact: true, threads: THREADS });
      score = scoreKld(q, reference);
    }
    if (out !== model.f32) await Deno.remove(out);
    const evalSeconds = (performance.now() - started) / 1000 - buildSeconds;
    const result = {
      label: row.label,
      imatrix: IMATRIX_LABEL[row.imatrix],
      score,
      census,
      buildSeconds,
    };
    results.push(result);
    write(
      `  ${row.label}: KLD ${Math.max(0, score.kld).toFixed(6)}, same top ${
        (100 * score.sameTop).toFixed(2)
      }% ` +
        `(build ${buildSeconds.toFixed(1)} s, eval ${evalSeconds.toFixed(1)} s)`,
    );
  }
  return results;
}

function _bestOf(results: readonly QualityResult[]): QualityResult | null {
  return results.reduce<QualityResult | null>(
    (b, r) => (!b || r.score.kld < b.score.kld ? r : b),
    null,
  );
}

function _identical(a: QualityResult, b: QualityResult): boolean {
  return a.score.perPosition.every((v, i) => v === b.score.perPosition[i]);
}

function _vs(a: QualityResult, b: QualityResult): string {
  if (_identical(a, b)) return `${a.label} = ${b.label}: identical at every position`;
  const d = pairedDifference(a.score, b.score);
  const ratio = a.score.kld / b.score.kld;
  const verdict = d.mean < -2 * d.error
    ? "better"
    : d.mean > 2 * d.error
    ? "worse"
    : "no difference beyond 2σ";
  return `${a.label} ${a.score.kld.toFixed(6)} vs ${b.label} ${b.score.kld.toFixed(6)}: ` +
    `×${ratio.toFixed(3)}, paired Δ ${d.mean.toExponential(2)} ± ${d.error.toExponential(2)} ` +
    `(${verdict})`;
}

/** Rows whose per-position KL divergences are all equal, as "a = b = c" lines. */
function _identicalGroups(results: readonly QualityResult[]): string[] {
  const groups: QualityResult[][] = [];
  for (const r of results) {
    const g = groups.find((g) => _identical(g[0]!, r));
    if (g) g.push(r);
    else groups.push([r]);
  }
  return groups.filter((g) => g.length > 1).map((g) => g.map((r) => r.label).join(" = "));
}

function _conclusions(results: readonly QualityResult[], rows: readonly QualityRow[]): string[] {
  const lines: string[] = [];
  const by = (label: string) => results.find((r) => r.label === label) ?? null;
  const family = (f: string) => results.filter((_, i) => rows[i]!.family.startsWith(f));
  const best = _bestOf(family("sluice"));
  if (best) lines.push(`best Sluice row by KLD: ${best.label} (${best.score.kld.toFixed(6)})`);
  const nvfp4 = family("sluice-nvfp4");
  const nv = _bestOf(nvfp4);
  const noImat = _bestOf(nvfp4.filter((r) => r.imatrix === "-"));
  if (noImat) lines.push(`best NVFP4 without imatrix: ${noImat.label}`);
  for (const group of _identicalGroups(family("sluice"))) lines.push(`same results: ${group}`);
  const pairs: [string, string][] = [
    ["Sluice NVFP4 rtn", "ggml NVFP4"],
    ["Sluice MXFP4 rtn", "ggml MXFP4"],
  ];
  for (const [a, b] of pairs) {
    const [ra, rb] = [by(a), by(b)];
    if (ra && rb) lines.push(_vs(ra, rb));
  }
  for (const r of family("sluice")) {
    const plain = by(r.label.replace(/ \+imat( col| row-σ)?/, ""));
    if (plain && plain !== r) lines.push(`imatrix: ${_vs(r, plain)}`);
  }
  const rtn = by("Sluice NVFP4 rtn");
  if (nv && rtn && !_identical(nv, rtn)) lines.push(`best NVFP4 vs rtn: ${_vs(nv, rtn)}`);
  for (const anchor of ["ggml Q4_K_M +imat", "ggml IQ4_NL +imat", "ggml Q4_0 +imat"]) {
    const r = by(anchor);
    if (nv && r) lines.push(`best NVFP4 vs ${anchor}: ${_vs(nv, r)}`);
  }
  return lines;
}

/** Runs the benchmark and prints one table per model. */
export async function benchQuality(options: QualityOptions = {}): Promise<void> {
  const write = options.write ?? console.log;
  const models = options.models ?? ["stories", "generated"];
  const rows = qualityRows().filter((r) =>
    r.family === "base" || !options.rows || options.rows.test(r.label)
  );
  const work = await Deno.makeTempDir({ prefix: "sluice-quality-" });
  const started = performance.now();
  try {
    for (const which of models) {
      const sizes: QualitySizes = which === "stories"
        ? { nCtx: N_CTX, evalChunks: options.chunks ?? 200, calibrationChunks: 100 }
        : { nCtx: N_CTX, evalChunks: options.chunks ?? 80, calibrationChunks: 24 };
      const model = which === "stories"
        ? await prepareStories(work, sizes)
        : await prepareGenerated(work, sizes);
      write(`\n## ${model.description}`);
      write(`  (prepared in ${model.seconds.toFixed(1)} s: F32 conversion, tokens, imatrix)`);
      const t = performance.now();
      const results = await _runRows(model, rows, work, write);
      write("");
      for (const line of formatTable(results)) write(line);
      write(
        `  ${model.chunks.length * (N_CTX - 1 - N_CTX / 2)} scored positions; ` +
          `${((performance.now() - t) / 1000).toFixed(0)} s for ${rows.length} rows`,
      );
      for (const line of _conclusions(results, rows)) write(`- ${line}`);
    }
    write(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)} s`);
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await benchQuality(qualityArgs(Deno.args));
