/**
 * `tokenizer.ggml.pre` detection as llama.cpp's converter does it: encode a fixed text that
 * exercises every pre-tokenizer rule, hash the token ids and look the hash up in a table.
 *
 * @module
 */
import type { HfTokenizer } from "./hf_tokenizer.ts";
import { preForChkhsh } from "./pre_hashes.ts";

/**
 * The fingerprint text (`chktxt` in `conversion/base.py`): 350 code points, 431 UTF-8 bytes,
 * SHA-256 a36179c1…c526da. Whitespace runs, emoji with joiners, digit runs, Khmer with combining
 * marks, CJK, Cyrillic, punctuation runs and English contractions in mixed case.
 */
export const CHKTXT = [
  "\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n",
  "🚀 (normal) 😶\u200d🌫\ufe0f (multiple emojis concatenated) ✅ 🦙🦙 ",
  "3 33 333 3333 33333 333333 3333333 33333333 3.3 3..3 3...3 ",
  "\u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785",
  "😁 ?我想在apple工作1314151天～ ------======= нещо на Български ",
  "''''''```````\"\"\"\"......!!!!!!?????? ",
  "I've been 'told he's there, 'RE you sure? 'M not sure I'll make it, 'D you like some tea? ",
  "We'Ve a'lL",
].join("");

/** The fingerprint is not in llama.cpp's table, and no `tokenizerPre` was given. */
export class UnknownPreTokenizerError extends TypeError {
  /** SHA-256 (hex) of the chktxt token ids. */
  readonly chkhsh: string;
  constructor(chkhsh: string) {
    super(
      `Cannot choose tokenizer.ggml.pre as llama.cpp's converter does not know this BPE ` +
        `pre-tokenizer (pass --tokenizer-pre NAME to set it, e.g. llama-bpe or qwen2): ` +
        `chkhsh ${chkhsh}`,
    );
    this.name = "UnknownPreTokenizerError";
    this.chkhsh = chkhsh;
  }
}

/**
 * SHA-256 (hex) of token ids written as Python writes a list (`str(list)`): `[1, 2, 3]`.
 *
 * @example
 * ```ts
 * import { chkhsh } from "./pre_tokenizer.ts";
 * import { strictEqual } from "node:assert/strict";
 * strictEqual(
 *   await chkhsh([]),
 *   "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945", // sha256("[]")
 * );
 * ```
 */
export async function chkhsh(ids: readonly number[]): Promise<string> {
  const text = `[${ids.join(", ")}]`;
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The chkhsh of a tokenizer: chktxt encoded with special tokens, as `AutoTokenizer.encode`
 * does by default, so a BOS the post-processor adds is part of the fingerprint.
 */
export function tokenizerChkhsh(tokenizer: HfTokenizer): Promise<string> {
  return chkhsh(tokenizer.encode(CHKTXT, true));
}

/**
 * The `tokenizer.ggml.pre` llama.cpp's converter would write for this tokenizer.
 * @throws {UnknownPreTokenizerError} when the fingerprint is not in the table.
 */
export async function detectPreTokenizer(tokenizer: HfTokenizer): Promise<string> {
  const hash = await tokenizerChkhsh(tokenizer);
  const pre = preForChkhsh(hash);
  if (pre === null) throw new UnknownPreTokenizerError(hash);
  return pre;
}
