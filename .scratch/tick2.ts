const f = await Deno.open(".bench/core/model/model-00002-of-00004.safetensors");
const buf = new Uint8Array(8 << 20);
const spin = (ms: number) => { const e = performance.now() + ms; let x = 0; while (performance.now() < e) x++; return x; };
for (const mode of ["read only", "spin only", "read+spin"]) {
  await f.seek(0, Deno.SeekMode.Start);
  const t0 = performance.now();
  let total = 0;
  for (let i = 0; i < 60; i++) {
    const p = mode !== "spin only" ? f.read(buf) : Promise.resolve(0);
    if (mode !== "read only") spin(2);
    const n = await p; total += n ?? 0;
  }
  console.log(`${mode}: ${(performance.now() - t0).toFixed(0)} ms, ${(total / 1e6).toFixed(0)} MB`);
}
const out = await Deno.open("/tmp/tick.out", { write: true, create: true, truncate: true });
for (const mode of ["write only", "write+spin"]) {
  const t0 = performance.now();
  for (let i = 0; i < 60; i++) {
    const p = out.write(buf);
    if (mode !== "write only") spin(2);
    await p;
  }
  console.log(`${mode}: ${(performance.now() - t0).toFixed(0)} ms`);
}
await Deno.remove("/tmp/tick.out");
