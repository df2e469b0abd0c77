/**
 * A member's connection in detail: user, edge, channels, since when,
 * encoding and profile, as its edge describes it now (GetConnections by
 * connection id), in one modal dialog opened from the member's row.
 *
 * Contract: the dialog opens at once, saying it is asking; the answer fills
 * it only if it is still open for the same connection (a late answer to a
 * closed or reopened dialog is dropped). A failure (NOT_FOUND: the
 * connection closed meanwhile) is shown in the dialog, not thrown. The
 * connect time is the edge's clock, the "for" beside it this browser's:
 * off by the skew between them.
 */
import { toJson } from "@bufbuild/protobuf";
import { timestampMs, ValueSchema } from "@bufbuild/protobuf/wkt";
import type { Client } from "@connectrpc/connect";
import { ConnectionEncoding, type ConnectionDetails, type Realtime } from "../../../gen/realtime/v1/realtime_pb.js";
import { $, clock, duration, el, setLiveState } from "./dom.js";

export interface DetailsOptions {
  readonly client: Client<typeof Realtime>;
  /** How the page words a failed call. */
  readonly describe: (err: unknown) => string;
  /** Called when the dialog closed, with the connection it showed: the page puts the focus back. */
  readonly closed: (connectionId: string) => void;
}

const ENCODING_LABEL: Record<ConnectionEncoding, string> = {
  [ConnectionEncoding.UNSPECIFIED]: "unknown",
  [ConnectionEncoding.JSON]: "JSON (text frames)",
  [ConnectionEncoding.PROTO]: "protobuf (binary frames)",
};

/** Wires the dialog of index.html; returns what opens it for one connection. */
export function connectionDetails(options: DetailsOptions): (connectionId: string) => void {
  const dialog = $("details") as HTMLDialogElement;
  /** The connection the open dialog shows, and which of its openings an answer belongs to. */
  let showing: { id: string; asked: number } | undefined;
  let asked = 0;

  $("details-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => {
    const id = showing?.id;
    showing = undefined;
    if (id !== undefined) options.closed(id);
  });

  return (connectionId: string) => {
    const mine = { id: connectionId, asked: ++asked };
    showing = mine;
    $("details-id").textContent = connectionId;
    $("details-what").hidden = true;
    setLiveState($("details-state"), "connecting", "asking its edge…");
    dialog.showModal();
    options.client
      .getConnections({ target: { target: { case: "connectionId", value: connectionId } } })
      .then(
        (res) => {
          if (showing !== mine) return;
          const c = res.connections[0];
          if (!c) throw new Error("the API answered without the connection");
          fill(c);
          setLiveState($("details-state"), "live", "");
        },
        (err: unknown) => {
          if (showing !== mine) return;
          setLiveState($("details-state"), "error", options.describe(err));
        },
      )
      .catch((err: unknown) => {
        if (showing === mine) setLiveState($("details-state"), "error", String(err));
      });
  };
}

/** Shows c in the dialog. */
function fill(c: ConnectionDetails) {
  $("details-user").textContent = c.userId || "— (anonymous)";
  $("details-edge").textContent = c.edgeId;
  const since = $("details-since");
  if (c.connectedAt) {
    const ms = timestampMs(c.connectedAt);
    since.dataset.connectedMs = String(ms);
    const at = new Date(ms);
    const day = at.toDateString() === new Date().toDateString() ? "" : `${at.toLocaleDateString()} `;
    since.textContent = `${day}${clock(at)}, for ${duration(Date.now() - ms)}`;
  } else {
    delete since.dataset.connectedMs;
    since.textContent = "—";
  }
  $("details-encoding").textContent = ENCODING_LABEL[c.encoding] ?? "unknown";
  const channels = $("details-channels");
  channels.dataset.count = String(c.channelCount);
  if (c.channelCount === 0) channels.replaceChildren("none");
  else {
    const list = el("ul", "chips");
    for (const name of c.channels) list.append(el("li", "", name));
    const more = c.channelCount - c.channels.length;
    channels.replaceChildren(list);
    if (more > 0) channels.append(el("span", "hint", `and ${more} more (the first ${c.channels.length} by name)`));
  }
  $("details-profile").textContent = c.profile
    ? JSON.stringify(toJson(ValueSchema, c.profile), null, 2)
    : "— (none set)";
  $("details-what").hidden = false;
}
