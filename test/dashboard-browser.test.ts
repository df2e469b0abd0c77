/**
 * The dashboard in a real browser (Debian's Chromium driven by
 * playwright-core): it lists channels with counts, shows a WebSocket
 * client's membership and profile live, sends and broadcasts to clients, and
 * logs the channel's events; it lists the API nodes and edges, charts
 * WatchStats in the overview, unsubscribes or disconnects a member after a
 * confirmation dialog, and shows a member's connection in detail
 * (GetConnections).
 * Screenshots go to test-output/.
 *
 * Where /usr/bin/chromium is missing the test is skipped with a line that
 * says so, except under CI=true, where it must run.
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { fromJson } from "@bufbuild/protobuf";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildDashboard } from "../src/dashboard/build.js";
import { ROOT, startCluster, stopAll, type Cluster } from "./helpers/cluster.js";
import { sleep, TestClient } from "./helpers/ws-client.js";
import { hs256, SECRET } from "./helpers/trust.js";
import { CloseCode } from "../src/client/index.js";
import { realtimeClient } from "./helpers/grpc-client.js";
import { create } from "@bufbuild/protobuf";
import { PublishRequestSchema } from "../gen/realtime/v1/realtime_pb.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const HAVE_CHROMIUM = existsSync(CHROMIUM);
const IN_CI = process.env.CI === "true";
const OUT = join(ROOT, "test-output");
/** axe-core's browser build, injected into the page (its public entry, resolved like any import). */
const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
/** The axe impacts that fail the check. */
const FAILING_IMPACTS = ["serious", "critical"];

if (!HAVE_CHROMIUM && !IN_CI) {
  console.warn(
    `dashboard-browser: SKIPPED: ${CHROMIUM} is missing (apt-get install chromium, or set CHROMIUM_PATH); under CI=true this test runs and fails instead`,
  );
}

describe.skipIf(!HAVE_CHROMIUM && !IN_CI)("the dashboard in Chromium", () => {
  let cluster: Cluster;
  /** Two edges, with tokens (users) and anonymous clients: for the node panel and the member actions. */
  let control: Cluster;
  let browser: Browser;
  let page: Page;
  const clients: TestClient[] = [];

  beforeAll(async () => {
    if (!HAVE_CHROMIUM) throw new Error(`CI=true and ${CHROMIUM} is missing: .ci/run must apt-get install chromium`);
    await buildDashboard();
    [cluster, control] = await Promise.all([
      startCluster(1),
      startCluster(2, { REALTIME_JWT_SECRET: SECRET, REALTIME_ALLOW_ANONYMOUS: "true" }),
    ]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    });
    page = await browser.newPage({ viewport: { width: 1366, height: 800 } });
    page.on("pageerror", (err) => console.error("page error:", err));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close()));
    await browser?.close();
    await cluster?.stop();
    await control?.stop();
    await stopAll();
  });

  /** The clients of cluster's edge, open or closed: the overview counts the open ones. */
  const onCluster: TestClient[] = [];
  const connect = async (enc: "json" | "proto") => {
    const c = await TestClient.connect(cluster.ws[0]!, enc);
    clients.push(c);
    onCluster.push(c);
    return c;
  };
  const profile = (v: unknown) => fromJson(ValueSchema, v as never);
  /** A client of control's edge, as user (a token's subject) or anonymous. */
  const connectControl = async (edge: number, user?: string) => {
    const query = user === undefined ? "" : `/?token=${await hs256({ sub: user })}`;
    const c = await TestClient.connect(control.ws[edge]!, edge === 0 ? "json" : "proto", query);
    clients.push(c);
    return c;
  };
  /** The edge a connection is on: NodeInfo.id is its id's prefix before the last ".". */
  const edgeOf = (connectionId: string) => connectionId.slice(0, connectionId.lastIndexOf("."));

  it("shows channels with counts, members live with their profile, and sends and broadcasts to clients", async () => {
    const ada = await connect("json");
    await ada.ok({ command: { case: "updateProfile", value: { data: profile({ name: "Ada", role: "admin" }) } } });
    await ada.ok({ command: { case: "join", value: { channel: "lobby" } } });
    const other = await connect("proto");
    await other.ok({ command: { case: "join", value: { channel: "support/eu" } } });

    await page.goto(`http://${cluster.http}/`);
    await page.getByTestId("status").and(page.locator("[data-state=ok]")).waitFor();
    const lobby = page.locator('li[data-channel="lobby"]');
    await expect.poll(() => lobby.locator(".n").textContent()).toBe("1");
    await expect.poll(() => page.locator('li[data-channel="support/eu"] .n').textContent()).toBe("1");

    await lobby.click();
    await page.locator("[data-testid=watch-state][data-state=live]").waitFor();
    const adaRow = page.locator(`tr[data-member="${ada.id}"]`);
    await adaRow.waitFor();
    expect(await adaRow.locator(".profile").textContent()).toContain('"name":"Ada"');

    // A client that joins now appears without a reload, with its profile.
    const grace = await connect("proto");
    await grace.ok({ command: { case: "updateProfile", value: { data: profile({ name: "Grace" }) } } });
    await grace.ok({ command: { case: "join", value: { channel: "lobby" } } });
    await page.locator(`tr[data-member="${grace.id}"] .profile`).filter({ hasText: "Grace" }).waitFor();
    expect(await page.getByTestId("member-count").textContent()).toBe("2");
    await expect.poll(() => lobby.locator(".n").textContent(), { timeout: 5000 }).toBe("2");

    // The page sends to the channel: both members receive it, in their encodings.
    await page.getByTestId("event").fill("notice");
    await page.getByTestId("payload").fill('{"text": "hello from the dashboard", "n": 1}');
    await page.getByTestId("send").click();
    await page.getByTestId("result").filter({ hasText: "Sent to lobby" }).waitFor();
    for (const c of [ada, grace]) {
      const ev = await c.event("notice", "lobby");
      expect(ev.payload.case).toBe("json");
      expect(toJson(ValueSchema, ev.payload.value as never)).toEqual({ text: "hello from the dashboard", n: 1 });
    }
    expect(other.events("notice")).toEqual([]);
    await page.locator('#log li[data-kind="message"]').filter({ hasText: "hello from the dashboard" }).waitFor();

    // A client's own message shows in the log with who sent it.
    await grace.ok({
      command: {
        case: "send",
        value: { channel: "lobby", event: "chat", payload: { case: "json", value: profile({ text: "hi Ada" }) } },
      },
    });
    await page
      .locator('#log li[data-kind="message"]')
      .filter({ hasText: "hi Ada" })
      .filter({ hasText: grace.id })
      .waitFor();

    // A leave removes the row live and is logged.
    await grace.ok({ command: { case: "leave", value: { channel: "lobby" } } });
    await page.locator(`tr[data-member="${grace.id}"]`).waitFor({ state: "detached" });
    await page.locator('#log li[data-kind="leave"]').filter({ hasText: grace.id }).waitFor();

    // Broadcast reaches every client, in any channel or none.
    await page.getByTestId("target-broadcast").check();
    await page.getByTestId("event").fill("maintenance");
    await page.getByTestId("payload").fill('{"in_minutes": 5}');
    await page.getByTestId("send").click();
    await page.getByTestId("result").filter({ hasText: "Broadcast" }).waitFor();
    for (const c of [ada, grace, other])
      expect(toJson(ValueSchema, (await c.event("maintenance")).payload.value as never)).toEqual({ in_minutes: 5 });

    // Bad JSON is refused in the page, before any call.
    await page.getByTestId("payload").fill("{nope");
    await page.getByTestId("send").click();
    await page.getByTestId("result").filter({ hasText: "not valid JSON" }).waitFor();
    await page.getByTestId("payload").fill('{"text": "hello from the dashboard", "n": 1}');
    await page.getByTestId("target-channel").check();
    await page.getByTestId("event").fill("notice");

    mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: join(OUT, "dashboard.png") });
    expect(existsSync(join(OUT, "dashboard.png"))).toBe(true);
  }, 60_000);

  it("the overview charts WatchStats: the connections there are, deliveries per second once a Send reaches them, light and dark", async () => {
    for (let i = 0; i < 3; i++) {
      const c = await connect(i === 0 ? "proto" : "json");
      await c.ok({ command: { case: "join", value: { channel: "stats-room" } } });
    }
    const open = () => onCluster.filter((c) => c.closeCode === undefined).length;
    const api = realtimeClient(cluster.grpc);
    mkdirSync(OUT, { recursive: true });
    try {
      for (const scheme of ["light", "dark"] as const) {
        const p = await browser.newPage({
          viewport: { width: 1366, height: 800 },
          colorScheme: scheme,
          bypassCSP: true,
        });
        const overview = p.getByTestId("overview");
        await p.goto(`http://${cluster.http}/`);
        await p.getByTestId("stats-state").and(p.locator("[data-state=live]")).waitFor();
        await expect.poll(() => overview.getAttribute("data-connections")).toBe(String(open()));
        // A backend Send reaches the members: the deliveries chart shows it (the page's stream: one snapshot a second).
        await expect
          .poll(
            async () => {
              await api.send({
                channel: "stats-room",
                event: "tick",
                payload: { case: "json", value: profile({ n: 1 }) },
              });
              return Number(await overview.getAttribute("data-deliveries-peak"));
            },
            { timeout: 10_000, interval: 300 },
          )
          .toBeGreaterThan(0);
        expect(await overview.getAttribute("data-connections")).toBe(String(open()));
        expect(await p.getByTestId("chart-messages").locator("canvas").count()).toBe(1);
        expect(await p.locator("#chart-connections-now").textContent()).toBe(String(open()));
        expect(await p.locator("#chart-messages-now").textContent()).toMatch(/^in \d+\.\d deliveries \d+\.\d$/);
        expect(await axeViolations(p), `overview, ${scheme}`).toEqual([]);
        await overview.screenshot({ path: join(OUT, `dashboard-overview-${scheme}.png`) });
        await p.close();
      }
    } finally {
      api.close();
    }
  }, 60_000);

  it("asks for an API key when the API requires one, and works once it is given", async () => {
    const key = "dashboard-test-key-0123456789";
    const locked = await startCluster(1, { REALTIME_API_KEYS: key });
    try {
      const c = await TestClient.connect(locked.ws[0]!, "json");
      clients.push(c);
      await c.ok({ command: { case: "join", value: { channel: "keyed" } } });
      const p2 = await browser.newPage({ viewport: { width: 1366, height: 800 } });
      await p2.goto(`http://${locked.http}/`);
      await p2
        .getByTestId("status")
        .and(p2.locator("[data-state=error]"))
        .filter({ hasText: "Unauthenticated" })
        .waitFor();
      await p2.getByTestId("api-key").fill(key);
      await p2.getByTestId("api-key").press("Enter");
      await p2.locator('li[data-channel="keyed"]').waitFor();
      expect(await p2.getByTestId("key-form").isHidden()).toBe(true);
      await p2.close();
    } finally {
      await locked.stop();
    }
  }, 60_000);

  /** The violations axe-core finds on p, of a failing impact, as "rule: target" lines. */
  async function axeViolations(p: Page): Promise<string[]> {
    await p.addScriptTag({ content: AXE_SOURCE });
    const found = await p.evaluate(async () => {
      const result = await (window as unknown as { axe: { run(): Promise<{ violations: unknown[] }> } }).axe.run();
      return result.violations as { id: string; impact: string; nodes: { target: string[] }[] }[];
    });
    return found
      .filter((v) => FAILING_IMPACTS.includes(v.impact))
      .flatMap((v) => v.nodes.map((n) => `${v.id} (${v.impact}): ${n.target.join(" ")}`));
  }

  it("has no serious accessibility violations (axe-core), in light and dark, wide and at 390 px, and requests nothing that 404s", async () => {
    const c = await connect("json");
    await c.ok({ command: { case: "join", value: { channel: "a11y" } } });
    mkdirSync(OUT, { recursive: true });
    for (const scheme of ["light", "dark"] as const) {
      for (const width of [1366, 390]) {
        // bypassCSP: only so that axe's script can be injected; the page's own CSP stays as served.
        const p = await browser.newPage({ viewport: { width, height: 844 }, colorScheme: scheme, bypassCSP: true });
        const failed: string[] = [];
        p.on("response", (r) => {
          if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`);
        });
        await p.goto(`http://${cluster.http}/#a11y`);
        await p.locator('li[data-channel="a11y"]').waitFor();
        await p.locator("[data-testid=watch-state][data-state=live]").waitFor();
        await p.locator("#nodes li[data-role=edge]").waitFor();
        expect(await axeViolations(p), `${scheme}, ${width} px`).toEqual([]);
        // Nothing wider than the screen: no sideways scrolling on a phone.
        expect(
          await p.evaluate(() => document.documentElement.scrollWidth),
          `${scheme}, ${width} px`,
        ).toBeLessThanOrEqual(width);
        expect(failed).toEqual([]);
        await p.screenshot({ path: join(OUT, `dashboard-${scheme}-${width}.png`), fullPage: true });
        if (width === 1366) await p.locator(".nodes").screenshot({ path: join(OUT, `dashboard-nodes-${scheme}.png`) });
        // The confirmation dialog, open: still no serious violation; Escape closes it and nothing happens.
        await p.locator(`tr[data-member="${c.id}"] button[data-action=disconnect]`).click();
        await p.getByTestId("confirm").waitFor();
        expect(await axeViolations(p), `${scheme}, ${width} px, dialog open`).toEqual([]);
        await p.screenshot({ path: join(OUT, `dashboard-dialog-${scheme}-${width}.png`) });
        await p.keyboard.press("Escape");
        await p.getByTestId("confirm").waitFor({ state: "hidden" });
        await p.close();
      }
    }
    expect(c.closeCode).toBeUndefined();
    expect(c.frames.filter((f) => f.frame.case === "unsubscribed")).toEqual([]);
  }, 90_000);

  it("the node panel lists the API node and each edge with its connections, refreshed, and says when a node does not answer", async () => {
    const a = await connectControl(0);
    const b = await connectControl(1);
    await connectControl(1);
    await b.ok({ command: { case: "join", value: { channel: "nodes-room" } } });
    const p = await browser.newPage({ viewport: { width: 1366, height: 800 } });
    await p.goto(`http://${control.http}/`);
    const edge = (c: TestClient) => p.locator(`#nodes li[data-role=edge][data-node="${edgeOf(c.id)}"]`);
    await expect.poll(() => p.locator("#nodes li[data-role=api]").count()).toBe(1);
    expect(await p.locator("#nodes li[data-role=edge]").count()).toBe(2);
    expect(await p.getByTestId("node-total").textContent()).toBe("3");
    await expect.poll(() => edge(a).getAttribute("data-connections")).toBe("1");
    expect(await edge(b).getAttribute("data-connections")).toBe("2");
    expect(await edge(b).getAttribute("data-channels")).toBe("1");
    expect(await edge(b).locator(".facts").textContent()).toMatch(
      /^v\d+\.\d+\.\d+\S* · up (\d+ m )?\d+ s · 2 connections · 1 channel$/,
    );
    expect(await p.locator("#nodes li[data-role=api] .facts").textContent()).toMatch(
      /^v\d+\.\d+\.\d+\S* · up (\d+ m )?\d+ s$/,
    );
    expect(await p.getByTestId("node-unanswered").isHidden()).toBe(true);
    // Refreshed without a reload: one more connection on the first edge.
    await connectControl(0);
    await expect.poll(() => edge(a).getAttribute("data-connections"), { timeout: 5_000 }).toBe("2");
    // A stalled edge does not answer Info: the panel says so and lists the nodes that did.
    const stalled = control.edges[1]!;
    stalled.child.kill("SIGSTOP");
    try {
      await p.getByTestId("node-unanswered").filter({ hasText: "1 node did not answer" }).waitFor({ timeout: 10_000 });
      expect(await p.locator("#nodes li[data-role=edge]").count()).toBe(1);
    } finally {
      stalled.child.kill("SIGCONT");
    }
    await p.getByTestId("node-unanswered").waitFor({ state: "hidden", timeout: 10_000 });
    expect(await p.locator("#nodes li[data-role=edge]").count()).toBe(2);
    await p.close();
  }, 60_000);

  it("unsubscribes and disconnects a member from its row after a confirmation dialog; Cancel and Escape do nothing", async () => {
    const ada = await connectControl(0, "act-ada");
    const bob = await connectControl(1, "act-bob");
    const cy = await connectControl(0);
    const dee = await connectControl(1, "act-dee");
    for (const c of [ada, bob, cy, dee]) await c.ok({ command: { case: "join", value: { channel: "actions" } } });
    const p = await browser.newPage({ viewport: { width: 1366, height: 800 } });
    await p.goto(`http://${control.http}/#actions`);
    await p.locator("[data-testid=watch-state][data-state=live]").waitFor();
    const row = (c: TestClient) => p.locator(`tr[data-member="${c.id}"]`);
    const button = (c: TestClient, action: "unsubscribe" | "disconnect") =>
      row(c).locator(`button[data-action=${action}]`);
    for (const c of [ada, bob, cy, dee]) await row(c).waitFor();
    expect(await row(bob).locator(".edge").textContent()).toBe(`edge ${edgeOf(bob.id)}`);
    expect(await row(ada).locator(".edge").textContent()).toBe(`edge ${edgeOf(ada.id)}`);
    const dialog = p.getByTestId("confirm");
    const result = p.getByTestId("action-result");
    const focused = () =>
      p.evaluate(() => {
        const e = document.activeElement as HTMLElement | null;
        return { inDialog: !!e?.closest("dialog"), id: e?.id, label: e?.getAttribute("aria-label") };
      });

    // By keyboard: Enter opens the dialog with the focus in it, Escape cancels, the focus is back on the button.
    await button(bob, "unsubscribe").focus();
    await p.keyboard.press("Enter");
    await dialog.waitFor();
    expect((await focused()).inDialog).toBe(true);
    expect(await p.getByTestId("confirm-connection").textContent()).toBe(bob.id);
    expect(await p.getByTestId("confirm-user").textContent()).toBe("act-bob");
    expect(await p.getByTestId("confirm-channel").textContent()).toBe("actions");
    expect(await p.getByTestId("confirm-reason").isVisible()).toBe(false);
    await p.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    expect((await focused()).label).toBe(`Unsubscribe ${bob.id}`);
    // A join redraws the rows: the keyboard stays on the same button.
    const eve = await connectControl(0);
    await eve.ok({ command: { case: "join", value: { channel: "actions" } } });
    await row(eve).waitFor();
    expect((await focused()).label).toBe(`Unsubscribe ${bob.id}`);
    // Cancel, with the mouse, on Disconnect: the focus starts in the reason field.
    await button(bob, "disconnect").click();
    await dialog.waitFor();
    expect((await focused()).id).toBe("confirm-reason");
    await p.getByTestId("confirm-reason").fill("not sent");
    await p.getByTestId("confirm-cancel").click();
    await dialog.waitFor({ state: "hidden" });
    expect((await focused()).label).toBe(`Disconnect ${bob.id}`);
    await sleep(500);
    expect(bob.closeCode).toBeUndefined();
    expect(bob.frames.filter((f) => f.frame.case === "unsubscribed")).toEqual([]);
    expect(await row(bob).count()).toBe(1);
    expect(await result.textContent()).toBe("");

    // Unsubscribe: the client is told, its row goes, its connection stays.
    await button(ada, "unsubscribe").click();
    await dialog.waitFor();
    expect(await p.getByTestId("confirm-user").textContent()).toBe("act-ada");
    await p.getByTestId("confirm-ok").click();
    const f = await ada.next((f) => f.frame.case === "unsubscribed");
    expect((f.frame.value as { channel: string }).channel).toBe("actions");
    await row(ada).waitFor({ state: "detached" });
    await result.filter({ hasText: `unsubscribed 1 connection from actions: ${ada.id} (user act-ada)` }).waitFor();
    expect((await focused()).id).toBe("members-heading");
    expect(ada.closeCode).toBeUndefined();

    // Disconnect with a reason: closed with 4505 (do not reconnect) and that reason.
    await button(bob, "disconnect").click();
    await dialog.waitFor();
    await p.getByTestId("confirm-reason").fill("bye from the dashboard");
    await p.getByTestId("confirm-ok").click();
    await bob.closed;
    expect([bob.closeCode, bob.closeReason]).toEqual([CloseCode.DisconnectedFinal, "bye from the dashboard"]);
    await row(bob).waitFor({ state: "detached" });
    await result.filter({ hasText: `disconnected 1 connection: ${bob.id} (user act-bob), close code 4505` }).waitFor();

    // "Let it reconnect", confirmed with Enter in the reason field: 4005 and the default reason.
    await button(cy, "disconnect").click();
    await dialog.waitFor();
    await p.getByTestId("confirm-reconnect").check();
    await p.getByTestId("confirm-reason").press("Enter");
    await cy.closed;
    expect([cy.closeCode, cy.closeReason]).toEqual([CloseCode.Disconnected, "disconnected by the backend"]);
    await result.filter({ hasText: `disconnected 1 connection: ${cy.id}, close code 4005` }).waitFor();

    // The member left while the dialog was open: the API's NOT_FOUND is shown, in the result and the log.
    await button(dee, "disconnect").click();
    await dialog.waitFor();
    await dee.close();
    await row(dee).waitFor({ state: "detached" });
    await p.getByTestId("confirm-ok").click();
    await result
      .filter({ hasText: `disconnect ${dee.id} (user act-dee) failed: NotFound: no open connection` })
      .waitFor();
    expect(await result.getAttribute("class")).toContain("error");
    await p.locator('#log li.error[data-kind="disconnect"]').filter({ hasText: "NotFound" }).waitFor();
    await p.locator('#log li[data-kind="unsubscribe"]').filter({ hasText: ada.id }).waitFor();
    await p.close();
  }, 60_000);

  it("a member's row opens its connection's details (GetConnections), by mouse or keyboard, light and dark, wide and at 390 px", async () => {
    const before = Date.now();
    const ada = await connectControl(0, "det-ada");
    const anon = await connectControl(1);
    await ada.ok({ command: { case: "updateProfile", value: { data: profile({ name: "Ada", team: "ops" }) } } });
    for (const channel of ["details-room", "details-other"])
      await ada.ok({ command: { case: "join", value: { channel } } });
    await anon.ok({ command: { case: "join", value: { channel: "details-room" } } });
    mkdirSync(OUT, { recursive: true });
    for (const scheme of ["light", "dark"] as const) {
      for (const width of [1366, 390]) {
        const where = `${scheme}, ${width} px`;
        const p = await browser.newPage({ viewport: { width, height: 844 }, colorScheme: scheme, bypassCSP: true });
        await p.goto(`http://${control.http}/#details-room`);
        await p.locator("[data-testid=watch-state][data-state=live]").waitFor();
        const row = (c: TestClient) => p.locator(`tr[data-member="${c.id}"]`);
        await row(ada).waitFor();
        await row(anon).waitFor();
        const dialog = p.getByTestId("details");
        const focusedLabel = () => p.evaluate(() => document.activeElement?.getAttribute("aria-label"));

        // With the mouse, anywhere on the row (here its profile): the details, from the edge.
        await row(ada).locator(".profile").click();
        await dialog.waitFor();
        await p.getByTestId("details-what").waitFor();
        expect(await p.getByTestId("details-id").textContent()).toBe(ada.id);
        expect(await p.getByTestId("details-user").textContent()).toBe("det-ada");
        expect(await p.getByTestId("details-edge").textContent()).toBe(edgeOf(ada.id));
        expect(await p.getByTestId("details-channels").locator("li").allTextContents()).toEqual([
          "details-other",
          "details-room",
        ]);
        expect(await p.getByTestId("details-encoding").textContent()).toBe("JSON (text frames)");
        expect(JSON.parse((await p.getByTestId("details-profile").textContent())!)).toEqual({
          name: "Ada",
          team: "ops",
        });
        const since = p.getByTestId("details-since");
        const connectedMs = Number(await since.getAttribute("data-connected-ms"));
        expect(connectedMs).toBeGreaterThanOrEqual(before);
        expect(connectedMs).toBeLessThanOrEqual(Date.now());
        expect(await since.textContent()).toMatch(/^\d\d:\d\d:\d\d, for (\d+ m )?\d+ s$/);
        expect(await axeViolations(p), `${where}, details open`).toEqual([]);
        // The dialog fits the screen: nothing to scroll sideways, on a phone either.
        const box = (await p.locator("#details").boundingBox())!;
        expect(box.x).toBeGreaterThanOrEqual(0);
        expect(box.x + box.width, where).toBeLessThanOrEqual(width);
        expect(await p.evaluate(() => document.documentElement.scrollWidth), where).toBeLessThanOrEqual(width);
        await p.screenshot({ path: join(OUT, `dashboard-details-${scheme}-${width}.png`) });
        // Escape closes it; the focus goes to the row's details button.
        await p.keyboard.press("Escape");
        await dialog.waitFor({ state: "hidden" });
        // (The close event that moves it comes a task after the dialog is hidden.)
        await expect.poll(focusedLabel, { message: where }).toBe(`Details of ${ada.id}`);

        if (scheme === "light" && width === 1366) {
          // By keyboard: Enter on the id opens it, the focus on Close; Enter there closes it, the focus back.
          await row(anon).locator("button[data-details]").focus();
          await p.keyboard.press("Enter");
          await p.getByTestId("details-what").waitFor();
          expect(await p.evaluate(() => document.activeElement?.id)).toBe("details-close");
          expect(await p.getByTestId("details-user").textContent()).toBe("— (anonymous)");
          expect(await p.getByTestId("details-edge").textContent()).toBe(edgeOf(anon.id));
          expect(await p.getByTestId("details-encoding").textContent()).toBe("protobuf (binary frames)");
          expect(await p.getByTestId("details-channels").locator("li").allTextContents()).toEqual(["details-room"]);
          expect(await p.getByTestId("details-profile").textContent()).toBe("— (none set)");
          await p.keyboard.press("Enter");
          await dialog.waitFor({ state: "hidden" });
          await expect.poll(focusedLabel).toBe(`Details of ${anon.id}`);
          // The action buttons still act, without opening the details.
          await row(anon).locator("button[data-action=unsubscribe]").click();
          await p.getByTestId("confirm").waitFor();
          expect(await dialog.isVisible()).toBe(false);
          await p.keyboard.press("Escape");
          await p.getByTestId("confirm").waitFor({ state: "hidden" });
          // A connection that closed before its edge was asked: the API's NOT_FOUND, in the dialog.
          const gone = await connectControl(1, "det-gone");
          await gone.ok({ command: { case: "join", value: { channel: "details-room" } } });
          await row(gone).waitFor();
          let release!: () => void;
          const held = new Promise<void>((r) => (release = r));
          await p.route("**/realtime.v1.Realtime/GetConnections", async (route) => {
            await held;
            await route.continue();
          });
          await row(gone).locator("button[data-details]").click();
          await dialog.waitFor();
          expect(await p.getByTestId("details-state").textContent()).toBe("asking its edge…");
          await gone.close();
          release();
          await p
            .getByTestId("details-state")
            .and(p.locator("[data-state=error]"))
            .filter({ hasText: `NotFound: no open connection matches connection "${gone.id}"` })
            .waitFor();
          expect(await p.getByTestId("details-what").isHidden()).toBe(true);
          await p.getByTestId("details-close").click();
          await dialog.waitFor({ state: "hidden" });
          await p.unroute("**/realtime.v1.Realtime/GetConnections");
        }
        await p.close();
      }
    }
    expect(ada.closeCode).toBeUndefined();
    expect(anon.frames.filter((f) => f.frame.case === "unsubscribed")).toEqual([]);
  }, 90_000);

  it("the channel list is one Tab stop, arrows move in it, Enter watches the channel", async () => {
    for (const name of ["kb/a", "kb/b", "kb/c"]) {
      const c = await connect("json");
      await c.ok({ command: { case: "join", value: { channel: name } } });
    }
    const p = await browser.newPage({ viewport: { width: 1366, height: 800 } });
    await p.goto(`http://${cluster.http}/`);
    await p.getByTestId("filter").fill("kb/");
    await expect.poll(() => p.locator("#channel-list li[data-channel]").count()).toBe(3);
    // From the filter, one Tab reaches the list (its first channel), not each channel in turn.
    await p.getByTestId("filter").focus();
    await p.keyboard.press("Tab");
    const focused = () => p.evaluate(() => (document.activeElement as HTMLElement | null)?.dataset.channel);
    expect(await focused()).toBe("kb/a");
    await p.keyboard.press("ArrowDown");
    await p.keyboard.press("ArrowDown");
    expect(await focused()).toBe("kb/c");
    await p.keyboard.press("ArrowUp");
    expect(await focused()).toBe("kb/b");
    await p.keyboard.press("Enter");
    await p.getByTestId("channel-name").filter({ hasText: "kb/b" }).waitFor();
    expect(await p.locator('li[data-channel="kb/b"]').getAttribute("aria-selected")).toBe("true");
    await p.keyboard.press("Tab");
    expect(await focused()).toBeUndefined(); // out of the list in one Tab
    await p.close();
  }, 60_000);

  it("stays responsive through a burst of 2,000 events: the log is drawn per frame and bounded", async () => {
    const c = await connect("json");
    await c.ok({ command: { case: "join", value: { channel: "burst" } } });
    const p = await browser.newPage({ viewport: { width: 1366, height: 800 } });
    await p.goto(`http://${cluster.http}/#burst`);
    await p.locator("[data-testid=watch-state][data-state=live]").waitFor();
    // The longest main-thread task of the page from here on.
    await p.evaluate(() => {
      const w = window as unknown as { longest: number };
      w.longest = 0;
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) w.longest = Math.max(w.longest, e.duration);
      }).observe({ type: "longtask" });
    });
    const api = realtimeClient(cluster.grpc);
    const stream = api.publish();
    const acked = new Promise<void>((resolve, reject) => {
      stream.on("data", (r: { handled: bigint }) => {
        if (r.handled === 2_000n) resolve();
      });
      stream.on("error", reject);
    });
    for (let i = 1; i <= 2_000; i++)
      stream.write(
        create(PublishRequestSchema, {
          event: {
            case: "send",
            value: { channel: "burst", event: "tick", payload: { case: "json", value: profile({ n: i }) } },
          },
        }),
      );
    stream.end();
    await acked;
    const sentAt = performance.now();
    await p.locator('#log li[data-kind="message"]').filter({ hasText: '{"n":2000}' }).waitFor({ timeout: 20_000 });
    const lagMs = performance.now() - sentAt;
    const longestMs = await p.evaluate(() => (window as unknown as { longest: number }).longest);
    const entries = await p.locator("#log li").count();
    console.log(
      `dashboard burst of 2,000 events: longest task ${longestMs.toFixed(0)} ms, shown ${lagMs.toFixed(0)} ms after the last ack, ${entries} log entries`,
    );
    expect(entries).toBeLessThanOrEqual(500);
    // Loose bounds (a shared, busy machine; the figures go to the docs): before drawing per frame the page froze for seconds.
    expect(longestMs).toBeLessThan(2_000);
    expect(lagMs).toBeLessThan(3_000);
    api.close();
    await p.close();
  }, 60_000);

  it("during an outage shows one 'disconnected since' state and keeps the last data, marked stale", async () => {
    const down = await startCluster(1);
    try {
      const c = await TestClient.connect(down.ws[0]!, "json");
      clients.push(c);
      await c.ok({ command: { case: "join", value: { channel: "outage" } } });
      const p = await browser.newPage({ viewport: { width: 1366, height: 800 } });
      await p.goto(`http://${down.http}/#outage`);
      await p.locator("[data-testid=watch-state][data-state=live]").waitFor();
      await p.locator("#nodes li[data-role=edge]").waitFor();
      await p.locator(`tr[data-member="${c.id}"]`).waitFor();
      await p.getByTestId("overview").and(p.locator("[data-connections='1']")).waitFor();
      await down.api.stop();
      await p.getByTestId("status").filter({ hasText: "disconnected since" }).waitFor({ timeout: 10_000 });
      await p.getByTestId("watch-state").filter({ hasText: "disconnected since" }).waitFor({ timeout: 10_000 });
      // Several retries later (every 2 s): still one line about it, and the last members, marked stale.
      await new Promise((r) => setTimeout(r, 5_000));
      expect(await p.locator('#log li[data-kind="stream"]').count()).toBe(1);
      expect(await p.locator(`tr[data-member="${c.id}"]`).count()).toBe(1);
      expect(await p.getByTestId("members").getAttribute("data-stale")).toBe("true");
      expect(await p.getByTestId("channel-list").getAttribute("data-stale")).toBe("true");
      // The node panel too: its last answer stays, marked stale, with its own "disconnected since".
      expect(await p.getByTestId("node-state").textContent()).toMatch(/^disconnected since /);
      expect(await p.locator("#nodes li[data-role=edge]").count()).toBe(1);
      expect(await p.getByTestId("nodes").getAttribute("data-stale")).toBe("true");
      // And the overview: its charts stay, marked stale, with its own "disconnected since".
      expect(await p.getByTestId("stats-state").textContent()).toMatch(/^disconnected since /);
      expect(await p.getByTestId("overview").getAttribute("data-stale")).toBe("true");
      expect(await p.getByTestId("overview").getAttribute("data-connections")).toBe("1");
      await p.close();
    } finally {
      await down.stop();
    }
  }, 60_000);

  it("the activity log shows joins, leaves, occupied and vacated and connections across every channel, filtered by prefix and kind, light and dark", async () => {
    mkdirSync(OUT, { recursive: true });
    for (const scheme of ["light", "dark"] as const) {
      const p = await browser.newPage({ viewport: { width: 1366, height: 900 }, colorScheme: scheme, bypassCSP: true });
      await p.goto(`http://${control.http}/`);
      const log = p.getByTestId("activity-log");
      const lines = () => log.locator("li").evaluateAll((els) => els.map((e) => (e as HTMLElement).innerText));
      const visible = () =>
        log
          .locator("li")
          .evaluateAll((els) =>
            els.filter((e) => (e as HTMLElement).offsetParent !== null).map((e) => (e as HTMLElement).innerText),
          );
      // The page's stream is in effect once an event made now reaches it.
      const probe = await connectControl(0, "probe");
      await expect
        .poll(
          async () => {
            await probe.request({ command: { case: "join", value: { channel: `act-probe-${scheme}` } } });
            await probe.request({ command: { case: "leave", value: { channel: `act-probe-${scheme}` } } });
            return (await lines()).some((l) => l.includes(`act-probe-${scheme}`));
          },
          { timeout: 15_000, interval: 500 },
        )
        .toBe(true);
      const c = await connectControl(1, `ann-${scheme}`);
      await c.ok({ command: { case: "join", value: { channel: `act-${scheme}` } } });
      await c.close();
      const room = `act-${scheme}`;
      await expect
        .poll(async () => (await lines()).join("\n"), { timeout: 10_000 })
        .toMatch(
          new RegExp(
            [
              `connected\\s+${c.id} \\(user ann-${scheme}\\) on edge ${edgeOf(c.id)}`,
              `occupied\\s+${room}`,
              `joined\\s+${room}: ${c.id} \\(user ann-${scheme}\\)`,
              `left\\s+${room}: ${c.id} \\(user ann-${scheme}\\), disconnected`,
              `vacated\\s+${room}`,
              `closed\\s+${c.id} \\(user ann-${scheme}\\): client`,
            ].join("[\\s\\S]*"),
          ),
        );
      // The kind filter: only occupied and vacated stay visible.
      await p.getByTestId("activity-kind").selectOption("channel");
      const shown = await visible();
      expect(shown.length).toBeGreaterThan(0);
      expect(
        shown.every((l) => /^\S+\s+(occupied|vacated)\s/.test(l)),
        shown.join("\n"),
      ).toBe(true);
      expect(await axeViolations(p), `activity, ${scheme}`).toEqual([]);
      await p.getByTestId("activity").screenshot({ path: join(OUT, `dashboard-activity-${scheme}.png`) });
      // The prefix filter (on the API): only the channels it names come from now on.
      await p.getByTestId("activity-kind").selectOption("all");
      await p.getByTestId("activity-prefix").fill(`only-${scheme}`);
      await expect.poll(() => log.getAttribute("data-prefix")).toBe(`only-${scheme}`);
      await p.locator("#activity-clear").click();
      const d = await connectControl(0);
      await expect
        .poll(
          async () => {
            await d.request({ command: { case: "join", value: { channel: `other-${scheme}` } } });
            await d.request({ command: { case: "join", value: { channel: `only-${scheme}` } } });
            await d.request({ command: { case: "leave", value: { channel: `only-${scheme}` } } });
            await d.request({ command: { case: "leave", value: { channel: `other-${scheme}` } } });
            return (await lines()).some((l) => l.includes(`only-${scheme}`));
          },
          { timeout: 15_000, interval: 500 },
        )
        .toBe(true);
      const after = await lines();
      expect(
        after.filter((l) => l.includes(`other-${scheme}`) || /connected|closed/.test(l)),
        after.join("\n"),
      ).toEqual([]);
      await p.close();
    }
  }, 90_000);

  it("the activity log shows the messages sent across every channel (WatchMessages): a backend's and a client's, with a preview, and the kind filter", async () => {
    const p = await browser.newPage({ viewport: { width: 1366, height: 900 }, bypassCSP: true });
    const api = realtimeClient(control.grpc);
    try {
      await p.goto(`http://${control.http}/`);
      const log = p.getByTestId("activity-log");
      const lines = () => log.locator("li").evaluateAll((els) => els.map((e) => (e as HTMLElement).innerText));
      // The page's watch is in effect once the nodes heard of it (the tap's announcements): a Send made now reaches it.
      let n = 0;
      await expect
        .poll(
          async () => {
            await api.send({
              channel: `msg-probe-${++n}`,
              event: "probe",
              payload: { case: "json", value: profile(n) },
            });
            return (await lines()).some((l) => l.includes("msg-probe-"));
          },
          { timeout: 15_000, interval: 500 },
        )
        .toBe(true);
      expect(await p.getByTestId("activity-messages-state").textContent()).toBe("● live");
      const sent = await api.send({
        channel: "msg-room",
        event: "greeting",
        payload: { case: "json", value: profile({ text: "hello from a backend" }) },
      });
      expect(sent.messageId).not.toBe("");
      const c = await connectControl(1, "cleo");
      await c.ok({ command: { case: "join", value: { channel: "msg-room" } } });
      await expect
        .poll(
          async () => {
            await c.ok({
              command: {
                case: "send",
                value: {
                  channel: "msg-room",
                  event: "chat",
                  payload: { case: "json", value: profile({ text: "hi" }) },
                },
              },
            });
            return (await lines()).join("\n");
          },
          { timeout: 15_000, interval: 500 },
        )
        .toMatch(
          new RegExp(
            [
              `message\\s+greeting\\s*msg-room: \\{"text":"hello from a backend"\\} \\(31 B\\)\\s*from a backend`,
              `message\\s+chat\\s*msg-room: \\{"text":"hi"\\} \\(13 B\\)\\s*from ${c.id.replace(".", "\\.")}`,
            ].join("[\\s\\S]*"),
          ),
        );
      // The kind filter: only messages stay visible.
      await p.getByTestId("activity-kind").selectOption("message");
      const shown = await log
        .locator("li")
        .evaluateAll((els) =>
          els.filter((e) => (e as HTMLElement).offsetParent !== null).map((e) => (e as HTMLElement).innerText),
        );
      expect(shown.length).toBeGreaterThan(1);
      expect(
        shown.every((l) => /^\S+\s+message\s/.test(l)),
        shown.join("\n"),
      ).toBe(true);
      expect(await axeViolations(p), "activity with messages").toEqual([]);
      mkdirSync(OUT, { recursive: true });
      await p.getByTestId("activity").screenshot({ path: join(OUT, "dashboard-activity-messages.png") });
    } finally {
      api.close();
      await p.close();
    }
  }, 60_000);

  it("the activity log says it is off when the service keeps no lifecycle (REALTIME_LIFECYCLE=false), and does not ask again", async () => {
    const off = await startCluster(1, { REALTIME_LIFECYCLE: "false" });
    try {
      const p = await browser.newPage({ viewport: { width: 1366, height: 800 } });
      await p.goto(`http://${off.http}/`);
      const state = p.getByTestId("activity-state");
      await expect
        .poll(() => state.textContent(), { timeout: 10_000 })
        .toMatch(/^off: FailedPrecondition: .*REALTIME_LIFECYCLE=false/);
      // Past the page's retry delay it has not tried again (which would say "connecting…").
      await sleep(3_000);
      expect(await state.textContent()).toMatch(/^off: /);
      await p.close();
    } finally {
      await off.stop();
    }
  }, 30_000);

  it("filters channels by prefix", async () => {
    await page.getByTestId("filter").fill("support/");
    await expect
      .poll(() =>
        page
          .locator("#channel-list li[data-channel]")
          .evaluateAll((els) => els.map((e) => (e as HTMLElement).dataset.channel)),
      )
      .toEqual(["support/eu"]);
    await page.getByTestId("filter").fill("");
  });
});
