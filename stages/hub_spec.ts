/**
 * Parses `hf:owner/name[@revision]`, the way a model on the Hugging Face Hub is named on the
 * command line.
 *
 * @module
 */

/** A model repo on the Hub and the revision asked for. */
export interface HubSpec {
  /** `owner/name`. */
  readonly repo: string;
  /** Branch, tag or commit; absent means the repo's default branch. */
  readonly revision?: string;
}

const PREFIX = "hf:";
/**
 * huggingface_hub's `validate_repo_id`: word characters, `-` and `.`, at most 96, starting and
 * ending with a word character; `--` and `..` are refused separately.
 */
const NAME = /^\w(?:[\w.-]{0,94}\w)?$/;
const MAX_REVISION_CHARS = 256;

/** Whether `input` names a Hub model (starts with `hf:`) rather than a folder. */
export function isHubSpec(input: string): boolean {
  return input.startsWith(PREFIX);
}

/**
 * Parses `hf:owner/name` or `hf:owner/name@revision` (a branch, tag, `refs/pr/N` or commit).
 *
 * @param input The spec as typed.
 * @returns Repo and revision.
 * @throws {TypeError} when the spec is malformed.
 *
 * @example Repo with a branch
 * ```ts
 * import { deepStrictEqual } from "node:assert/strict";
 * import { parseHubSpec } from "./hub_spec.ts";
 * deepStrictEqual(parseHubSpec("hf:Qwen/Qwen3-0.6B@main"), { repo: "Qwen/Qwen3-0.6B", revision: "main" });
 * deepStrictEqual(parseHubSpec("hf:Qwen/Qwen3-0.6B"), { repo: "Qwen/Qwen3-0.6B" });
 * ```
 */
export function parseHubSpec(input: string): HubSpec {
  const fail = (reason: string): never => {
    throw new TypeError(`Cannot parse Hub model as ${reason}: ${JSON.stringify(input)}`);
  };
  if (!input.startsWith(PREFIX)) fail("it lacks the hf: prefix");
  const body = input.slice(PREFIX.length);
  const at = body.indexOf("@");
  const repo = at < 0 ? body : body.slice(0, at);
  const parts = repo.split("/");
  if (parts.length !== 2) fail("it must look like hf:owner/name[@revision]");
  for (const part of parts) {
    if (!NAME.test(part) || part.includes("--") || part.includes("..")) {
      fail(`${JSON.stringify(part)} is not a valid Hub owner or repo name`);
    }
  }
  if (at < 0) return { repo };
  const revision = body.slice(at + 1);
  if (
    revision === "" || revision.length > MAX_REVISION_CHARS || /[\s@?#\\]/.test(revision) ||
    revision.startsWith("/") || revision.endsWith("/") || revision.includes("..")
  ) {
    fail("the revision after @ is empty or not a valid branch, tag or commit");
  }
  return { repo, revision };
}
