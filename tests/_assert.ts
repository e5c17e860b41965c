/**
 * Assertions for tests. JSR's @std/assert cannot be installed here, so the few we need are
 * re-exported from Node's built-in `assert`, with std-style names.
 *
 * @module
 */
import { deepStrictEqual, match, ok, rejects, throws } from "node:assert/strict";

/** Asserts a truthy value. */
export function assert(value: unknown, message?: string): asserts value {
  ok(value, message);
}
/** Asserts deep equality. */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  deepStrictEqual(actual, expected, message);
}
/** Asserts a string matches a pattern. */
export function assertMatch(actual: string, pattern: RegExp, message?: string): void {
  match(actual, pattern, message);
}
/** Asserts a function throws an error matching the class and message pattern. */
export function assertThrows(
  fn: () => unknown,
  errorClass: new (...args: never[]) => Error,
  pattern?: RegExp,
): void {
  throws(fn, (e: unknown) => e instanceof errorClass && (!pattern || pattern.test(e.message)));
}
/** Asserts a promise rejects with an error matching the class and message pattern. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  errorClass: new (...args: never[]) => Error,
  pattern?: RegExp,
): Promise<void> {
  await rejects(
    fn,
    (e: unknown) => e instanceof errorClass && (!pattern || pattern.test(e.message)),
  );
}
