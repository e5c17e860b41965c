/**
 * The worker side of {@link import("./worker_suite.ts").testSuiteInWorker}: collects the suite's
 * `Deno.test` registrations, runs them one after another and posts each result.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import type { SuiteMessage } from "./worker_suite.ts";

interface SuiteTest {
  readonly name: string;
  readonly ignore: boolean;
  readonly fn: () => unknown;
}

type Registration =
  | [name: string, fn: () => unknown]
  | [options: { name: string; fn: () => unknown; ignore?: boolean }];

const tests: SuiteTest[] = [];

function register(...args: Registration): void {
  if (args.length === 2 && typeof args[0] === "string" && typeof args[1] === "function") {
    tests.push({ name: args[0], ignore: false, fn: args[1] });
  } else if (args.length === 1 && typeof args[0] === "object" && args[0] !== null) {
    const { name, fn, ignore } = args[0];
    tests.push({ name, ignore: ignore ?? false, fn });
  } else {
    throw new TypeError(
      "Cannot register the test in a worker suite: use Deno.test(name, fn) or Deno.test({ name, fn, ignore })",
    );
  }
}

function post(message: SuiteMessage): void {
  self.postMessage(message);
}

function describe(error: unknown): string {
  return error instanceof Error ? (error.stack ?? String(error)) : String(error);
}

/** The kernel's id of this thread, which the host waits on; null off Linux. */
function threadId(): number | null {
  if (Deno.build.os !== "linux") return null;
  const libc = Deno.dlopen("libc.so.6", { gettid: { parameters: [], result: "i32" } });
  try {
    return libc.symbols.gettid();
  } finally {
    libc.close();
  }
}

self.onmessage = async (event: MessageEvent<string>) => {
  post({ kind: "started", threadId: threadId() });
  try {
    Object.defineProperty(Deno, "test", { value: register, configurable: true, writable: true });
    await import(event.data);
  } catch (error: unknown) {
    return post({ kind: "crashed", error: `Cannot load ${event.data}: ${describe(error)}` });
  }
  for (const test of tests) {
    if (test.ignore) {
      post({ kind: "ignored", name: test.name });
      continue;
    }
    try {
      await test.fn();
      post({ kind: "passed", name: test.name });
    } catch (error: unknown) {
      post({ kind: "failed", name: test.name, error: describe(error) });
    }
  }
  post({ kind: "done" });
};
