/**
 * Tokenizer export: the `tokenizer.*` GGUF metadata of a Hugging Face model, as llama.cpp's
 * converter writes it, from the model's tokenizer files.
 *
 * @module
 */
export {
  hasTokenizerPath,
  tokenizerMetadata,
  type TokenizerOptions,
} from "./tokenizer_metadata.ts";
export {
  type FileContent,
  readTokenizerFiles,
  TOKENIZER_FILE_PATHS,
  type TokenizerFileReader,
  type TokenizerFiles,
} from "./tokenizer_files.ts";
export { chkhsh, CHKTXT, UnknownPreTokenizerError } from "./pre_tokenizer.ts";
