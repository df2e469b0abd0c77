/**
 * What the message tap (core/tap.ts) costs a publishing node, in this
 * process, without a broker (a publish that resolves at once): per message
 * while nobody watches (Tap.wanted, the check every publisher makes), and
 * per copy while someone does (the copy built, encoded and handed to the
 * broker), for a small JSON payload and for one past the preview (4 KiB).
 * The rate limit is lifted so that every call copies.
 *
 *   npx tsx bench/tap-cost.ts            (200,000 checks, 20,000 copies, 3 runs)
 */
import { fromJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { unpositioned } from "../src/core/broker.js";
import { Tap, type TapFacts } from "../src/core/tap.js";

const CHECKS = 200_000;
const COPIES = 20_000;
const facts = (value: unknown): TapFacts => ({
  channel: "room:1",
  userId: "",
  event: "chat",
  id: "AbCdEfGh.1",
  payload: { case: "json", value: fromJson(ValueSchema, value as never) },
  origin: "",
});
const small = facts({ text: "hello", n: 1 });
const large = facts({ text: "x".repeat(4096) });

function ns(n: number, f: () => void): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) f();
  return Number(process.hrtime.bigint() - start) / n;
}

const done = unpositioned(0);
for (let run = 1; run <= 3; run++) {
  const tap = new Tap({ broker: { publish: () => Promise.resolve(done) }, perSecond: 1e9, burst: 1e9 });
  let n = 0;
  const idle = ns(CHECKS, () => {
    if (tap.wanted) n++;
  });
  tap.want(60_000);
  const copySmall = ns(COPIES, () => tap.copy(small));
  const copyLarge = ns(COPIES, () => tap.copy(large));
  tap.close();
  console.log(
    JSON.stringify({
      run,
      idleNsPerMessage: Math.round(idle),
      copyUsSmall: +(copySmall / 1000).toFixed(2),
      copyUs4KiB: +(copyLarge / 1000).toFixed(2),
      n,
    }),
  );
}
