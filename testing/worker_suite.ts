/**
 * Runs a test suite (a module that registers `Deno.test`s) on a worker thread of its own, and
 * does not finish until that thread has exited. Each of the suite's tests becomes a step.
 *
 * Why: without Vulkan, Deno's WebGPU runs on Mesa through GL, and glvnd's libEGL keeps state for
 * every thread that used it. A thread that still holds that state when the process exits frees it
 * a second time after libEGL's own destructor did, and glibc aborts the finished test run ("double
 * free or corruption", "corrupted size vs. prev_size in fastbins"). `deno test` runs test files on
 * threads that live until the process exits, so four bare WebGPU test files crash about one run
 * in twenty; a suite that opens the GPU runs here instead, on a thread that is gone before its
 * test ends. With this, the same four files passed 180 runs in a row.
 *
 * Inside the worker `Deno.test(name, fn)` and `Deno.test({ name, fn, ignore })` are supported;
 * test functions get no context (no steps), and Deno's sanitizers do not look at the worker.
 *
 * @module
 */

/** Messages the worker posts, in order: started, then one per test, then done. */
export type SuiteMessage =
  | { readonly kind: "started"; readonly threadId: number | null }
  | { readonly kind: "passed" | "ignored"; readonly name: string }
  | { readonly kind: "failed"; readonly name: string; readonly error: string }
  | { readonly kind: "done" }
  | { readonly kind: "crashed"; readonly error: string };

const WORKER = new URL("./_worker_suite_main.ts", import.meta.url);
/** How long a terminated worker's thread may take to exit. */
const EXIT_TIMEOUT_MS = 10_000;

/** Registers one test, `name`, that runs the suite at `suite` on its own thread. */
export function testSuiteInWorker(suite: URL, name: string): void {
  Deno.test(name, async (t) => {
    const worker = new Worker(WORKER, { type: "module" });
    const inbox = new _Inbox(worker);
    let threadId: number | null = null;
    try {
      worker.postMessage(suite.href);
      for (;;) {
        const message = await inbox.next();
        if (message.kind === "started") threadId = message.threadId;
        else if (message.kind === "done") break;
        else if (message.kind === "crashed") throw new Error(message.error);
        else {
          await t.step({
            name: message.name,
            ignore: message.kind === "ignored",
            fn() {
              if (message.kind === "failed") throw new Error(message.error);
            },
          });
        }
      }
    } finally {
      worker.terminate();
      if (threadId !== null) await _threadGone(threadId);
    }
  });
}

/** Messages of a worker, one at a time, or its uncaught error. */
class _Inbox {
  readonly #queue: (SuiteMessage | Error)[] = [];
  #wake: (() => void) | null = null;

  constructor(worker: Worker) {
    worker.onmessage = (event: MessageEvent<SuiteMessage>) => this.#push(event.data);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#push(new Error(`Cannot run the suite as its worker failed: ${event.message}`));
    };
  }

  async next(): Promise<SuiteMessage> {
    while (this.#queue.length === 0) await new Promise<void>((wake) => this.#wake = wake);
    const item = this.#queue.shift()!;
    if (item instanceof Error) throw item;
    return item;
  }

  #push(item: SuiteMessage | Error): void {
    this.#queue.push(item);
    this.#wake?.();
    this.#wake = null;
  }
}

/** Waits until Linux no longer lists the thread among the process's tasks. */
async function _threadGone(threadId: number): Promise<void> {
  const deadline = Date.now() + EXIT_TIMEOUT_MS;
  while (Date.now() < deadline) {
    try {
      await Deno.stat(`/proc/self/task/${threadId}`);
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`Cannot finish as the suite's thread ${threadId} did not exit`);
}
