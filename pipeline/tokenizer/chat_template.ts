/**
 * Writes a chat template the way gguf-py's `add_chat_template` does: a string becomes
 * `tokenizer.chat_template`; a list of `{name, template}` becomes one key per named template plus
 * the list of names, with the "default" entry as `tokenizer.chat_template`.
 *
 * @module
 */
import { type GgufMetadata, gv } from "../gguf_metadata.ts";
import { field } from "./_json.ts";

const CHAT_TEMPLATE = "tokenizer.chat_template";
const CHAT_TEMPLATES = "tokenizer.chat_templates";

/** A template name with every character outside `[A-Za-z0-9]` replaced by `_`. */
function _safeName(name: string): string {
  return Array.from(name, (c) => /^[A-Za-z0-9]$/.test(c) ? c : "_").join("");
}

/**
 * Adds the chat template keys to `metadata`.
 * @param value a template string, or a list of `{name, template}` objects.
 * @throws {TypeError} when a list entry is not an object or its template is not a string.
 */
export function writeChatTemplate(
  metadata: GgufMetadata,
  value: string | readonly unknown[],
): void {
  if (typeof value === "string") {
    metadata.set(CHAT_TEMPLATE, gv.str(value));
    return;
  }
  let fallback: string | null = null;
  const names: string[] = [];
  for (const [i, choice] of value.entries()) {
    const rawName = field(choice, "name") ?? "";
    const template = field(choice, "template") ?? null;
    if (typeof rawName !== "string" || (template !== null && typeof template !== "string")) {
      throw new TypeError(
        `Cannot write chat template ${i} as it is not {name, template} strings: ${
          JSON.stringify(choice)
        }`,
      );
    }
    const name = _safeName(rawName);
    if (name === "" || template === null) continue;
    if (name === "default") {
      fallback = template;
    } else {
      if (!names.includes(name)) names.push(name);
      metadata.set(`${CHAT_TEMPLATE}.${name}`, gv.str(template));
    }
  }
  if (names.length > 0) metadata.set(CHAT_TEMPLATES, gv.strings(names));
  if (fallback !== null) metadata.set(CHAT_TEMPLATE, gv.str(fallback));
}
