#!/usr/bin/env python3
"""A Hooks server in Python (realtime.v1.Hooks, grpcio) that the edges call:
OnConnect authenticates a WebSocket connection by its session cookie (no
JWT needed), and OnJoin lets only some users into channels under a prefix.
OnClientSend lets every send through.

Point the edges at it:

    /usr/bin/python3 examples/python/hooks.py --port 50070 --sessions s3cr3t=alice,t0ken=bob --vip alice
    REALTIME_HOOKS_URL=127.0.0.1:50070 REALTIME_HOOKS_CONNECT=true \\
      REALTIME_HOOKS_JOIN_PREFIXES=vip: npm start

It prints {"ready": "hooks", "address": "127.0.0.1:50070"} once it listens
(--port 0 picks a free port), then one JSON line per call.
"""
import argparse
import json
import os
import sys
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "gen"))

import grpc  # noqa: E402
from google.protobuf import json_format, struct_pb2  # noqa: E402

try:
    from realtime.v1 import hooks_pb2, hooks_pb2_grpc  # noqa: E402
except ImportError:
    sys.exit("examples/python/gen is missing: run examples/python/generate.sh first")


def cookie(headers, name):
    """The value of cookie `name` in the request's Cookie header, or None."""
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def log(**fields):
    print(json.dumps(fields), flush=True)


class Hooks(hooks_pb2_grpc.HooksServicer):
    def __init__(self, sessions, vip, prefix):
        self.sessions = sessions  # session token -> user id
        self.vip = vip
        self.prefix = prefix

    def OnConnect(self, request, context):
        user = self.sessions.get(cookie(request.headers, "session") or "")
        log(hook="OnConnect", edge=request.edge_id, user=user)
        if user is None:
            return hooks_pb2.OnConnectResponse(refuse=hooks_pb2.HookRefusal(reason="log in first: no valid session cookie"))
        profile = struct_pb2.Value()
        json_format.ParseDict({"name": user.title()}, profile)
        return hooks_pb2.OnConnectResponse(accept=hooks_pb2.ConnectAccept(user_id=user, profile=profile))

    def OnJoin(self, request, context):
        allowed = not request.channel.startswith(self.prefix) or request.user_id in self.vip
        log(hook="OnJoin", user=request.user_id, channel=request.channel, allowed=allowed)
        if allowed:
            return hooks_pb2.OnJoinResponse(allow=hooks_pb2.JoinAllow())
        return hooks_pb2.OnJoinResponse(deny=hooks_pb2.HookRefusal(reason=f"{self.prefix} channels are for {', '.join(sorted(self.vip))}"))

    def OnClientSend(self, request, context):
        log(hook="OnClientSend", user=request.user_id, channel=request.channel, event=request.event)
        return hooks_pb2.OnClientSendResponse(allow=hooks_pb2.SendAllow())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=50070, help="0: a free port")
    parser.add_argument("--sessions", default="s3cr3t=alice", help="session=user pairs, comma-separated")
    parser.add_argument("--vip", default="alice", help="users allowed into the vip channels, comma-separated")
    parser.add_argument("--prefix", default="vip:", help="the channels OnJoin guards")
    args = parser.parse_args()

    sessions = dict(pair.split("=", 1) for pair in args.sessions.split(",") if pair)
    vip = {u for u in args.vip.split(",") if u}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    hooks_pb2_grpc.add_HooksServicer_to_server(Hooks(sessions, vip, args.prefix), server)
    port = server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    log(ready="hooks", address=f"{args.host}:{port}")
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(0)


if __name__ == "__main__":
    main()
