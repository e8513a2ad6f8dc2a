package api

import (
	"reflect"
	"slices"
	"testing"

	"github.com/parleychat/parley/internal/chat"
	"github.com/parleychat/parley/internal/wsproto"
)

// TestWebSocketDataIsTheInputInCamelCase checks that the data wsproto
// documents for each action is exactly the service's input, renamed: the
// decoder translates one into the other, so they must not drift.
func TestWebSocketDataIsTheInputInCamelCase(t *testing.T) {
	for _, c := range []struct{ data, input any }{
		{wsproto.SendMessageData{}, chat.SendInput{}},
		{wsproto.TypingData{}, chat.TypingInput{}},
		{wsproto.MarkReadData{}, chat.ReadInput{}},
	} {
		var got []string
		for _, f := range jsonFields(reflect.TypeOf(c.data)) {
			if !wsWire.valid(f) {
				t.Errorf("%T.%s is not camelCase", c.data, f)
			}
			if back := wsWire.name(wsWire.canonical(f)); back != f {
				t.Errorf("%T.%s does not survive the translation (%s)", c.data, f, back)
			}
			got = append(got, wsWire.canonical(f))
		}
		want := jsonFields(reflect.TypeOf(c.input))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%T translates to %v, but %T has %v", c.data, got, c.input, want)
		}
	}
}

func TestWireNaming(t *testing.T) {
	for key, want := range map[string][2]bool{ // valid in REST, valid over WebSocket
		"recipient_id": {true, false},
		"recipientId":  {false, true},
		"pinned":       {true, true},
		"recipientID":  {false, false},
		"Recipient":    {false, false},
		"a__b":         {false, false},
		"trailing_":    {false, false},
		"":             {false, false},
		"x1_y2":        {true, false},
	} {
		if got := [2]bool{restWire.valid(key), wsWire.valid(key)}; got != want {
			t.Errorf("%q: valid (REST, WebSocket) = %v, want %v", key, got, want)
		}
	}
}
