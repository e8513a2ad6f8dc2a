package api

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/wsproto"
)

// FuzzWebSocketFrame feeds arbitrary client frames to the WebSocket
// decoding: the frame's envelope, then its data as the action's input.
// Properties: no panic; every refusal is a coded error a client can act on
// (bad_request, invalid_argument, payload_too_large), never internal; a
// decoded input written back in camelCase decodes to the same input.
func FuzzWebSocketFrame(f *testing.F) {
	golden, _ := filepath.Glob(filepath.Join("..", "internal", "wsproto", "testdata", "action.*.json"))
	for _, p := range golden {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, body string) {
		in, err := decodeFrame(body)
		if err != nil {
			checkClientError(t, err)
			return
		}
		var input any
		switch in.Action {
		case wsproto.ActionSendMessage:
			input = &chat.SendInput{}
		case wsproto.ActionTyping:
			input = &chat.TypingInput{}
		case wsproto.ActionMarkRead:
			input = &chat.ReadInput{}
		default:
			return // ping has no data; others are refused by name
		}
		if err := decodeData(in.Data, input); err != nil {
			checkClientError(t, err)
			return
		}
		// Back to the wire: the canonical names, renamed to camelCase.
		canon, err := json.Marshal(input)
		if err != nil {
			t.Fatalf("a decoded input does not encode: %v", err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(canon, &fields); err != nil {
			t.Fatal(err)
		}
		camel := make(map[string]json.RawMessage, len(fields))
		for k, v := range fields {
			camel[wsWire.name(k)] = v
		}
		data, _ := json.Marshal(camel)
		again := reflect.New(reflect.TypeOf(input).Elem()).Interface()
		if err := decodeData(data, again); err != nil {
			t.Fatalf("re-encoded data %s does not decode: %v", data, err)
		}
		if !reflect.DeepEqual(input, again) {
			t.Fatalf("round trip changed the input: %+v, then %+v", input, again)
		}
	})
}

func checkClientError(t *testing.T, err error) {
	t.Helper()
	var ce *chat.Error
	if !errors.As(err, &ce) {
		t.Fatalf("uncoded error: %v", err)
	}
	switch ce.Code {
	case chat.CodeBadRequest, chat.CodeInvalid, chat.CodeTooLarge:
	default:
		t.Fatalf("error coded %s, want a client error: %v", ce.Code, err)
	}
	if ce.Message == "" {
		t.Fatalf("coded error without a reason: %#v", ce)
	}
}
