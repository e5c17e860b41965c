/**
 * Reads a SentencePiece `tokenizer.model` (a serialized `ModelProto`, see sentencepiece's
 * `sentencepiece_model.proto`): its pieces with scores and types, and the normalizer flags.
 *
 * @module
 */
import { protoBool, protoFields, protoFloat, protoInt32, protoString } from "./protobuf.ts";

/** Piece types of `ModelProto.SentencePiece.Type`. */
export const PIECE_TYPE = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;

/** One vocabulary entry; its id is its index. */
export interface SentencePiece {
  readonly piece: string;
  readonly score: number;
  /** A {@linkcode PIECE_TYPE} value. */
  readonly type: number;
}

/** The parts of a SentencePiece model the GGUF export uses. */
export interface SentencePieceModel {
  readonly pieces: readonly SentencePiece[];
  /** `normalizer_spec.add_dummy_prefix`: a space is put before the text. @default true */
  readonly addDummyPrefix: boolean;
  /** `normalizer_spec.remove_extra_whitespaces`: runs of spaces collapse. @default true */
  readonly removeExtraWhitespaces: boolean;
}

/** Field numbers of the messages read here. */
const MODEL_PIECES = 1;
const MODEL_NORMALIZER_SPEC = 3;
const PIECE_PIECE = 1;
const PIECE_SCORE = 2;
const PIECE_TYPE_FIELD = 3;
const NORMALIZER_ADD_DUMMY_PREFIX = 3;
const NORMALIZER_REMOVE_EXTRA_WHITESPACES = 4;

const FILE = "tokenizer.model";

function _piece(bytes: Uint8Array, id: number): SentencePiece {
  let piece: string | null = null;
  let score = 0;
  let type: number = PIECE_TYPE.NORMAL;
  for (const f of protoFields(bytes, `${FILE} piece ${id}`)) {
    if (f.number === PIECE_PIECE) piece = protoString(f);
    else if (f.number === PIECE_SCORE) score = protoFloat(f);
    else if (f.number === PIECE_TYPE_FIELD) type = protoInt32(f);
  }
  if (piece === null) throw new SyntaxError(`Cannot read ${FILE} as piece ${id} has no text`);
  if (type < PIECE_TYPE.NORMAL || type > PIECE_TYPE.BYTE) {
    throw new RangeError(`Cannot read ${FILE} as piece ${id} has an unknown type: ${type}`);
  }
  return { piece, score, type };
}

/**
 * Parses `tokenizer.model`.
 * @throws {SyntaxError} for bytes that are not a well-formed ModelProto.
 * @throws {RangeError} for an unknown piece type.
 */
export function parseSentencePieceModel(bytes: Uint8Array): SentencePieceModel {
  const pieces: SentencePiece[] = [];
  let addDummyPrefix = true;
  let removeExtraWhitespaces = true;
  for (const f of protoFields(bytes, FILE)) {
    if (f.number === MODEL_PIECES && f.wireType === 2) {
      pieces.push(_piece(f.bytes, pieces.length));
    } else if (f.number === MODEL_NORMALIZER_SPEC && f.wireType === 2) {
      for (const n of protoFields(f.bytes, `${FILE} normalizer_spec`)) {
        if (n.number === NORMALIZER_ADD_DUMMY_PREFIX) addDummyPrefix = protoBool(n);
        else if (n.number === NORMALIZER_REMOVE_EXTRA_WHITESPACES) {
          removeExtraWhitespaces = protoBool(n);
        }
      }
    }
  }
  if (pieces.length === 0) throw new SyntaxError(`Cannot read ${FILE} as it has no pieces`);
  return { pieces, addDummyPrefix, removeExtraWhitespaces };
}
