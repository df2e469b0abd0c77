/**
 * `npm run bench`: the coordinator. For each repetition, scenario and system
 * (systems in rotating order, so none always runs first), it starts a fresh
 * deployment, client workers and a publisher, measures, and stops them all;
 * then writes the raw JSON (after every run, so an interrupted run keeps what
 * it measured), the markdown report and the SVG chart.
 *
 * Everything listens on 127.0.0.1. Every process is stopped on exit,
 * including on SIGINT and on errors (lib/proc.ts).
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseOptions, USAGE, type Options } from "./lib/options.js";
import { childFdLimit, installCleanupHandlers, stopEverything } from "./lib/proc.js";
import { renderChart } from "./lib/report-chart.js";
import { renderMarkdown } from "./lib/report.js";
import type { RawResults } from "./lib/results.js";
import { runScenario } from "./lib/runner.js";
import { buildScenarios } from "./scenarios.js";
import { loadSystem } from "./systems/index.js";
import type { SystemAdapter } from "./systems/system.js";

/** File descriptors a server process needs beyond one per connection. */
const FD_HEADROOM = 512;

const benchDir = fileURLToPath(new URL(".", import.meta.url));
const repoRoot = join(benchDir, "..");
const t0 = performance.now();
const log = (msg: string) =>
  process.stderr.write(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseOptions(process.argv.slice(2), join(benchDir, "results"));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (parsed === "help") {
    process.stdout.write(USAGE);
    return 0;
  }
  const opts = parsed;
  if (opts.report) {
    const raw = JSON.parse(readFileSync(opts.report, "utf8")) as RawResults;
    writeReport(raw, { ...(raw.options as Options), outDir: opts.outDir });
    return 0;
  }
  installCleanupHandlers(log);

  let scenarios;
  try {
    scenarios = buildScenarios(opts);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const largest = Math.max(...scenarios.map((s) => s.clients));
  if (childFdLimit < largest + FD_HEADROOM) {
    log(
      `file descriptor limit ${childFdLimit} is too low for ${largest} connections in one server process; raise the hard limit (ulimit -Hn) to at least ${largest + FD_HEADROOM}`,
    );
    return 2;
  }

  const adapters: SystemAdapter[] = [];
  for (const id of opts.systems) adapters.push(await loadSystem(id));

  const startedAt = new Date();
  const stamp = startedAt.toISOString().replace(/[:.]/g, "-");
  const rawDir = join(opts.outDir, "raw");
  mkdirSync(rawDir, { recursive: true });
  const rawFile = join(rawDir, `${opts.quick ? "quick-" : ""}${stamp}.json`);
  const raw: RawResults = {
    startedAt: startedAt.toISOString(),
    quick: opts.quick,
    options: opts,
    machine: {
      cores: cpus().length,
      cpuModel: cpus()[0]?.model ?? "?",
      node: process.version,
      loadAvgAtStart: loadavg(),
      memTotalMb: Math.round(totalmem() / 2 ** 20),
      fdLimit: childFdLimit,
    },
    systems: Object.fromEntries(adapters.map((a) => [a.name, a.description])),
    runs: [],
  };
  const save = () => writeFileSync(rawFile, JSON.stringify(raw, null, 1));

  log(
    `${opts.quick ? "QUICK " : ""}run: systems ${opts.systems.join(",")}; scenarios ${scenarios.map((s) => s.id).join(",")}; ${opts.reps} rep(s)`,
  );
  const deadline = performance.now() + opts.maxMinutes * 60_000;
  let phase = 0;
  for (let rep = 1; rep <= opts.reps; rep++) {
    for (const sc of scenarios) {
      const order = adapters.map((_, i) => adapters[(i + rep - 1) % adapters.length]!);
      for (const adapter of order) {
        if (performance.now() > deadline) {
          raw.runs.push({
            system: adapter.name,
            scenario: sc.id,
            family: sc.family,
            title: sc.title,
            rep,
            startedAt: new Date().toISOString(),
            seconds: 0,
            skipped: `time budget of ${opts.maxMinutes} min spent`,
          });
          continue;
        }
        log(`rep ${rep}/${opts.reps} ${sc.id} ${adapter.name}`);
        const record = await runScenario(adapter, sc, rep, { opts, repoRoot, log, nextPhase: () => ++phase });
        raw.runs.push(record);
        save();
      }
    }
  }
  raw.finishedAt = new Date().toISOString();
  save();

  writeReport(raw, opts);
  log(`raw data: ${rawFile}`);
  const errors = raw.runs.filter((r) => r.error).length;
  if (errors) log(`${errors} run(s) failed; see the report`);
  return errors ? 1 : 0;
}

/** Writes quick.md/quick.svg or latest.md/latest.svg into opts.outDir. */
function writeReport(raw: RawResults, opts: Options): void {
  const base = raw.quick ? "quick" : "latest";
  const chartFile = `${base}.svg`;
  mkdirSync(opts.outDir, { recursive: true });
  writeFileSync(join(opts.outDir, chartFile), renderChart(raw, opts.p99LimitMs));
  writeFileSync(join(opts.outDir, `${base}.md`), renderMarkdown(raw, opts, chartFile));
  log(`wrote ${join(opts.outDir, `${base}.md`)} and ${join(opts.outDir, chartFile)}`);
}

main()
  .then(async (code) => {
    await stopEverything();
    process.exit(code);
  })
  .catch(async (err) => {
    log(`fatal: ${(err as Error)?.stack ?? err}`);
    await stopEverything();
    process.exit(1);
  });
