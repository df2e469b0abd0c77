/**
 * Settings per channel prefix, in one shape for every setting that has
 * them (REALTIME_HISTORY_RULES, REALTIME_PRESENCE_RULES): a comma-separated
 * list of `prefix=value`; the rule with the longest prefix of a channel's
 * name wins, and a channel no rule matches takes the global setting.
 */

/** One rule: channels whose name starts with prefix take value. */
export interface PrefixRule<T> {
  readonly prefix: string;
  readonly value: T;
}

/** The channel alphabet (core/names.ts), for prefixes. */
const PREFIX = /^[A-Za-z0-9_\-.:@/=+]{1,64}$/;

/**
 * Parses a list of `prefix=value` rules (the empty string is none): each
 * value goes to parseValue, which throws an Error saying what to fix (it is
 * prefixed with the rule). A prefix is 1 to 64 characters of the channel
 * alphabet up to the first `=`, listed once; at most maxRules rules.
 * syntax names the rule's shape in errors ("prefix=size").
 */
export function parsePrefixRules<T>(
  raw: string,
  parseValue: (value: string) => T,
  maxRules: number,
  syntax: string,
): PrefixRule<T>[] {
  const rules: PrefixRule<T>[] = [];
  for (const item of raw.split(",").map((s) => s.trim())) {
    if (item === "") continue;
    const at = item.indexOf("=");
    if (at <= 0 || at === item.length - 1) throw new Error(`${JSON.stringify(item)} is not a rule: write ${syntax}`);
    const prefix = item.slice(0, at).trim();
    if (!PREFIX.test(prefix))
      throw new Error(
        `${JSON.stringify(prefix)} is not a channel prefix: 1 to 64 characters from A-Z a-z 0-9 _ - . : @ / = +`,
      );
    let value: T;
    try {
      value = parseValue(item.slice(at + 1).trim());
    } catch (err) {
      throw new Error(`${JSON.stringify(item)}: ${(err as Error).message}`);
    }
    if (rules.some((r) => r.prefix === prefix)) throw new Error(`prefix ${JSON.stringify(prefix)} is listed twice`);
    rules.push({ prefix, value });
  }
  if (rules.length > maxRules) throw new Error(`at most ${maxRules} rules`);
  return rules;
}

/**
 * The lookup of rules: the value of the rule with the longest prefix of the
 * channel's name, else fallback. O(rules) per call; callers that look up
 * per event cache per channel.
 */
export function longestPrefix<T>(rules: readonly PrefixRule<T>[], fallback: T): (channel: string) => T {
  if (rules.length === 0) return () => fallback;
  const sorted = [...rules].sort((a, b) => b.prefix.length - a.prefix.length);
  return (channel) => {
    for (const rule of sorted) if (channel.startsWith(rule.prefix)) return rule.value;
    return fallback;
  };
}
