// Joins a channel on an edge and prints every frame it receives.
//   node examples/listen.mjs [channel] [edge-url]
// It speaks the JSON encoding of the client protocol (docs/protocol.md) with
// nothing but the `ws` package, to show how little a client needs.
import WebSocket from "ws";

const [channel = "lobby", url = "ws://127.0.0.1:8090"] = process.argv.slice(2);
const ws = new WebSocket(url, "realtime.v1.json");
ws.on("open", () => {
  ws.send(JSON.stringify({ id: 1, updateProfile: { data: { name: "listener" } } }));
  ws.send(JSON.stringify({ id: 2, join: { channel } }));
});
ws.on("message", (data) => console.log(data.toString()));
ws.on("close", (code, reason) => {
  console.log(`closed: ${code} ${reason}`);
  process.exit(code === 1000 ? 0 : 1);
});
ws.on("error", (err) => {
  console.error(`cannot reach the edge at ${url}: ${err.message}`);
  process.exit(1);
});
