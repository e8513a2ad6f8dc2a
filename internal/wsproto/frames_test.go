package wsproto_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/wsproto"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// samples holds one value of every frame, both directions, keyed by the
// name of its golden file and of its message in asyncapi.json. Every field
// is set, so that the golden file shows all of them.
func samples() map[string]any {
	at := time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.UTC)
	dur := int32(42)
	thumbs := "👍🏽"
	const (
		msg  = "0195e4a2-7b3c-7d10-8a4b-9c2d3e4f5a6b"
		conv = "0195e4a2-1111-7abc-8def-0123456789ab"
		url  = "https://media.example.com/chat/1/a.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=900&X-Amz-Signature=abc"
	)
	return map[string]any{
		"action.sendMessage": wsproto.SendMessage(wsproto.SendMessageData{
			RecipientID: 2, ConversationID: conv, ContentType: "audio", TextContent: "hi <b>&</b>",
			MediaKey: "chat/1/a.m4a", MediaURL: url, AudioDuration: &dur, ReplyToID: msg, ClientMessageID: "c-1",
		}),
		"action.ping":     wsproto.NewPing(),
		"action.typing":   wsproto.Typing(wsproto.TypingData{ConversationID: conv, RecipientID: 2, IsTyping: true}),
		"action.markRead": wsproto.MarkRead(wsproto.MarkReadData{ConversationID: conv, MessageIDs: []string{msg}}),

		"frame.connected":          wsproto.NewConnected(),
		"frame.acknowledgment":     wsproto.NewAcknowledgment(msg, conv, "c-1", at),
		"frame.pong":               wsproto.NewPong(),
		"frame.readAcknowledgment": wsproto.NewReadAcknowledgment(conv, []string{msg}, []string{conv}),
		"frame.error":              wsproto.NewError(wsproto.ActionSendMessage, "overloaded", "the server is overloaded; retry shortly").WithRetryAfter(time.Second),
		"frame.newMessage": wsproto.NewMessage(wsproto.NewMessageData{
			ID: msg, ConversationID: conv, SenderID: 1, RecipientID: 2, ContentType: "audio", TextContent: "a <b>&</b>",
			MediaURL: url, MediaKey: "chat/1/a.m4a", AudioDuration: &dur, ReplyToID: conv, ClientMessageID: "c-1", CreatedAt: at,
			// Every field set, to pin each one's encoding: a real frame has
			// System only on a group's system message (contentType system).
			System: &wsproto.SystemData{Action: "role_changed", ActorID: 1, UserIDs: []int64{2}, Title: "t", Role: "admin"},
		}),
		"frame.messageDelivered": wsproto.MessageDelivered(wsproto.MessageDeliveredData{MessageID: msg, ConversationID: conv, DeliveredAt: at}),
		"frame.messageRead": wsproto.MessageRead(wsproto.MessageReadData{
			ConversationID: conv, ReaderID: 2, MessageIDs: []string{msg}, ReadAt: at}),
		"frame.typing":   wsproto.TypingState(wsproto.TypingStateData{ConversationID: conv, UserID: 1, IsTyping: true}),
		"frame.presence": wsproto.Presence(wsproto.PresenceData{UserID: 1, Online: true, LastSeenAt: &at}),
		"frame.messageUpdated": wsproto.MessageUpdated(wsproto.MessageUpdatedData{
			MessageID: msg, ConversationID: conv, MediaThumbnailURL: url, AudioDuration: &dur,
			TextContent: "edited <b>&</b>", EditedAt: &at}),
		"action.editMessage":         wsproto.EditMessage(wsproto.EditMessageData{MessageID: msg, TextContent: "fixed"}),
		"action.unsendMessage":       wsproto.UnsendMessage(wsproto.MessageRefData{MessageID: msg}),
		"action.setReaction":         wsproto.SetReaction(wsproto.SetReactionData{MessageID: msg, Emoji: "👍"}),
		"action.removeReaction":      wsproto.RemoveReaction(wsproto.MessageRefData{MessageID: msg}),
		"frame.changeAcknowledgment": wsproto.NewChangeAcknowledgment(wsproto.ActionEditMessage, msg, conv, at),
		"frame.messageUnsent":        wsproto.MessageUnsent(wsproto.MessageUnsentData{MessageID: msg, ConversationID: conv, UnsentAt: at}),
		"frame.feedChange": wsproto.NewFeedChange(4503599627370496, wsproto.FeedChange{Position: 42, Kind: wsproto.TypeNewMessage,
			ConversationID: conv, OccurredAt: at, Data: json.RawMessage(`{"id":"` + msg + `","conversationId":"` + conv +
				`","senderId":1,"recipientId":2,"contentType":"text","textContent":"hi","createdAt":"2026-03-14T15:09:26.535897Z","seq":7}`)}),
		"frame.reactionChanged": wsproto.ReactionChanged(wsproto.ReactionChangedData{
			MessageID: msg, ConversationID: conv, UserID: 2, Emoji: &thumbs, ChangedAt: at}),
	}
}

// encode encodes a sample the way it goes on the wire: server frames
// through Encode, client actions as a client's encoder would.
func encode(t *testing.T, v any) []byte {
	t.Helper()
	if f, ok := v.(wsproto.Frame); ok {
		b, err := wsproto.Encode(f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGolden pins the encoding of every frame.
func TestGolden(t *testing.T) {
	for name, v := range samples() {
		t.Run(name, func(t *testing.T) {
			requireAllSet(t, reflect.ValueOf(v), name)
			got := encode(t, v)
			path := filepath.Join("testdata", name+".json")
			if *update {
				var pretty bytes.Buffer
				if err := json.Indent(&pretty, got, "", "  "); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, append(pretty.Bytes(), '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, want); err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if !bytes.Equal(got, compact.Bytes()) {
				t.Errorf("%s changed:\n got %s\nwant %s", name, got, compact.Bytes())
			}
		})
	}
}

// requireAllSet fails for a zero field anywhere in v: a sample that leaves
// an omitempty field out would hide it from the golden file and from the
// schema check.
func requireAllSet(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			t.Errorf("%s is nil", path)
			return
		}
		requireAllSet(t, v.Elem(), path)
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			if v.IsZero() {
				t.Errorf("%s is zero", path)
			}
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			requireAllSet(t, v.Field(i), path+"."+f.Name)
		}
	case reflect.Slice:
		if v.Len() == 0 {
			t.Errorf("%s is empty", path)
		}
	default:
		if v.IsZero() {
			t.Errorf("%s is zero", path)
		}
	}
}

// TestEncodeKeepsHTMLCharacters checks a presigned URL's & reaches the
// client as is.
func TestEncodeKeepsHTMLCharacters(t *testing.T) {
	u := "https://s3.example.com/chat/1/a.jpg?X-Amz-Credential=a%2Fb&X-Amz-Signature=<sig>"
	b, err := wsproto.Encode(wsproto.MessageUpdated(wsproto.MessageUpdatedData{MessageID: "m", ConversationID: "c", MediaThumbnailURL: u}))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(u)) || bytes.Contains(b, []byte(`\u0026`)) {
		t.Fatalf("URL escaped: %s", b)
	}
}
