// write 2 GB to a file with different write sizes / concurrency
const lib = Deno.dlopen("libc.so.6", { pwrite: { parameters: ["i32", "buffer", "usize", "i64"], result: "isize", nonblocking: true }, pwriteSync: { name: "pwrite", parameters: ["i32", "buffer", "usize", "i64"], result: "isize" }, open: { parameters: ["buffer", "i32", "i32"], result: "i32" }, close: { parameters: ["i32"], result: "i32" } });
const total = 2 ** 31;
const mode = Deno.args[0]!; const size = Number(Deno.args[1]); const conc = Number(Deno.args[2] ?? 1);
const bufs = Array.from({ length: conc }, () => { const b = new Uint8Array(size); for (let i = 0; i < size; i += 4096) b[i] = i & 255; return b; });
const path = "/tmp/wtest.bin";
const cpu = () => { const f = Deno.readTextFileSync("/proc/self/stat").split(") ")[1]!.split(" "); return [Number(f[11]) * 10, Number(f[12]) * 10]; };
const c0 = cpu(); const t0 = performance.now();
if (mode === "deno") {
  using f = Deno.openSync(path, { write: true, create: true, truncate: true });
  for (let off = 0; off < total; off += size) { const b = bufs[0]!; for (let d = 0; d < b.length;) d += f.writeSync(b.subarray(d)); }
  f.syncDataSync();
} else if (mode === "denoasync") {
  using f = Deno.openSync(path, { write: true, create: true, truncate: true });
  let next = 0;
  await Promise.all(bufs.map(async (b) => { while (next < total) { const off = next; next += size; await f.seek(off, Deno.SeekMode.Start); for (let d = 0; d < b.length;) d += await f.write(b.subarray(d)); } }));
  f.syncDataSync();
} else if (mode === "ffisync") {
  const fd = lib.symbols.open(new TextEncoder().encode(path + "\0"), 0o1101, 0o644);
  for (let off = 0; off < total; off += size) lib.symbols.pwriteSync(fd, bufs[0]!, BigInt(size), BigInt(off));
  lib.symbols.close(fd);
  using f = Deno.openSync(path, { write: true }); f.syncDataSync();
} else {
  const fd = lib.symbols.open(new TextEncoder().encode(path + "\0"), 0o1101, 0o644);
  let next = 0;
  await Promise.all(bufs.map(async (b) => { while (next < total) { const off = next; next += size; await lib.symbols.pwrite(fd, b, BigInt(size), BigInt(off)); } }));
  lib.symbols.close(fd);
  using f = Deno.openSync(path, { write: true }); f.syncDataSync();
}
const c1 = cpu();
console.log(`${mode} ${size} x${conc}: ${((performance.now() - t0) / 1000).toFixed(2)} s user ${(c1[0]! - c0[0]!) / 1000} sys ${(c1[1]! - c0[1]!) / 1000}`);
Deno.removeSync(path);
