/**
 * The SentencePiece-style vocabulary (`tokenizer.ggml.model = "llama"`) of a `tokenizer.json` BPE
 * with byte fallback and no `tokenizer.model`, as gguf-py's `LlamaHfVocab` builds it: pieces in
 * id order with a flat score, `<0xXX>` pieces typed BYTE, special tokens CONTROL, then the added
 * tokens beyond the base vocabulary.
 *
 * @module
 */
import { field, type JsonRecord, pyTruthy } from "./_json.ts";
import type { ScoredVocab } from "./sentencepiece_vocab.ts";
import { TOKEN_TYPE } from "./token_type.ts";
import type { TokenizerJson } from "./tokenizer_json.ts";

/** The only score `LlamaHfVocab` writes. */
const FLAT_SCORE = -1000;
const BYTE_PIECE = /^<0x[0-9A-Fa-f]{2}>$/;
/** Keys of the special tokens map (`SPECIAL_TOKENS_ATTRIBUTES` in transformers). */
const SPECIAL_KEYS = [
  "bos_token",
  "eos_token",
  "unk_token",
  "sep_token",
  "pad_token",
  "cls_token",
  "mask_token",
] as const;

/**
 * Whether the converter takes this path for `tokenizer.json`: a BPE model with byte fallback and a
 * Sequence decoder. Llama 3's byte-level BPE (ignore_merges, no byte fallback) does not.
 */
export function isLlamaHfVocab(tokenizer: TokenizerJson): boolean {
  const m = tokenizer.model;
  const byteFallback = m.byte_fallback === undefined ? null : pyTruthy(m.byte_fallback);
  const isLlama3 = tokenizer.modelType === "BPE" && pyTruthy(m.ignore_merges) &&
    !(byteFallback ?? true);
  return !isLlama3 && tokenizer.modelType === "BPE" && (byteFallback ?? false) &&
    field(tokenizer.raw.decoder, "type") === "Sequence";
}

function _content(value: unknown): string | null {
  if (typeof value === "string") return value;
  const content = field(value, "content");
  return typeof content === "string" ? content : null;
}

/** Contents of every special token, `special_tokens_map.json` overriding `tokenizer_config.json`. */
function _specialContents(config: JsonRecord, map: JsonRecord): string[] {
  const merged: Record<string, unknown> = { ...config };
  for (const [key, value] of Object.entries(map)) merged[key] = value;
  const out: string[] = [];
  for (const key of SPECIAL_KEYS) {
    const content = _content(merged[key]);
    if (content !== null) out.push(content);
  }
  const extra = merged.additional_special_tokens;
  if (Array.isArray(extra)) {
    for (const e of extra) {
      const content = _content(e);
      if (content !== null) out.push(content);
    }
  }
  return out;
}

/**
 * Builds the vocabulary.
 * @param tokenizerConfig `tokenizer_config.json` (may be empty).
 * @param specialTokensMap `special_tokens_map.json` (may be empty).
 * @throws {TypeError} when a special token is not in the vocabulary.
 * @throws {RangeError} when the base vocabulary has a gap or the added tokens beyond it are not
 *   contiguous (the GGUF addresses tokens by position).
 */
export function llamaHfVocab(
  tokenizer: TokenizerJson,
  tokenizerConfig: JsonRecord,
  specialTokensMap: JsonRecord,
): ScoredVocab {
  const baseSize = tokenizer.vocab.size;
  const byContent = new Map(tokenizer.vocab);
  for (const t of tokenizer.addedTokens) byContent.set(t.content, t.id);
  const byId = new Map<number, string>();
  for (const [content, id] of byContent) byId.set(id, content);

  const specials = new Map<string, number>();
  for (const content of _specialContents(tokenizerConfig, specialTokensMap)) {
    const id = byContent.get(content);
    if (id === undefined) {
      throw new TypeError(
        `Cannot export tokenizer.json as special token ${
          JSON.stringify(content)
        } is not in its vocabulary`,
      );
    }
    specials.set(content, id);
  }
  const specialIds = new Set(specials.values());

  const added = [...new Map(tokenizer.addedTokens.map((t) => [t.content, t.id]))]
    .filter(([, id]) => id >= baseSize)
    .sort((a, b) => a[1] - b[1]);
  const size = baseSize + added.length;
  const tokens: string[] = [];
  const scores = new Float32Array(size).fill(FLAT_SCORE);
  const types = new Int32Array(size);
  for (let id = 0; id < baseSize; id++) {
    const token = byId.get(id);
    if (token === undefined) {
      throw new RangeError(
        `Cannot export tokenizer.json as no token has id ${id}, below its vocabulary size: ${baseSize}`,
      );
    }
    tokens.push(token);
    types[id] = BYTE_PIECE.test(token)
      ? TOKEN_TYPE.BYTE
      : specialIds.has(id)
      ? TOKEN_TYPE.CONTROL
      : TOKEN_TYPE.NORMAL;
  }
  for (const [content, id] of added) {
    if (id !== tokens.length) {
      throw new RangeError(
        `Cannot export tokenizer.json as added token ${
          JSON.stringify(content)
        } has id ${id}, not the next id: ${tokens.length}`,
      );
    }
    types[id] = specials.has(content) ? TOKEN_TYPE.CONTROL : TOKEN_TYPE.USER_DEFINED;
    tokens.push(content);
  }
  return { tokens, scores, types };
}
