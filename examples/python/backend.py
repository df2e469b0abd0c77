#!/usr/bin/env python3
"""A backend in Python that calls realtime.v1.Realtime over gRPC: it lists a
channel's members, sends it a JSON event and a binary event, and broadcasts a
JSON event to every connected client.

Stubs come from our proto (see README.md: `./generate.sh`). Run with Debian's
python3-grpcio and python3-protobuf:

    /usr/bin/python3 examples/python/backend.py --target 127.0.0.1:50051 --channel lobby

It prints one JSON line per call (what a test or a person can read), and
exits non-zero with the gRPC status when a call fails.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))

import grpc  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402

try:
    from realtime.v1 import realtime_pb2, realtime_pb2_grpc  # noqa: E402
except ImportError:
    sys.exit("examples/python/gen is missing: run examples/python/generate.sh first")


def json_value(obj):
    """A google.protobuf.Value holding any JSON value."""
    value = struct_pb2.Value()
    json_format.ParseDict(obj, value)
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default=os.environ.get("REALTIME_TARGET", "127.0.0.1:50051"), help="host:port of the gRPC API")
    parser.add_argument("--channel", default="lobby")
    parser.add_argument("--api-key", default=os.environ.get("REALTIME_API_KEY", ""), help="sent as authorization: Bearer <key> when set")
    parser.add_argument("--timeout", type=float, default=5.0, help="deadline of each call, seconds")
    args = parser.parse_args()

    metadata = [("authorization", f"Bearer {args.api_key}")] if args.api_key else []
    with grpc.insecure_channel(args.target) as channel:
        api = realtime_pb2_grpc.RealtimeStub(channel)
        try:
            members = api.GetMembers(realtime_pb2.GetMembersRequest(channel=args.channel), timeout=args.timeout, metadata=metadata)
            print(json.dumps({"call": "GetMembers", "members": [json_format.MessageToDict(m) for m in members.members]}), flush=True)

            sent = api.Send(
                realtime_pb2.SendRequest(channel=args.channel, event="order.shipped", json=json_value({"order": 1042, "carrier": "DHL", "lang": "python"})),
                timeout=args.timeout,
                metadata=metadata,
            )
            print(json.dumps({"call": "Send", "payload": "json", "message_id": sent.message_id, "edges": sent.edges}), flush=True)

            sent = api.Send(
                realtime_pb2.SendRequest(channel=args.channel, event="frame", binary=bytes([0, 1, 2, 253, 254, 255])),
                timeout=args.timeout,
                metadata=metadata,
            )
            print(json.dumps({"call": "Send", "payload": "binary", "message_id": sent.message_id, "edges": sent.edges}), flush=True)

            cast = api.Broadcast(
                realtime_pb2.BroadcastRequest(event="announcement", json=json_value({"text": "maintenance at 18:00", "from": "python"})),
                timeout=args.timeout,
                metadata=metadata,
            )
            print(json.dumps({"call": "Broadcast", "message_id": cast.message_id, "edges": cast.edges}), flush=True)
        except grpc.RpcError as err:
            print(json.dumps({"error": err.code().name, "message": err.details()}), flush=True)
            sys.exit(1)


if __name__ == "__main__":
    main()
