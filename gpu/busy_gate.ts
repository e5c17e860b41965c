/**
 * When the GPU will probably have run what was submitted to it, so read-backs are mapped only
 * then. Deno's WebGPU (2.9) polls the device with a blocking wait inside `mapAsync` (and
 * `onSubmittedWorkDone`) until every submitted command has run: on an H100, mapping right after a
 * 48 ms kernel blocked the calling thread 47.9 ms. Mapped at once, each read-back would stall the
 * thread's reading and uploads for the GPU's whole time, so GPU time would add to the rest instead
 * of overlapping it. Waiting on a timer (which does not block) until the estimate says the GPU is
 * done keeps the thread free; the estimate learns the GPU's pace from how long each map still
 * blocked.
 *
 * @module
 */

/** Never wait longer than this for one read-back (a wrong estimate must not stall a run). */
const MAX_WAIT_MS = 50;
/** Starting pace, in ms per unit of work (units are the caller's, e.g. elements encoded). */
const START_MS_PER_UNIT = 1e-6;

/** The estimate for one device. */
export class GpuBusyGate {
  /** performance.now() at which the work submitted so far should be done. */
  #until = 0;
  #msPerUnit = START_MS_PER_UNIT;

  /** Records work just submitted, in units of the caller's choice. */
  submitted(units: number): void {
    this.#until = Math.max(performance.now(), this.#until) + units * this.#msPerUnit;
  }

  /**
   * Resolves once the work submitted so far (also while waiting) should be done, or after
   * `MAX_WAIT_MS` at most.
   */
  async idle(): Promise<void> {
    const end = performance.now() + MAX_WAIT_MS;
    for (;;) {
      const now = performance.now();
      const wait = Math.min(end, this.#until) - now;
      if (wait < 1) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  /**
   * Reports how long a call that waits for the device blocked: the GPU is idle now, and the pace
   * was underestimated when it blocked more than a little (overestimated when not at all).
   */
  blocked(ms: number): void {
    if (ms > 1) this.#msPerUnit *= 1.25;
    else if (ms < 0.25) this.#msPerUnit *= 0.97;
    this.#until = performance.now();
  }
}

const gates = new WeakMap<GPUDevice, GpuBusyGate>();

/** The gate of a device, shared by every kernel that reads back from it. */
export function busyGate(device: GPUDevice): GpuBusyGate {
  let gate = gates.get(device);
  if (gate === undefined) {
    gate = new GpuBusyGate();
    gates.set(device, gate);
  }
  return gate;
}
