/** The host buffer pool behind the sources: reuse, and the guards that keep reuse safe. */
import { assert, assertEquals, assertThrows } from "./_assert.ts";
import { BytePool } from "../stages/byte_pool.ts";

Deno.test("BytePool hands a released buffer out again, and only once", () => {
  const pool = new BytePool(1024);
  const a = pool.take(1024);
  a.bytes.fill(7);
  a.release();
  assertThrows(() => a.release(), Error, /twice/);
  const b = pool.take(600);
  assertEquals(b.bytes.buffer, a.bytes.buffer);
  assertEquals(b.bytes.length, 600);
  // Still held: the next take is a new buffer.
  const c = pool.take(1024);
  assert(c.bytes.buffer !== b.bytes.buffer);
});

Deno.test("BytePool allocates small pieces plainly and drops detached buffers", () => {
  const pool = new BytePool(1024);
  const small = pool.take(100);
  assertEquals(small.bytes.buffer.byteLength, 100);
  small.release();
  const moved = pool.take(1024);
  (moved.bytes.buffer as ArrayBuffer).transfer();
  moved.release();
  assertEquals(pool.take(1024).bytes.length, 1024);
  assertThrows(() => pool.take(2048), RangeError);
});
