/**
 * The SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`) from `tokenizer.model`, as
 * llama.cpp's converter builds it in `_create_vocab_sentencepiece`: tokens, scores and types,
 * padded to the model's vocabulary size, with added tokens laid over the pieces.
 *
 * @module
 */
import { isRecord, type JsonRecord } from "./_json.ts";
import { PIECE_TYPE, type SentencePieceModel } from "./sentencepiece_model.ts";
import { looksSpecial, TOKEN_TYPE, type TokenType } from "./token_type.ts";

/** Tokens, scores and token types, indexed by token id. */
export interface ScoredVocab {
  readonly tokens: readonly string[];
  readonly scores: Float32Array;
  readonly types: Int32Array;
}

/** Inputs beside the model itself. */
export interface SentencePieceVocabOptions {
  /** `vocab_size` from config.json, or null for the number of pieces. */
  readonly vocabSize: number | null;
  /** `added_tokens.json`: content → id. */
  readonly addedTokens?: JsonRecord;
  /** `added_tokens_decoder` of `tokenizer_config.json`: id → `{content, special}`. */
  readonly addedTokensDecoder?: unknown;
}

/** Score of ids no piece fills. */
const PAD_SCORE = -10000;
/** Score of added tokens. */
const ADDED_SCORE = -1000;
const SPIECE_UNDERLINE = "\u2581";

function _pieceType(type: number): TokenType {
  switch (type) {
    case PIECE_TYPE.UNKNOWN:
      return TOKEN_TYPE.UNKNOWN;
    case PIECE_TYPE.CONTROL:
      return TOKEN_TYPE.CONTROL;
    case PIECE_TYPE.UNUSED:
      return TOKEN_TYPE.UNUSED;
    case PIECE_TYPE.BYTE:
      return TOKEN_TYPE.BYTE;
    default:
      // USER_DEFINED pieces too: the converter only asks IsUnknown/IsControl/IsUnused/IsByte.
      return TOKEN_TYPE.NORMAL;
  }
}

function _addedId(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(
      `Cannot read ${where} as its token id is not a non-negative integer: ${value}`,
    );
  }
  return value;
}

/**
 * Builds the vocabulary. Ids without a piece are `[PAD{id}]`, score −10000, UNUSED; pieces past
 * the vocabulary size are dropped. Tokens of `added_tokens.json` are USER_DEFINED and those of
 * `added_tokens_decoder` CONTROL when special (or special-looking), else USER_DEFINED with "▁"
 * written as a space; both get score −1000. Added ids past the vocabulary size are skipped.
 *
 * @throws {RangeError} for an added token whose id is not a non-negative integer.
 */
export function sentencePieceVocab(
  model: SentencePieceModel,
  options: SentencePieceVocabOptions,
): ScoredVocab {
  const size = options.vocabSize || model.pieces.length;
  const tokens = Array.from({ length: size }, (_, i) => `[PAD${i}]`);
  const scores = new Float32Array(size).fill(PAD_SCORE);
  const types = new Int32Array(size).fill(TOKEN_TYPE.UNUSED);
  model.pieces.slice(0, size).forEach((p, id) => {
    tokens[id] = p.piece;
    scores[id] = p.score;
    types[id] = _pieceType(p.type);
  });
  for (const [content, value] of Object.entries(options.addedTokens ?? {})) {
    const id = _addedId(value, `added_tokens.json entry ${JSON.stringify(content)}`);
    if (id >= size) continue;
    tokens[id] = content;
    scores[id] = ADDED_SCORE;
    types[id] = TOKEN_TYPE.USER_DEFINED;
  }
  const decoder = isRecord(options.addedTokensDecoder) ? options.addedTokensDecoder : {};
  for (const [key, data] of Object.entries(decoder)) {
    const where = `tokenizer_config.json added_tokens_decoder ${JSON.stringify(key)}`;
    const id = _addedId(/^\d+$/.test(key) ? Number(key) : NaN, where);
    if (!isRecord(data) || typeof data.content !== "string") {
      throw new TypeError(`Cannot read ${where} as it has no content string`);
    }
    if (id >= size) continue;
    let content = data.content;
    if (data.special === true || looksSpecial(content)) {
      types[id] = TOKEN_TYPE.CONTROL;
    } else {
      content = content.replaceAll(SPIECE_UNDERLINE, " ");
      types[id] = TOKEN_TYPE.USER_DEFINED;
    }
    scores[id] = ADDED_SCORE;
    tokens[id] = content;
  }
  return { tokens, scores, types };
}
