/**
 * @switchboard/client/proto (also switchboard/client/proto): the client
 * protocol's binary encoding, "realtime.v1.proto", for RealtimeClient's
 * `encoding` option. An entry point of its own because it needs
 * protobuf-es's runtime (about 88 KB minified), which the JSON encoding,
 * the default, does without: an application that does not import this
 * module bundles none of it.
 *
 * @example
 * import { RealtimeClient } from "@switchboard/client";
 * import { protoEncoding } from "@switchboard/client/proto";
 * const rt = new RealtimeClient({ url: "wss://edge.example.com", encoding: protoEncoding });
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema } from "../../gen/realtime/client/v1/client_pb.js";
import { Encoding } from "../protocol/encodings.js";
import { decodeServerFrameJson } from "../wire/client-json.js";
import { asBytes, type ClientEncoding } from "./codec.js";

/**
 * The binary encoding: binary frames, smaller than JSON, bytes payloads not
 * base64-encoded. It decodes by the frame's type, not the negotiated
 * encoding: text is JSON, anything binary is protobuf.
 */
export const protoEncoding: ClientEncoding = {
  name: "proto",
  subprotocol: Encoding.Proto,
  encodeClientFrame: (frame) => toBinary(ClientFrameSchema, create(ClientFrameSchema, frame)),
  decodeServerFrame(data) {
    if (typeof data === "string") return decodeServerFrameJson(data);
    const bytes = asBytes(data);
    if (bytes === undefined) {
      throw new TypeError(`unexpected WebSocket message data of type ${Object.prototype.toString.call(data)}`);
    }
    return fromBinary(ServerFrameSchema, bytes);
  },
};

export type { ClientEncoding, EncodingName } from "./codec.js";
