/**
 * The markdown report: per scenario, the fixed step and the ramp as medians
 * over repetitions, each system's ratio to the others, and every caveat the
 * raw data shows (saturated clients, other load on the machine, errors).
 */
import type { Options } from "./options.js";
import type { PointResult, RawResults, RunRecord } from "./results.js";
import { median } from "./stats.js";

/** A client process above this % of one core may have limited the result. */
const CLIENT_SATURATED_PCT = 90;
/** Machine CPU not ours above this % of one core is called out. */
const OTHER_LOAD_PCT = 25;

const fmt = (x: number, digits = 1): string => {
  if (!Number.isFinite(x)) return "–";
  if (Math.abs(x) >= 1000) return Math.round(x).toLocaleString("en-US");
  return x.toFixed(digits).replace(/\.0+$/, "");
};
const ms = (x: number) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) : "–");
const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(2)}%` : "–");

function table(head: string[], rows: string[][]): string {
  return [
    `| ${head.join(" | ")} |`,
    `|${head.map(() => "---").join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** Row ÷ column for each pair of systems; >1 means the row system is higher. */
function ratioTable(title: string, values: Map<string, number>, betterIs: "higher" | "lower"): string {
  const systems = [...values.keys()].filter((s) => Number.isFinite(values.get(s)) && values.get(s)! > 0);
  if (systems.length < 2) return "";
  const rows = systems.map((a) => [
    `**${a}**`,
    ...systems.map((b) => (a === b ? "1" : `${fmt(values.get(a)! / values.get(b)!, 2)}×`)),
  ]);
  return `\n_${title}, row ÷ column (${betterIs} is better)_\n\n${table(["", ...systems], rows)}\n`;
}

function medianOf(points: PointResult[], f: (p: PointResult) => number): number {
  return median(points.map(f));
}

function otherLoad(p: PointResult): number {
  return p.machineBusyPct - p.serverCpuPct - p.clientCpuPct - p.publisherCpuPct;
}

function stepSection(sc: string, bySystem: Map<string, RunRecord[]>, o: Options): string {
  const out: string[] = [];
  const isSend = sc.startsWith("send-");
  const head = ["system", "reps", "delivered/s", "complete", "p50 ms", "p99 ms", "p99.9 ms"];
  if (isSend) head.push("calls/s", "call p50 ms", "call p99 ms", "call p99.9 ms");
  head.push("server CPU %", "CPU µs/delivery", "server RSS MB", "clients CPU % (busiest)", "other load %", "pass");
  const rows: string[][] = [];
  const notes: string[] = [];
  for (const [system, runs] of bySystem) {
    const pts = runs.map((r) => r.step).filter((p): p is PointResult => !!p);
    if (!pts.length) continue;
    const m = (f: (p: PointResult) => number) => medianOf(pts, f);
    const row = [
      system,
      String(pts.length),
      fmt(m((p) => p.deliveredPerSec)),
      pct(m((p) => p.completeness)),
      ms(m((p) => p.latency.p50)),
      ms(m((p) => p.latency.p99)),
      ms(m((p) => p.latency.p999)),
    ];
    if (isSend)
      row.push(
        fmt(m((p) => p.sent / p.publishSeconds)),
        ms(m((p) => p.call.p50)),
        ms(m((p) => p.call.p99)),
        ms(m((p) => p.call.p999)),
      );
    const busiest = m((p) => p.clientCpuMaxPct);
    row.push(
      fmt(m((p) => p.serverCpuPct)),
      fmt(
        m((p) => p.serverCpuMicrosPerDelivery),
        2,
      ),
      fmt(m((p) => p.serverRssMb)),
      `${fmt(m((p) => p.clientCpuPct))} (${fmt(busiest)})${busiest >= CLIENT_SATURATED_PCT ? " ⚠" : ""}`,
      fmt(m(otherLoad)),
      `${pts.filter((p) => p.pass).length}/${pts.length}`,
    );
    rows.push(row);
    if (busiest >= CLIENT_SATURATED_PCT)
      notes.push(
        `${system}: a client process used ≥${CLIENT_SATURATED_PCT}% of a core; the clients may have limited this result.`,
      );
    if (m(otherLoad) >= OTHER_LOAD_PCT)
      notes.push(`${system}: ${fmt(m(otherLoad))}% of a core was used by processes outside the bench.`);
    for (const p of pts) if (!p.pass) notes.push(`${system} rep: ${p.failReasons.join("; ")}`);
    const byProc = pts[0]!.serverCpuPctByProcess;
    if (Object.keys(byProc).length > 1) {
      const names = Object.keys(byProc);
      notes.push(
        `${system} server CPU by process: ${names.map((n) => `${n} ${fmt(medianOf(pts, (p) => p.serverCpuPctByProcess[n] ?? NaN))}%`).join(", ")}`,
      );
    }
  }
  if (!rows.length) return "";
  out.push(`\n### Fixed step: ${fmt(o.stepRate)} deliveries/s for ${o.stepSeconds} s (medians)\n`);
  out.push(table(head, rows));
  if (notes.length) out.push("\n" + notes.map((n) => `- ${n}`).join("\n"));
  return out.join("\n");
}

function rampSection(bySystem: Map<string, RunRecord[]>, o: Options): { text: string; max: Map<string, number> } {
  const rows: string[][] = [];
  const max = new Map<string, number>();
  for (const [system, runs] of bySystem) {
    const ramps = runs.map((r) => r.ramp).filter((r) => !!r);
    if (!ramps.length) continue;
    const best = median(ramps.map((r) => r.maxDeliveredPerSec));
    max.set(system, best);
    const windows = runs.flatMap((r) => [r.step, ...(r.ramp?.points ?? [])]).filter((p): p is PointResult => !!p);
    const bestPoints = ramps
      .map((r) => windows.find((p) => p.phase === r.bestPhase))
      .filter((p): p is PointResult => !!p);
    const bracket = ramps.map((r) =>
      r.firstFailedDeliveryRate === undefined ? "none failed" : `${fmt(r.firstFailedDeliveryRate)}/s`,
    );
    rows.push([
      system,
      String(ramps.length),
      fmt(median(ramps.map((r) => r.maxPublishRate)), 2),
      best > 0 ? fmt(best) : "none passed",
      bestPoints.length ? ms(median(bestPoints.map((p) => p.latency.p99))) : "–",
      bestPoints.length ? fmt(median(bestPoints.map((p) => p.serverCpuPct))) : "–",
      bestPoints.length ? fmt(median(bestPoints.map((p) => p.clientCpuMaxPct))) : "–",
      bracket.join(", "),
    ]);
  }
  if (!rows.length) return { text: "", max };
  const text =
    `\n### Ramp: highest rate sustained with p99 ≤ ${o.p99LimitMs} ms and ≥ ${o.completenessMin * 100}% delivered (windows of ${o.rampSeconds} s)\n\n` +
    table(
      [
        "system",
        "reps",
        "max publishes/s",
        "max delivered/s",
        "p99 ms there",
        "server CPU % there",
        "busiest client CPU % there",
        "first failing target rate, per rep",
      ],
      rows,
    );
  return { text, max };
}

export function renderMarkdown(raw: RawResults, o: Options, chartFile: string): string {
  const out: string[] = [];
  const title = raw.quick ? "Benchmark — QUICK smoke run (small sizes; not final figures)" : "Benchmark results";
  out.push(`# ${title}\n`);
  out.push(
    `Started ${raw.startedAt}, finished ${raw.finishedAt ?? "?"}. Generated by \`npm run bench\`; see bench/README.md.\n`,
  );
  out.push(
    `Machine: ${raw.machine.cores} cores (${raw.machine.cpuModel}), ${raw.machine.memTotalMb} MB, Node ${raw.machine.node}, ` +
      `load average at start ${raw.machine.loadAvgAtStart.map((x) => x.toFixed(2)).join(" ")}, fd limit per process ${raw.machine.fdLimit}. ` +
      `Servers, ${o.clientProcs} client processes and the publisher share these cores, over loopback.\n`,
  );
  out.push(
    `Settings: ${o.reps} repetition(s), medians reported; fixed step ${fmt(o.stepRate)} deliveries/s for ${o.stepSeconds} s after ${o.warmupSeconds} s warm-up; ` +
      `ramp ${o.ramp ? `of ${o.rampSeconds} s windows, at most ${o.rampMaxSteps}, resolution ${o.rampResolution * 100}%` : "off"}; payload ≈${o.payloadBytes} bytes of JSON; idle RSS read ${o.settleSeconds ?? 3} s after the last join. ` +
      `Latency is publish → delivery in the client, over every delivery (HDR histograms merged across client processes).\n`,
  );
  const windows = raw.runs.flatMap((r) => [r.step, ...(r.ramp?.points ?? [])]).filter((p): p is PointResult => !!p);
  const busy = median(windows.map(otherLoad));
  if (busy >= OTHER_LOAD_PCT) {
    out.push(
      `> ⚠ **The machine was busy with other work**: in the median window, processes outside the bench used ${fmt(busy)}% of a core ` +
        `(of ${raw.machine.cores * 100}%). Latencies and maximum rates below mostly measure that contention, not the systems.\n`,
    );
  }
  out.push("Systems:\n");
  for (const [name, desc] of Object.entries(raw.systems)) out.push(`- **${name}**: ${desc}`);
  out.push(`\nChart: [${chartFile}](${chartFile}) (p99 latency against delivered rate, every window of every rep).\n`);

  const scenarios = [...new Set(raw.runs.map((r) => r.scenario))];
  for (const sc of scenarios) {
    const runs = raw.runs.filter((r) => r.scenario === sc);
    out.push(`\n## ${runs[0]!.title}\n`);
    const bySystem = new Map<string, RunRecord[]>();
    for (const r of runs) {
      if (r.error || r.skipped) continue;
      bySystem.set(r.system, [...(bySystem.get(r.system) ?? []), r]);
    }
    const setups = [...bySystem].filter(([, rs]) => rs.some((r) => r.setup));
    if (setups.length) {
      out.push(
        "Setup (connect + join, median s): " +
          setups.map(([s, rs]) => `${s} ${fmt(median(rs.map((r) => r.setup?.connectSeconds ?? NaN)), 2)}`).join(", ") +
          ".",
      );
    }

    const idle = [...bySystem].filter(([, rs]) => rs.some((r) => r.idle));
    if (idle.length) {
      const per = new Map<string, number>();
      const rows = idle.map(([s, rs]) => {
        const ids = rs.map((r) => r.idle!).filter(Boolean);
        const b = median(ids.map((i) => i.bytesPerConnection));
        per.set(s, b);
        return [
          s,
          String(ids.length),
          fmt(ids[0]!.connections),
          fmt(median(ids.map((i) => i.rssBeforeMb))),
          fmt(median(ids.map((i) => i.rssAfterMb))),
          fmt(b / 1024, 2),
          Object.keys(ids[0]!.rssByProcessMb).length > 1
            ? Object.keys(ids[0]!.rssByProcessMb)
                .map((n) => `${n} ${fmt(median(ids.map((i) => i.rssByProcessMb[n] ?? NaN)))} MB`)
                .join(", ")
            : "",
        ];
      });
      out.push(
        "\n" +
          table(
            [
              "system",
              "reps",
              "connections",
              "server RSS before MB",
              "after MB",
              "KiB per connection",
              "by process (after)",
            ],
            rows,
          ),
      );
      out.push(ratioTable("Memory per connection", per, "lower"));
    }

    const members = [...bySystem].filter(([, rs]) => rs.some((r) => r.members));
    const na = runs.filter((r) => r.skipped && r.family === "f");
    if (members.length || na.length) {
      const p99s = new Map<string, number>();
      const rows = members.map(([s, rs]) => {
        const m = rs.map((r) => r.members!).filter(Boolean);
        const p99 = median(m.map((x) => x.latency.p99));
        p99s.set(s, p99);
        return [
          s,
          String(m.length),
          fmt(median(m.map((x) => x.callsPerSec))),
          ms(median(m.map((x) => x.latency.p50))),
          ms(p99),
          ms(median(m.map((x) => x.latency.p999))),
          `${m[0]!.lastCount} of ${m[0]!.expected}${m.some((x) => x.wrongCount) ? " ⚠ wrong counts" : ""}`,
          fmt(median(m.map((x) => x.serverCpuPct))),
          String(m.reduce((a, x) => a + x.errors, 0)),
        ];
      });
      for (const s of new Set(na.map((r) => r.system)))
        rows.push([s, "–", na.find((r) => r.system === s)!.skipped!, "", "", "", "", "", ""]);
      out.push(`\nOne caller, calls back to back for ${o.stepSeconds} s.\n`);
      out.push(
        table(
          ["system", "reps", "calls/s", "p50 ms", "p99 ms", "p99.9 ms", "members returned", "server CPU %", "errors"],
          rows,
        ),
      );
      out.push(ratioTable("p99 latency", p99s, "lower"));
    }

    out.push(stepSection(sc, bySystem, o));
    const { text, max } = rampSection(bySystem, o);
    out.push(text);
    out.push(ratioTable("Max sustained delivered/s", max, "higher"));
    const cpu = new Map<string, number>();
    for (const [s, rs] of bySystem) {
      const v = median(rs.map((r) => r.step?.serverCpuMicrosPerDelivery ?? NaN));
      if (Number.isFinite(v)) cpu.set(s, v);
    }
    out.push(ratioTable("Server CPU µs per delivery at the fixed step", cpu, "lower"));

    const problems = runs.filter((r) => r.error || (r.skipped && r.family !== "f"));
    if (problems.length) {
      out.push("\nNot measured:\n");
      for (const r of problems) out.push(`- ${r.system} rep ${r.rep}: ${(r.error ?? r.skipped)!.split("\n")[0]}`);
    }
  }
  out.push(
    "\n---\nHow to read: *delivered/s* is deliveries received by all clients divided by the publish window; *complete* is received ÷ (publishes × members); " +
      "*CPU µs/delivery* is server CPU (all server processes, user+system, from /proc) from the start of the window to the end of the drain, per delivery; " +
      "*other load* is machine CPU not used by the bench's processes (the machine is shared). A ⚠ on client CPU means a load-client process was near one full core, " +
      "so the clients, not the server, may have set the limit.\n",
  );
  return out.join("\n").replace(/\n{3,}/g, "\n\n");
}
