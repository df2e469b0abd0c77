/**
 * CPU and memory of processes and of the machine, from /proc (Linux only).
 * CPU is in microseconds of CPU time (user + system, all threads of the
 * process, not its children), at the kernel's tick resolution (usually
 * 10 ms); over a step of seconds that is well under 1% of one core.
 */
import { readFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { cpus } from "node:os";

const CLOCK_TICKS_PER_SECOND: number = (() => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time used so far by pid, in µs; NaN when the process is gone. */
export function cpuMicros(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may contain spaces; fields count from after ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(fields[11]);
    const stime = Number(fields[12]);
    return ((utime + stime) * 1e6) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return NaN;
  }
}

/** Resident set size of pid in bytes (VmRSS); NaN when the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Busy and total CPU time of the whole machine so far, in µs summed over cores. */
export function machineCpuMicros(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest is inside user)
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const toMicros = (t: number) => (t * 1e6) / CLOCK_TICKS_PER_SECOND;
  return { busy: toMicros(total - idle), total: toMicros(total) };
}

export const CORES = cpus().length;

/** A reading of several processes and the machine, to diff against a later one. */
export interface CpuReading {
  at: number; // ms, performance.now()
  perPid: Map<number, number>;
  machineBusy: number;
}

export function readCpu(pids: readonly number[]): CpuReading {
  return {
    at: performance.now(),
    perPid: new Map(pids.map((p) => [p, cpuMicros(p)])),
    machineBusy: machineCpuMicros().busy,
  };
}

/** CPU used between two readings, per pid and for the machine. */
export interface CpuDelta {
  wallMicros: number;
  perPid: Map<number, number>;
  machineBusyMicros: number;
}

export function cpuDelta(a: CpuReading, b: CpuReading): CpuDelta {
  const perPid = new Map<number, number>();
  for (const [pid, before] of a.perPid) perPid.set(pid, (b.perPid.get(pid) ?? NaN) - before);
  return { wallMicros: (b.at - a.at) * 1000, perPid, machineBusyMicros: b.machineBusy - a.machineBusy };
}

/** Sum of CPU µs of pids in a delta. */
export function sumCpu(d: CpuDelta, pids: readonly number[]): number {
  return pids.reduce((s, p) => s + (d.perPid.get(p) ?? NaN), 0);
}

/** µs of CPU over wall µs, as % of one core. */
export function pctOfCore(cpu: number, wallMicros: number): number {
  return wallMicros > 0 ? (100 * cpu) / wallMicros : NaN;
}
