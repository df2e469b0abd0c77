// A backend in Go that calls realtime.v1.Realtime over gRPC: it lists a
// channel's members, sends it a JSON event and a binary event, and
// broadcasts a JSON event to every connected client. It prints one JSON
// line per call, and exits 1 with the gRPC status when a call fails.
//
// Built in GOPATH mode with Debian's golang packages: see build.sh.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	realtimev1 "switchboard/realtimev1"
)

func main() {
	target := flag.String("target", "127.0.0.1:50051", "host:port of the gRPC API")
	channel := flag.String("channel", "lobby", "the channel to send to")
	apiKey := flag.String("api-key", os.Getenv("REALTIME_API_KEY"), "sent as authorization: Bearer <key> when set")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each call")
	flag.Parse()

	conn, err := grpc.Dial(*target, grpc.WithInsecure())
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	api := realtimev1.NewRealtimeClient(conn)
	call := func() (context.Context, context.CancelFunc) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		if *apiKey != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*apiKey)
		}
		return ctx, cancel
	}

	ctx, cancel := call()
	members, err := api.GetMembers(ctx, &realtimev1.GetMembersRequest{Channel: *channel})
	cancel()
	if err != nil {
		fail(err)
	}
	ids := []string{}
	for _, m := range members.Members {
		ids = append(ids, m.Id)
	}
	print(map[string]interface{}{"call": "GetMembers", "member_ids": ids})

	payload, _ := structpb.NewValue(map[string]interface{}{"order": 1042, "carrier": "DHL", "lang": "go"})
	ctx, cancel = call()
	sent, err := api.Send(ctx, &realtimev1.SendRequest{Channel: *channel, Event: "order.shipped", Payload: &realtimev1.SendRequest_Json{Json: payload}})
	cancel()
	if err != nil {
		fail(err)
	}
	print(map[string]interface{}{"call": "Send", "payload": "json", "message_id": sent.MessageId, "edges": sent.Edges})

	ctx, cancel = call()
	sent, err = api.Send(ctx, &realtimev1.SendRequest{Channel: *channel, Event: "frame", Payload: &realtimev1.SendRequest_Binary{Binary: []byte{0, 1, 2, 253, 254, 255}}})
	cancel()
	if err != nil {
		fail(err)
	}
	print(map[string]interface{}{"call": "Send", "payload": "binary", "message_id": sent.MessageId, "edges": sent.Edges})

	text, _ := structpb.NewValue(map[string]interface{}{"text": "maintenance at 18:00", "from": "go"})
	ctx, cancel = call()
	cast, err := api.Broadcast(ctx, &realtimev1.BroadcastRequest{Event: "announcement", Payload: &realtimev1.BroadcastRequest_Json{Json: text}})
	cancel()
	if err != nil {
		fail(err)
	}
	print(map[string]interface{}{"call": "Broadcast", "message_id": cast.MessageId, "edges": cast.Edges})
}

func print(v map[string]interface{}) {
	line, _ := json.Marshal(v)
	fmt.Println(string(line))
}

func fail(err error) {
	s, _ := status.FromError(err)
	print(map[string]interface{}{"error": canonical(s.Code().String()), "message": s.Message()})
	os.Exit(1)
}

// canonical turns Go's code name (InvalidArgument) into the name the gRPC
// spec and the other examples use (INVALID_ARGUMENT).
func canonical(name string) string {
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}
