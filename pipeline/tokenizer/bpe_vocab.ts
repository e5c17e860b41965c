/**
 * The byte-level BPE vocabulary (`tokenizer.ggml.model = "gpt2"`) from `tokenizer.json`, as
 * llama.cpp's converter builds it in `get_vocab_base`: tokens by id in Hugging Face's
 * byte-to-unicode spelling, their types, and the merges.
 *
 * @module
 */
import { fileText } from "./_json.ts";
import type { HfTokenizer } from "./hf_tokenizer.ts";
import { looksSpecial, TOKEN_TYPE } from "./token_type.ts";
import type { AddedToken, TokenizerJson } from "./tokenizer_json.ts";
import type { FileContent } from "./tokenizer_files.ts";

/** Tokens and token types, indexed by token id. */
export interface BpeVocab {
  readonly tokens: readonly string[];
  readonly types: Int32Array;
}

/** SentencePiece's word-boundary mark, which user-defined tokens get back as a space. */
const SPIECE_UNDERLINE = "\u2581";

/**
 * Builds the token list and token types. Ids below `vocabSize` that no token uses become
 * `[PAD{id}]` typed UNUSED. Added tokens are CONTROL when special (or special-looking), else
 * USER_DEFINED; an added token the normalizer must not touch is first passed through the
 * tokenizer (encode, then decode), as the converter does, so that llama.cpp sees it pre-normalized.
 *
 * @param vocabSize `vocab_size` from config.json, or null to use the tokenizer's own size.
 * @throws {TypeError} when the model is not BPE.
 * @throws {RangeError} when a token id is not below the vocabulary size.
 */
export function bpeVocab(
  tokenizer: TokenizerJson,
  hf: HfTokenizer,
  vocabSize: number | null,
): BpeVocab {
  if (tokenizer.modelType !== "BPE") {
    throw new TypeError(
      `Cannot export tokenizer.json as a gpt2 vocabulary as its model is not BPE: ${tokenizer.modelType}`,
    );
  }
  const byId = new Map<number, string>();
  const strings = new Set<string>();
  for (const [token, id] of tokenizer.vocab) {
    byId.set(id, token);
    strings.add(token);
  }
  const added = new Map<string, AddedToken>();
  for (const token of tokenizer.addedTokens) {
    byId.set(token.id, token.content);
    strings.add(token.content);
    added.set(token.content, token);
  }
  const size = vocabSize ?? strings.size;
  let maxId = -1;
  for (const id of byId.keys()) maxId = Math.max(maxId, id);
  if (maxId >= size) {
    throw new RangeError(
      `Cannot export the vocabulary as token id ${maxId} is not below the vocabulary size: ${size}`,
    );
  }
  const tokens: string[] = [];
  const types = new Int32Array(size);
  for (let id = 0; id < size; id++) {
    let token = byId.get(id);
    if (token === undefined) {
      tokens.push(`[PAD${id}]`);
      types[id] = TOKEN_TYPE.UNUSED;
      continue;
    }
    const addedToken = added.get(token);
    if (addedToken) {
      if (!addedToken.normalized) token = hf.decode(hf.encode(token, false));
      if (addedToken.special || looksSpecial(token)) {
        types[id] = TOKEN_TYPE.CONTROL;
      } else {
        token = token.replaceAll(SPIECE_UNDERLINE, " ");
        types[id] = TOKEN_TYPE.USER_DEFINED;
      }
    } else {
      types[id] = TOKEN_TYPE.NORMAL;
    }
    tokens.push(token);
  }
  return { tokens, types };
}

/** A space inside a merge part, spelled as byte-level BPE spells it (U+0120). */
const ENCODED_SPACE = "\u0120";

function _mergesFromJson(merges: unknown): string[] | null {
  if (!Array.isArray(merges) || merges.length === 0) return null;
  if (merges.every((m): m is string => typeof m === "string")) return merges;
  const isPair = (m: unknown): m is [string, string] =>
    Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string";
  if (merges.every(isPair)) {
    // The pair form (transformers 4.45+) allows spaces inside a part; llama.cpp splits a merge
    // at its first space, so a space inside a part is written as U+0120.
    return merges.map(([a, b]) =>
      `${a.replaceAll(" ", ENCODED_SPACE)} ${b.replaceAll(" ", ENCODED_SPACE)}`
    );
  }
  throw new TypeError(
    `Cannot read tokenizer.json merges as they are neither "a b" strings nor [a, b] pairs: ${
      JSON.stringify(merges[0])
    }`,
  );
}

function _mergesFromTxt(text: string): string[] {
  const lines = text.split(/\r?\n/);
  // A first line starting with "#" is a version header.
  if (lines[0]?.trim().startsWith("#")) lines.shift();
  const merges: string[] = [];
  for (const line of lines) {
    const parts = line.trim().split(/\s+/);
    if (parts.length === 2) merges.push(`${parts[0]} ${parts[1]}`);
  }
  return merges;
}

/**
 * The merges as `"a b"` strings: `model.merges` of `tokenizer.json` in either form, else
 * `merges.txt`.
 * @throws {TypeError} when there are none, since llama.cpp cannot load a gpt2 vocabulary
 *   without merges.
 */
export function bpeMerges(tokenizer: TokenizerJson, mergesTxt?: FileContent): string[] {
  const merges = _mergesFromJson(tokenizer.model.merges) ??
    (mergesTxt === undefined ? [] : _mergesFromTxt(fileText(mergesTxt)));
  if (merges.length === 0) {
    throw new TypeError(
      "Cannot export a gpt2 vocabulary as tokenizer.json has no merges and merges.txt gives none",
    );
  }
  return merges;
}
