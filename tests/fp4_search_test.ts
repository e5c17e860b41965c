import { assert, assertEquals } from "./_assert.ts";
import { concat, edgeImatrix, edgeRows, seededImatrix, seededRows } from "./_fp4_data.ts";
import { decodeFp4 } from "../gpu/fp4/decode.ts";
import { encodeFp4RowsCpu } from "../gpu/fp4/encode_cpu.ts";
import { FP4_FORMATS, type Fp4Format } from "../gpu/fp4/formats.ts";
import { type Fp4SearchOptions, resolveFp4Search } from "../gpu/fp4/search_options.ts";
import { Fp4SubBlock } from "../gpu/fp4/sub_block.ts";
import { fp4Tables } from "../gpu/fp4/tables.ts";
import { fp4Weights } from "../gpu/fp4/weights.ts";
import { assertBlocksEqual } from "../testing/block_diff.ts";

const FORMATS = Object.values(FP4_FORMATS);
const N = 128;

/** Rows for a format: seeded weights plus edge sub-blocks (ROCm's row-sigma weights need Σx² finite). */
function inputs(format: Fp4Format, seed: number): Float32Array {
  const edges = edgeRows(seed, 16, format.subBlockSize).map((v) =>
    format.weighting === "row-sigma" && Math.abs(v) > 1e15 ? v * 1e-30 : v
  );
  return concat(seededRows(seed, 4, N), edges);
}

/**
 * No imatrix, a plain one, and (for column weighting) one with zeros, subnormals and 3e38; under
 * row-sigma weighting such entries overflow the weights, which the encoder refuses.
 */
function imatrices(format: Fp4Format, seed: number): (Float32Array | null)[] {
  const list = [null, seededImatrix(seed, N)];
  if (format.weighting === "column") list.push(edgeImatrix(seed, N));
  return list;
}

/** Each sub-block's search objective for the codes in `bytes` (the encoder's own float32 error). */
function objectives(
  format: Fp4Format,
  x: Float32Array,
  bytes: Uint8Array,
  options: Fp4SearchOptions,
): Float64Array {
  const search = resolveFp4Search(format, N, options);
  const weights = fp4Weights(format, x, N, search);
  const sub = new Fp4SubBlock(format, fp4Tables(format));
  const bits = new Uint32Array(x.buffer, x.byteOffset, x.length);
  const perBlock = format.blockSize / format.subBlockSize;
  const out = new Float64Array(x.length / format.subBlockSize);
  for (let s = 0; s < out.length; s++) {
    sub.load(x, bits, s * format.subBlockSize, N, search.invOuter, weights);
    const block = Math.floor(s / perBlock);
    out[s] = sub.error(bytes[block * format.blockBytes + format.scaleOffset + (s % perBlock)]!);
  }
  return out;
}

/** Each sub-block's weighted squared error of the decoded values, in float64. */
function exactErrors(
  format: Fp4Format,
  x: Float32Array,
  bytes: Uint8Array,
  imatrix: Float32Array | null,
): Float64Array {
  const y = decodeFp4(format, bytes, x.length);
  const search = resolveFp4Search(format, N, { imatrix });
  const weights = fp4Weights(format, x, N, search);
  const out = new Float64Array(x.length / format.subBlockSize);
  for (let i = 0; i < x.length; i++) {
    const w = weights.kind === 0 ? 1 : weights.kind === 1 ? weights.data[i % N]! : weights.data[i]!;
    out[Math.floor(i / format.subBlockSize)]! += w * (x[i]! - y[i]!) ** 2;
  }
  return out;
}

Deno.test("encodeFp4RowsCpu() window with W = 0 is byte-identical to rtn", () => {
  for (const format of FORMATS) {
    const x = inputs(format, 31);
    for (const imatrix of [null, seededImatrix(31, N)]) {
      assertBlocksEqual(
        encodeFp4RowsCpu(format, x, N, { mode: "window", window: 0, imatrix }),
        encodeFp4RowsCpu(format, x, N, { mode: "rtn", imatrix }),
        format.blockBytes,
        `${format.label} W=0`,
      );
    }
  }
});

Deno.test("encodeFp4RowsCpu() window and full never raise a sub-block's error above rtn's", () => {
  for (const format of FORMATS) {
    const x = inputs(format, 32);
    for (const imatrix of imatrices(format, 32)) {
      const label = `${format.label} ${imatrix ? "imatrix" : "plain"}`;
      const rtn = encodeFp4RowsCpu(format, x, N, { imatrix });
      const win = encodeFp4RowsCpu(format, x, N, { mode: "window", imatrix });
      const all = encodeFp4RowsCpu(format, x, N, { mode: "full", imatrix });
      const four = encodeFp4RowsCpu(format, x, N, { imatrix, fourOverSix: true });
      const e = (bytes: Uint8Array) => objectives(format, x, bytes, { imatrix });
      const [eRtn, eWin, eAll, eFour] = [e(rtn), e(win), e(all), e(four)];
      for (let s = 0; s < eRtn.length; s++) {
        assert(eWin[s]! <= eRtn[s]!, `${label} sub-block ${s}: window ${eWin[s]} > rtn ${eRtn[s]}`);
        assert(
          eAll[s]! <= eWin[s]!,
          `${label} sub-block ${s}: full ${eAll[s]} > window ${eWin[s]}`,
        );
        assert(eFour[s]! <= eRtn[s]!, `${label} sub-block ${s}: 4/6 ${eFour[s]} > rtn ${eRtn[s]}`);
      }
    }
  }
});

Deno.test("encodeFp4RowsCpu() search errors hold in float64 too, within float32 rounding", () => {
  for (const format of FORMATS) {
    const x = seededRows(33, 8, N);
    const imatrix = seededImatrix(33, N);
    const rtn = exactErrors(format, x, encodeFp4RowsCpu(format, x, N, { imatrix }), imatrix);
    const all = exactErrors(
      format,
      x,
      encodeFp4RowsCpu(format, x, N, { mode: "full", imatrix }),
      imatrix,
    );
    let sumRtn = 0;
    let sumAll = 0;
    for (let s = 0; s < rtn.length; s++) {
      assert(
        all[s]! <= rtn[s]! * (1 + 1e-5),
        `${format.label} sub-block ${s}: ${all[s]} > ${rtn[s]}`,
      );
      sumRtn += rtn[s]!;
      sumAll += all[s]!;
    }
    // The search has to earn its keep on real-looking rows, not just tie rtn. MXFP4's rtn is
    // already the best power of two for almost every block of such rows.
    const gain = format.grid === "e8m0" ? 1 : 0.97;
    assert(sumAll <= sumRtn * gain, `${format.label}: full ${sumAll} vs rtn ${sumRtn}`);
  }
});

Deno.test("Fp4SubBlock full search equals the exhaustive argmin, lowest code on ties", () => {
  for (const format of FORMATS) {
    const x = inputs(format, 34);
    for (const imatrix of imatrices(format, 34)) {
      const search = resolveFp4Search(format, N, { mode: "full", imatrix });
      const weights = fp4Weights(format, x, N, search);
      const sub = new Fp4SubBlock(format, fp4Tables(format));
      const bits = new Uint32Array(x.buffer);
      for (let s = 0; s < x.length / format.subBlockSize; s++) {
        sub.load(x, bits, s * format.subBlockSize, N, 1, weights);
        const chosen = sub.choose(search);
        if (sub.amax === 0) {
          assertEquals(chosen, 0);
          continue;
        }
        let best = format.minSearchCode;
        let bestErr = sub.error(best);
        for (let c = best + 1; c <= format.maxCode; c++) {
          const e = sub.error(c);
          if (e < bestErr) {
            best = c;
            bestErr = e;
          }
        }
        assertEquals(
          chosen,
          best,
          `${format.label} sub-block ${s} (${imatrix ? "imatrix" : "plain"})`,
        );
      }
    }
  }
});

Deno.test("encodeFp4RowsCpu() output always decodes to finite values", () => {
  for (const format of FORMATS) {
    const x = inputs(format, 35);
    for (const mode of ["rtn", "window", "full"] as const) {
      const y = decodeFp4(format, encodeFp4RowsCpu(format, x, N, { mode }), x.length);
      assert(y.every(Number.isFinite), `${format.label} ${mode} decodes to a non-finite value`);
    }
  }
});
