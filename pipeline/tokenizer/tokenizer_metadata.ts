/**
 * The GGUF tokenizer metadata of a Hugging Face model, written as llama.cpp's converter
 * (`convert_hf_to_gguf.py`, llama.cpp 0.5.0) writes it: the same keys, GGUF types, values and
 * order, chosen by the same path for each architecture.
 *
 * Paths, tried in order per architecture:
 * - Llama, Mistral, Mixtral: SentencePiece `tokenizer.model`; else a `tokenizer.json` BPE with
 *   byte fallback (as `LlamaHfVocab`); else byte-level BPE from `tokenizer.json`.
 * - Qwen2, Qwen3: SentencePiece `tokenizer.model`; else byte-level BPE.
 * - Qwen2-MoE, Qwen3-MoE, DeepSeek-V3, gpt-oss: byte-level BPE.
 *
 * @module
 */
import { type GgufMetadata, gv } from "../gguf_metadata.ts";
import { fileText, type JsonRecord, parseJsonObject, pyTruthy } from "./_json.ts";
import { bpeMerges, bpeVocab } from "./bpe_vocab.ts";
import { loadHfTokenizer } from "./hf_tokenizer.ts";
import { isLlamaHfVocab, llamaHfVocab } from "./llama_hf_vocab.ts";
import { detectPreTokenizer } from "./pre_tokenizer.ts";
import { parseSentencePieceModel } from "./sentencepiece_model.ts";
import { type ScoredVocab, sentencePieceVocab } from "./sentencepiece_vocab.ts";
import { SpecialVocab, type SpecialVocabSources } from "./special_vocab.ts";
import type { FileContent, TokenizerFiles } from "./tokenizer_files.ts";
import { readTokenizerJson, type TokenizerJson } from "./tokenizer_json.ts";

/** Options for {@linkcode tokenizerMetadata}. */
export interface TokenizerOptions {
  /** The Hugging Face architecture, `architectures[0]` of config.json, e.g. "LlamaForCausalLM". */
  readonly architecture: string;
  /**
   * `tokenizer.ggml.pre` to write for a byte-level BPE instead of detecting it. Needed when the
   * tokenizer's fingerprint is not in llama.cpp's table. Ignored by SentencePiece vocabularies.
   */
  readonly tokenizerPre?: string;
  /** Receives notes that llama.cpp's converter logs as warnings. */
  readonly onWarning?: (message: string) => void;
}

/** The vocabulary builders, in the converter's words. */
type VocabPath = "sentencepiece" | "llama_hf" | "gpt2";

interface ArchitectureVocab {
  readonly paths: readonly VocabPath[];
  /** LlamaModel extras: add_space_prefix, CodeLlama infill tokens, Granite's add_bos. */
  readonly llama: boolean;
}

const LLAMA: ArchitectureVocab = { paths: ["sentencepiece", "llama_hf", "gpt2"], llama: true };
const QWEN: ArchitectureVocab = { paths: ["sentencepiece", "gpt2"], llama: false };
const BPE_ONLY: ArchitectureVocab = { paths: ["gpt2"], llama: false };

/** Hugging Face architecture → how llama.cpp's converter exports its vocabulary. */
const VOCAB_BY_ARCHITECTURE: Readonly<Record<string, ArchitectureVocab>> = {
  LLaMAForCausalLM: LLAMA,
  LlamaForCausalLM: LLAMA,
  MistralForCausalLM: LLAMA,
  MixtralForCausalLM: LLAMA,
  Qwen2ForCausalLM: QWEN,
  Qwen3ForCausalLM: QWEN,
  Qwen2MoeForCausalLM: BPE_ONLY,
  Qwen3MoeForCausalLM: BPE_ONLY,
  DeepseekV3ForCausalLM: BPE_ONLY,
  GptOssForCausalLM: BPE_ONLY,
};

/** CodeLlama's vocabulary size; its infill tokens have fixed ids. */
const CODE_LLAMA_VOCAB_SIZE = 32016;
const CODE_LLAMA_INFILL: readonly [string, number][] = [
  ["prefix", 32007],
  ["suffix", 32008],
  ["middle", 32009],
  ["eot", 32010],
];
/** Granite's small models (Llama architecture) must not get a BOS. */
const GRANITE_SMALL_VOCAB_SIZE = 49152;
/** The converter's default for LlamaModel's vocab_size checks. */
const LLAMA_DEFAULT_VOCAB_SIZE = 32000;

/** The parsed inputs shared by the paths. */
interface Parsed {
  readonly files: TokenizerFiles;
  readonly tokenizerJson: TokenizerJson | null;
  readonly tokenizerConfig: JsonRecord | null;
  readonly config: JsonRecord | null;
  readonly special: SpecialVocabSources;
}

function _parse(files: TokenizerFiles): Parsed {
  const optional = (content: FileContent | undefined, name: string) =>
    content === undefined ? null : parseJsonObject(content, name);
  const tokenizerJson = files.tokenizerJson === undefined
    ? null
    : readTokenizerJson(files.tokenizerJson);
  const tokenizerConfig = optional(files.tokenizerConfig, "tokenizer_config.json");
  const config = optional(files.config, "config.json");
  const chatTemplateJson = optional(files.chatTemplateJson, "chat_template.json");
  const additional = files.additionalChatTemplates;
  const special: SpecialVocabSources = {
    tokenizerJson: tokenizerJson?.raw ?? null,
    tokenizerConfig,
    config,
    ...(files.chatTemplateJinja !== undefined &&
      { chatTemplateJinja: fileText(files.chatTemplateJinja) }),
    ...(additional !== undefined && {
      additionalChatTemplates: new Map([...additional].map(([n, t]) => [n, fileText(t)])),
    }),
    ...(chatTemplateJson !== null && { chatTemplateJson }),
  };
  return { files, tokenizerJson, tokenizerConfig, config, special };
}

/** A `vocab_size` that is a positive integer, else null. */
function _vocabSize(config: JsonRecord | null, keys: readonly string[]): number | null {
  for (const key of keys) {
    if (config && key in config) {
      const v = config[key];
      return typeof v === "number" && Number.isSafeInteger(v) && v > 0 ? v : null;
    }
  }
  return null;
}

type Warn = (message: string) => void;

function _writeScored(meta: GgufMetadata, vocab: ScoredVocab, p: Parsed, warn: Warn): void {
  meta.set("tokenizer.ggml.model", gv.str("llama"));
  meta.set("tokenizer.ggml.pre", gv.str("default"));
  meta.set("tokenizer.ggml.tokens", gv.strings(vocab.tokens));
  meta.set("tokenizer.ggml.scores", gv.f32s(vocab.scores));
  meta.set("tokenizer.ggml.token_type", gv.i32s(vocab.types));
  new SpecialVocab(p.special, { nVocab: vocab.tokens.length, onWarning: warn }).writeTo(meta);
}

function _sentencePiece(meta: GgufMetadata, model: Uint8Array, p: Parsed, warn: Warn): void {
  const addedTokens = p.files.addedTokens === undefined
    ? undefined
    : parseJsonObject(p.files.addedTokens, "added_tokens.json");
  const vocab = sentencePieceVocab(parseSentencePieceModel(model), {
    vocabSize: _vocabSize(p.config, ["vocab_size_per_layer_input", "vocab_size"]),
    ...(addedTokens && { addedTokens }),
    addedTokensDecoder: p.tokenizerConfig?.added_tokens_decoder,
  });
  _writeScored(meta, vocab, p, warn);
}

function _llamaHf(meta: GgufMetadata, tokenizer: TokenizerJson, p: Parsed, warn: Warn): void {
  const map = p.files.specialTokensMap === undefined
    ? {}
    : parseJsonObject(p.files.specialTokensMap, "special_tokens_map.json");
  _writeScored(meta, llamaHfVocab(tokenizer, p.tokenizerConfig ?? {}, map), p, warn);
}

async function _gpt2(
  meta: GgufMetadata,
  tokenizer: TokenizerJson,
  tokenizerText: FileContent,
  p: Parsed,
  options: TokenizerOptions,
): Promise<void> {
  const hf = loadHfTokenizer(tokenizerText, p.files.tokenizerConfig);
  const vocab = bpeVocab(tokenizer, hf, _vocabSize(p.config, ["vocab_size"]));
  const pre = options.tokenizerPre ?? await detectPreTokenizer(hf);
  const merges = bpeMerges(tokenizer, p.files.mergesTxt);
  meta.set("tokenizer.ggml.model", gv.str("gpt2"));
  meta.set("tokenizer.ggml.pre", gv.str(pre));
  meta.set("tokenizer.ggml.tokens", gv.strings(vocab.tokens));
  meta.set("tokenizer.ggml.token_type", gv.i32s(vocab.types));
  meta.set("tokenizer.ggml.merges", gv.strings(merges));
  new SpecialVocab(p.special, { onWarning: options.onWarning ?? (() => {}) }).writeTo(meta);
}

/** LlamaModel's extras after the vocabulary: CodeLlama's infill ids and Granite's BOS. */
function _llamaExtras(meta: GgufMetadata, p: Parsed, warn: Warn): void {
  const size = p.config && "vocab_size" in p.config
    ? p.config.vocab_size
    : LLAMA_DEFAULT_VOCAB_SIZE;
  if (size === CODE_LLAMA_VOCAB_SIZE) {
    const infill = new SpecialVocab(p.special, {
      types: CODE_LLAMA_INFILL.map(([type]) => type),
      onWarning: warn,
    });
    for (const [type, id] of CODE_LLAMA_INFILL) infill.setSpecialToken(type, id);
    infill.writeTo(meta);
  }
  if (size === GRANITE_SMALL_VOCAB_SIZE) {
    meta.set("tokenizer.ggml.add_bos_token", gv.bool(false));
  }
}

/**
 * Builds the tokenizer metadata of a model from its tokenizer files.
 *
 * The caller reads the files (e.g. with `readTokenizerFiles`) and passes them in; nothing
 * here touches the file system or the network. The keys come in the converter's order, so the
 * caller can append them after the architecture keys.
 *
 * @throws {TypeError} for an architecture with no known tokenizer path, a model with neither
 *   `tokenizer.model` nor `tokenizer.json`, or files the chosen path cannot use.
 * @throws {UnknownPreTokenizerError} when a byte-level BPE's pre-tokenizer fingerprint is not in
 *   llama.cpp's table and `tokenizerPre` is not given.
 * @throws {SyntaxError} for a file that does not parse.
 */
export async function tokenizerMetadata(
  files: TokenizerFiles,
  options: TokenizerOptions,
): Promise<GgufMetadata> {
  const arch = VOCAB_BY_ARCHITECTURE[options.architecture];
  if (!arch) {
    throw new TypeError(
      `Cannot export the tokenizer of ${options.architecture} as its vocabulary path is not known: supported are ${
        Object.keys(VOCAB_BY_ARCHITECTURE).join(", ")
      }`,
    );
  }
  if (options.tokenizerPre !== undefined && !/^[\w.-]+$/.test(options.tokenizerPre)) {
    throw new TypeError(
      `Cannot use tokenizer pre ${JSON.stringify(options.tokenizerPre)} as it is not a plain name`,
    );
  }
  const warn = options.onWarning ?? (() => {});
  const p = _parse(files);
  const meta: GgufMetadata = new Map();
  if (arch.llama && p.tokenizerConfig) {
    const addPrefixSpace = p.tokenizerConfig.add_prefix_space;
    if (addPrefixSpace !== undefined && addPrefixSpace !== null) {
      meta.set("tokenizer.ggml.add_space_prefix", gv.bool(pyTruthy(addPrefixSpace)));
    }
    if (p.tokenizerConfig.tokenizer_class === "HybridDNATokenizer") {
      throw new TypeError("Cannot export the tokenizer as HybridDNATokenizer is not supported");
    }
  }
  const path = arch.paths.find((candidate) => {
    if (candidate === "sentencepiece") return files.tokenizerModel !== undefined;
    if (candidate === "llama_hf") {
      return p.tokenizerJson !== null && isLlamaHfVocab(p.tokenizerJson);
    }
    return true;
  });
  if (path === "sentencepiece" && files.tokenizerModel !== undefined) {
    _sentencePiece(meta, files.tokenizerModel, p, warn);
  } else if (p.tokenizerJson === null || files.tokenizerJson === undefined) {
    throw new TypeError(
      `Cannot export the tokenizer as the model has ${
        arch.paths.includes("sentencepiece") ? "neither tokenizer.model nor" : "no"
      } tokenizer.json`,
    );
  } else if (path === "llama_hf") {
    _llamaHf(meta, p.tokenizerJson, p, warn);
  } else {
    await _gpt2(meta, p.tokenizerJson, files.tokenizerJson, p, options);
  }
  if (arch.llama) _llamaExtras(meta, p, warn);
  return meta;
}

/** Whether {@linkcode tokenizerMetadata} knows the vocabulary path of an architecture. */
export function hasTokenizerPath(architecture: string): boolean {
  return architecture in VOCAB_BY_ARCHITECTURE;
}
