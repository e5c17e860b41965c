/**
 * Process memory figures for stats and benchmarks.
 *
 * @module
 */

/**
 * Peak resident set size of this process in bytes: the kernel's high-water mark (`VmHWM`) on
 * Linux, else the current RSS.
 */
export function peakRssBytes(): number {
  try {
    const status = Deno.readTextFileSync("/proc/self/status");
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    if (m) return Number(m[1]) * 1024;
  } catch { /* not Linux */ }
  return Deno.memoryUsage().rss;
}
