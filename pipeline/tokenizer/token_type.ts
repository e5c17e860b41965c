/**
 * Token types as llama.cpp stores them in `tokenizer.ggml.token_type` (gguf-py `TokenType`, the
 * same numbers as SentencePiece's piece types), and the converter's test for added tokens that
 * ought to be control tokens.
 *
 * @module
 */

/** `tokenizer.ggml.token_type` values. */
export const TOKEN_TYPE = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** One of the {@linkcode TOKEN_TYPE} values. */
export type TokenType = (typeof TOKEN_TYPE)[keyof typeof TOKEN_TYPE];

/** Added tokens some models forget to mark special (deepseek-coder, gemma). */
const SPECIAL_LOOKING = new Set(["<pad>", "<mask>", "<2mass>", "[@BOS@]"]);

/**
 * Whether an added token looks like a control token even though its `special` flag is false:
 * `<|…|>`, `<｜…｜>` (full-width bars), `<unused…>` and a few fixed names. The converter types
 * such tokens CONTROL.
 */
export function looksSpecial(text: string): boolean {
  return SPECIAL_LOOKING.has(text) ||
    (text.startsWith("<|") && text.endsWith("|>")) ||
    (text.startsWith("<\uff5c") && text.endsWith("\uff5c>")) ||
    (text.startsWith("<unused") && text.endsWith(">"));
}
