/**
 * The rows of the quality benchmark: how each GGUF is made from a {@linkcode QualityModel}.
 *
 * Tensor sets: every FP4 row puts FP4 in the 2-D `blk.*` weights and Q8_0 in token_embd/output;
 * weights whose rows do not divide into blocks (stories260K's ffn_down, 172 wide) are F16 in every
 * row. Simulated rows (AMD-FP4, ROCmFP4: llama.cpp v0.5.0 cannot load those types) hold the
 * quantize→dequantize values as F32. ggml Q4_0/IQ4_NL use the same tensor set; ggml Q4_K_M uses
 * llama-quantize's own mix (Q6_K for output and some attn_v/ffn_down, Q4_K token_embd when untied;
 * on stories260K every Q4_K falls back to Q5_0 and Q6_K to Q8_0 because rows are 64 wide).
 *
 * @module
 */
import { convert, type ConvertOptions } from "../mod.ts";
import type { Fp4FormatName } from "../gpu/fp4/formats.ts";
import { readImatrix } from "../pipeline/imatrix.ts";
import type { RuleType } from "../pipeline/type_selection.ts";
import { LLAMA_FTYPES, llamaQuantize } from "../testing/llama_quantize.ts";
import type { QualityModel } from "./quality_models.ts";

/** Which imatrix weighting a row uses, or none. */
export type RowImatrix = "none" | "column" | "row-sigma" | "default" | "ggml";

/** One row: a label and how to build its file. */
export interface QualityRow {
  readonly label: string;
  /** Groups rows for the conclusions. */
  readonly family: "base" | "sluice-nvfp4" | "sluice-mxfp4" | "sluice-sim" | "ggml";
  readonly imatrix: RowImatrix;
  readonly simulate?: Fp4FormatName;
  /** Writes the GGUF to `out` (the base row writes nothing: its file is the model's F32). */
  build(model: QualityModel, out: string): Promise<void>;
}

type Encode = NonNullable<ConvertOptions["encode"]>;
type Mode = NonNullable<Encode["mode"]>;

const BLK_WEIGHTS = String.raw`blk\..*\.weight$`;
/** ggml type ids (enum ggml_type of this build). */
const GGML = { f16: 1, q4_0: 2, iq4_nl: 20, mxfp4: 39, nvfp4: 40 } as const;

function _f16Rules(model: QualityModel): [RegExp, RuleType][] {
  return model.f16Weights ? [[model.f16Weights, "f16"]] : [];
}

function _sluice(
  label: string,
  family: QualityRow["family"],
  imatrix: RowImatrix,
  options: (model: QualityModel) => Omit<ConvertOptions, "input" | "output">,
  simulate?: Fp4FormatName,
): QualityRow {
  return {
    label,
    family,
    imatrix,
    ...(simulate ? { simulate } : {}),
    async build(model, out) {
      await convert({
        input: model.dir,
        output: out,
        ...(model.tokenizerPre ? { tokenizerPre: model.tokenizerPre } : {}),
        ...options(model),
        ...(imatrix === "none" ? {} : { imatrix: model.imatrix }),
      });
    },
  };
}

function _encode(mode: Mode, imatrix: RowImatrix, extra: Partial<Encode> = {}): Encode {
  const weighting = imatrix === "column" || imatrix === "row-sigma" ? { weighting: imatrix } : {};
  return { mode, device: "cpu", ...weighting, ...extra };
}

function _nvfp4(
  mode: Mode,
  imatrix: RowImatrix,
  fourOverSix = false,
  outerScale = false,
): QualityRow {
  const tag = imatrix === "none" ? "" : imatrix === "column" ? " +imat col" : " +imat row-σ";
  const label = `Sluice NVFP4 ${mode}${fourOverSix ? "+4/6" : ""}${tag}${
    outerScale ? " +outer" : ""
  }`;
  return _sluice(label, "sluice-nvfp4", imatrix, () => ({
    type: "nvfp4",
    ...(outerScale ? { outerScale } : {}),
    encode: _encode(mode, imatrix, fourOverSix ? { fourOverSix } : {}),
  }));
}

function _mxfp4(mode: Mode, imatrix: RowImatrix): QualityRow {
  const tag = imatrix === "none" ? "" : imatrix === "column" ? " +imat col" : " +imat row-σ";
  return _sluice(`Sluice MXFP4 ${mode}${tag}`, "sluice-mxfp4", imatrix, (model) => ({
    type: "q8_0",
    rules: { tensorTypes: [..._f16Rules(model), [/^blk\..*\.weight$/, "mxfp4"]] },
    encode: _encode(mode, imatrix),
  }));
}

const SIM_LABELS: Partial<Record<Fp4FormatName, string>> = {
  amdfp4: "AMD-FP4",
  q4_0_rocmfp4: "ROCmFP4",
  q4_0_rocmfp4_fast: "ROCmFP4-fast",
};

function _simulated(format: Fp4FormatName, mode: Mode, imatrix: RowImatrix): QualityRow {
  const tag = imatrix === "none" ? "" : " +imat";
  const label = `Sluice ${SIM_LABELS[format]} ${mode}${tag} (sim)`;
  return _sluice(label, "sluice-sim", imatrix, (model) => ({
    type: "f32",
    simulate: format,
    rules: { tensorTypes: _f16Rules(model), tokenEmbeddingType: "q8_0", outputType: "q8_0" },
    encode: _encode(mode, imatrix),
  }), format);
}

async function _ggmlImatrix(model: QualityModel): Promise<Map<string, Float32Array>> {
  const im = readImatrix(await Deno.readFile(model.imatrix), model.imatrix);
  return new Map([...im.entries].map(([name, e]) => [name, e.values]));
}

function _ggml(label: string, ftype: number, type: number | null, imatrix: boolean): QualityRow {
  return {
    label,
    family: "ggml",
    imatrix: imatrix ? "ggml" : "none",
    async build(model, out) {
      const f16: [string, number][] = model.f16Weights ? [[model.f16Weights.source, GGML.f16]] : [];
      llamaQuantize(model.f32, out, {
        ftype,
        threads: 1,
        ...(type === null ? {} : { tensorTypes: [...f16, [BLK_WEIGHTS, type]] }),
        ...(imatrix ? { imatrix: await _ggmlImatrix(model) } : {}),
      });
    },
  };
}

/** Every row, in table order. */
export function qualityRows(): QualityRow[] {
  const rows: QualityRow[] = [{
    label: "F32 (base)",
    family: "base",
    imatrix: "none",
    build: async () => {},
  }];
  for (const mode of ["rtn", "window", "full"] as const) {
    for (const im of ["none", "column", "row-sigma"] as const) rows.push(_nvfp4(mode, im));
  }
  // Four-over-Six adds one candidate scale (block max → 4, about 4.7 codes above rtn): inside the
  // ±12 window already, so it can only change rtn.
  for (const im of ["none", "column", "row-sigma"] as const) rows.push(_nvfp4("rtn", im, true));
  rows.push(_nvfp4("window", "none", true));
  // Per-tensor outer scale (`.scale` side tensors): block scales use the whole UE4M3 range.
  for (const im of ["none", "column"] as const) rows.push(_nvfp4("window", im, false, true));
  rows.push(_nvfp4("rtn", "none", false, true), _nvfp4("window", "column", true, true));
  for (const mode of ["rtn", "window", "full"] as const) rows.push(_mxfp4(mode, "none"));
  rows.push(_mxfp4("full", "column"), _mxfp4("full", "row-sigma"));
  for (const format of ["amdfp4", "q4_0_rocmfp4", "q4_0_rocmfp4_fast"] as const) {
    rows.push(_simulated(format, "rtn", "none"), _simulated(format, "full", "default"));
  }
  const q8 = LLAMA_FTYPES.q8_0;
  rows.push(
    _ggml("ggml NVFP4", q8, GGML.nvfp4, false),
    _ggml("ggml MXFP4", q8, GGML.mxfp4, false),
    _ggml("ggml Q4_0 +imat", q8, GGML.q4_0, true),
    _ggml("ggml IQ4_NL +imat", q8, GGML.iq4_nl, true),
    _ggml("ggml Q4_K_M", LLAMA_FTYPES.q4_k_m, null, false),
    _ggml("ggml Q4_K_M +imat", LLAMA_FTYPES.q4_k_m, null, true),
  );
  return rows;
}
