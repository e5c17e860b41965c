/**
 * The files of a model folder that decide its GGUF tokenizer, and a reader that collects them
 * from any source that can read a file by path (a local folder, the Hub).
 *
 * @module
 */

/** File contents as text or raw UTF-8 bytes; absent when the model has no such file. */
export type FileContent = string | Uint8Array;

/** The tokenizer files of one model, as read by the caller. */
export interface TokenizerFiles {
  /** `tokenizer.json` (Hugging Face fast tokenizer). */
  readonly tokenizerJson?: FileContent;
  /** `tokenizer.model` (SentencePiece ModelProto, binary). */
  readonly tokenizerModel?: Uint8Array;
  /** `tokenizer_config.json`. */
  readonly tokenizerConfig?: FileContent;
  /** `config.json`: `vocab_size` and `{bos,eos,…}_token_id` fallbacks. */
  readonly config?: FileContent;
  /** `special_tokens_map.json`: which tokens a `tokenizer.json` BPE with byte fallback marks control. */
  readonly specialTokensMap?: FileContent;
  /** `added_tokens.json`: extra SentencePiece tokens. */
  readonly addedTokens?: FileContent;
  /** `merges.txt`: BPE merges when `tokenizer.json` has none. */
  readonly mergesTxt?: FileContent;
  /** `chat_template.jinja`: the chat template when `tokenizer_config.json` has none. */
  readonly chatTemplateJinja?: FileContent;
  /** `chat_template.json`: read only when there is no `chat_template.jinja`. */
  readonly chatTemplateJson?: FileContent;
  /** `additional_chat_templates/<name>.jinja`, by name (used only with `chat_template.jinja`). */
  readonly additionalChatTemplates?: ReadonlyMap<string, FileContent>;
}

/** Paths of the single files in {@linkcode TokenizerFiles}, relative to the model root. */
export const TOKENIZER_FILE_PATHS = {
  tokenizerJson: "tokenizer.json",
  tokenizerModel: "tokenizer.model",
  tokenizerConfig: "tokenizer_config.json",
  config: "config.json",
  specialTokensMap: "special_tokens_map.json",
  addedTokens: "added_tokens.json",
  mergesTxt: "merges.txt",
  chatTemplateJinja: "chat_template.jinja",
  chatTemplateJson: "chat_template.json",
} as const satisfies Record<Exclude<keyof TokenizerFiles, "additionalChatTemplates">, string>;

/** Folder of the extra named chat templates. */
const ADDITIONAL_TEMPLATES_DIR = "additional_chat_templates/";

/** What {@linkcode readTokenizerFiles} needs from a model source. */
export interface TokenizerFileReader {
  /** A whole file, or null when the model has no such file. */
  readFile(path: string): Promise<Uint8Array | null>;
  /** Every file path of the model, `/`-separated. Needed only for additional chat templates. */
  list?(): Promise<string[]>;
}

/**
 * Reads every tokenizer file the model has. Missing files are left out.
 *
 * @example Reading from an in-memory folder
 * ```ts
 * import { readTokenizerFiles } from "./tokenizer_files.ts";
 * import { deepStrictEqual } from "node:assert/strict";
 * const folder = new Map([["tokenizer.json", new TextEncoder().encode("{}")]]);
 * const files = await readTokenizerFiles({ readFile: (p) => Promise.resolve(folder.get(p) ?? null) });
 * deepStrictEqual(Object.keys(files), ["tokenizerJson"]);
 * ```
 */
export async function readTokenizerFiles(source: TokenizerFileReader): Promise<TokenizerFiles> {
  const files: { -readonly [K in keyof TokenizerFiles]: TokenizerFiles[K] } = {};
  const keys = Object.keys(TOKENIZER_FILE_PATHS) as (keyof typeof TOKENIZER_FILE_PATHS)[];
  const contents = await Promise.all(keys.map((k) => source.readFile(TOKENIZER_FILE_PATHS[k])));
  keys.forEach((k, i) => {
    const bytes = contents[i];
    if (bytes) files[k] = bytes;
  });
  if (files.chatTemplateJinja && source.list) {
    const extra = (await source.list()).filter((p) =>
      p.startsWith(ADDITIONAL_TEMPLATES_DIR) && p.endsWith(".jinja") &&
      !p.slice(ADDITIONAL_TEMPLATES_DIR.length).includes("/")
    ).sort();
    if (extra.length > 0) {
      const templates = new Map<string, Uint8Array>();
      for (const path of extra) {
        const bytes = await source.readFile(path);
        if (bytes) {
          templates.set(path.slice(ADDITIONAL_TEMPLATES_DIR.length, -".jinja".length), bytes);
        }
      }
      files.additionalChatTemplates = templates;
    }
  }
  return files;
}
