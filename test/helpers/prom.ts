/** Scrapes a /metrics endpoint and reads samples from the Prometheus text format. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** GETs url (http://host:port/metrics) and parses every sample. */
export async function scrape(url: string): Promise<Samples> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url}: HTTP ${res.status}: ${await res.text()}`);
  return new Samples(await res.text());
}

export class Samples {
  readonly samples: Sample[] = [];

  constructor(readonly text: string) {
    for (const line of text.split("\n")) {
      if (line === "" || line.startsWith("#")) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line);
      if (!m) throw new Error(`not a sample line: ${line}`);
      const labels: Record<string, string> = {};
      for (const l of (m[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
      this.samples.push({ name: m[1]!, labels, value: Number(m[3]) });
    }
  }

  /** The sum of the samples named name whose labels include `labels`. */
  get(name: string, labels: Record<string, string> = {}): number {
    let found = false;
    let sum = 0;
    for (const s of this.samples) {
      if (s.name !== name) continue;
      if (!Object.entries(labels).every(([k, v]) => s.labels[k] === v)) continue;
      found = true;
      sum += s.value;
    }
    if (!found) throw new Error(`no sample ${name}${JSON.stringify(labels)} in:\n${this.text}`);
    return sum;
  }
}

/** http://host:port of an edge, from its ws:// URL. */
export const httpOf = (wsUrl: string) => wsUrl.replace(/^ws:/, "http:");
