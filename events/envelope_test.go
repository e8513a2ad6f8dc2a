package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

func ptr[T any](v T) *T { return &v }

// goldenPayloads pins the wire format of every payload version: a change that
// alters these bytes breaks consumers already deployed.
func goldenPayloads() map[string]Payload {
	at := time.Date(2026, 11, 29, 12, 0, 0, 123456000, time.UTC)
	conv := "0190b6f4-8a3e-7c2d-9f10-1234567890ab"
	msg := "0190b6f4-8a3f-7000-8000-00000000abcd"
	return map[string]Payload{
		"message_sent_v1": MessageSentV1{MessageID: msg, ConversationID: conv, SenderID: 1, RecipientID: 2,
			ContentType: ContentText, TextContent: "Olá! Como vai?", ClientMessageID: "c-1", CreatedAt: at},
		"message_sent_image_v1": MessageSentV1{MessageID: msg, ConversationID: conv, SenderID: 1, RecipientID: 2,
			ContentType: ContentImage, MediaKey: "chat/1/2026/11/0190b6f4-8a3f-7000-8000-00000000abcd.jpg", CreatedAt: at,
			SourceConnectionID: "L0SM9cOFvHcCIhw="},
		"message_read_v1": MessageReadV1{ConversationID: conv, ReaderID: 2, MessageIDs: []string{msg}, ReadAt: at, NotifyUserIDs: []int64{1}},
		"typing_v1":       TypingV1{ConversationID: conv, UserID: 2, RecipientID: 1, IsTyping: true},
		"message_delivered_v1": MessageDeliveredV1{MessageID: msg, ConversationID: conv, SenderID: 1, RecipientID: 2,
			DeliveredAt: at},
		"message_deleted_v1": MessageDeletedV1{MessageID: msg, ConversationID: conv, UserID: 2, DeletedAt: at},
		"conversation_settings_changed_v1": ConversationSettingsChangedV1{ConversationID: conv, UserID: 1,
			Pinned: ptr(true), Muted: ptr(false), ChangedAt: at},
		"thumbnail_ready_v1": ThumbnailReadyV1{MessageID: msg, ConversationID: conv, SenderID: 1, RecipientID: 2,
			MediaKey: "chat/1/2026/11/a.jpg", ThumbnailKey: "chat/1/2026/11/a.thumb.jpg", Width: 320, Height: 240},
		"connected_v1": ConnectedV1{ConnectionID: "L0SM9cOFvHcCIhw=", UserID: 1},
		"presence_v1":  PresenceV1{UserID: 1, Online: true, At: at},
		"push_requested_v1": PushRequestedV1{MessageID: msg, ConversationID: conv, SenderID: 1, RecipientID: 2,
			ContentType: ContentText, TextContent: "Olá! Como vai?", CreatedAt: at},
		"message_edited_v1": MessageEditedV1{MessageID: msg, ConversationID: conv, SenderID: 1, TextContent: "Olá! Tudo bem?",
			EditedAt: at, Deadline: at.Add(DefaultEditWindow), ParticipantIDs: []int64{1, 2}, SourceConnectionID: "L0SM9cOFvHcCIhw="},
		"message_unsent_v1": MessageUnsentV1{MessageID: msg, ConversationID: conv, SenderID: 1, ContentType: ContentImage,
			MediaKey: "chat/1/2026/11/a.jpg", UnsentAt: at, Deadline: at.Add(DefaultUnsendWindow), ParticipantIDs: []int64{1, 2}},
		"conversation_created_v1": ConversationCreatedV1{ConversationID: conv, CreatorID: 1, ParticipantIDs: []int64{1, 2}, CreatedAt: at},
		"group_changed_v1": GroupChangedV1{ConversationID: conv, ActorID: 1, Action: GroupAdded, UserIDs: []int64{3},
			MemberIDs: []int64{1, 2, 3}, At: at},
		"feed_appended_v1": FeedAppendedV1{Entries: []FeedEntryRef{{UserID: 1, Epoch: 4503599627370496, Position: 41, ChangeID: 7},
			{UserID: 2, Epoch: 17, Position: 9, ChangeID: 7}}, Held: true},
		"reaction_changed_v1": ReactionChangedV1{MessageID: msg, ConversationID: conv, UserID: 2, Emoji: "👍🏽",
			ChangedAt: at, ParticipantIDs: []int64{1, 2}},
	}
}

func TestGoldenEnvelopes(t *testing.T) {
	at := time.Date(2026, 11, 29, 12, 0, 0, 123456000, time.UTC)
	for name, p := range goldenPayloads() {
		t.Run(name, func(t *testing.T) {
			env, err := New("0190b6f4-8a40-7000-8000-0000000000ee", at, 1, "0190b6f4-8a3e-7c2d-9f10-1234567890ab", p)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			got, err := json.MarshalIndent(env, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			path := filepath.Join("testdata", name+".golden.json")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run go test ./events -update to create): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("wire format changed for %s:\n got: %s\nwant: %s", name, got, want)
			}
			// Round trip: golden bytes decode to an equal payload.
			back, err := Decode(want)
			if err != nil {
				t.Fatalf("Decode golden: %v", err)
			}
			fresh := reflect.New(reflect.TypeOf(p)).Interface().(Payload)
			if err := back.Unmarshal(fresh); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(reflect.ValueOf(fresh).Elem().Interface(), p) {
				t.Fatalf("round trip mismatch:\n got %#v\nwant %#v", fresh, p)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good := `{"id":"0190b6f4-8a40-7000-8000-0000000000ee","type":"Typing","version":1,"occurred_at":"2026-11-29T12:00:00Z","actor_id":1,"data":{}}`
	if _, err := Decode([]byte(good)); err != nil {
		t.Fatalf("good envelope refused: %v", err)
	}
	cases := map[string]string{
		"not json":  `{`,
		"bad id":    `{"id":"x","type":"Typing","version":1,"occurred_at":"2026-11-29T12:00:00Z","data":{}}`,
		"no type":   `{"id":"0190b6f4-8a40-7000-8000-0000000000ee","version":1,"occurred_at":"2026-11-29T12:00:00Z","data":{}}`,
		"version 0": `{"id":"0190b6f4-8a40-7000-8000-0000000000ee","type":"Typing","version":0,"occurred_at":"2026-11-29T12:00:00Z","data":{}}`,
		"no time":   `{"id":"0190b6f4-8a40-7000-8000-0000000000ee","type":"Typing","version":1,"data":{}}`,
		"no data":   `{"id":"0190b6f4-8a40-7000-8000-0000000000ee","type":"Typing","version":1,"occurred_at":"2026-11-29T12:00:00Z"}`,
		"bad conv":  `{"id":"0190b6f4-8a40-7000-8000-0000000000ee","type":"Typing","version":1,"occurred_at":"2026-11-29T12:00:00Z","conversation_id":"nope","data":{}}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Decode([]byte(in))
			if !errors.Is(err, ErrInvalid) || !IsPermanent(err) {
				t.Fatalf("want ErrInvalid (permanent), got %v", err)
			}
		})
	}
}

func TestUnmarshalChecksTypeAndPayload(t *testing.T) {
	at := time.Now()
	env, err := New("0190b6f4-8a40-7000-8000-0000000000ee", at, 1, "", TypingV1{ConversationID: "0190b6f4-8a3e-7c2d-9f10-1234567890ab", UserID: 1, RecipientID: 2})
	if err != nil {
		t.Fatal(err)
	}
	var wrong MessageReadV1
	if err := env.Unmarshal(&wrong); !errors.Is(err, ErrInvalid) {
		t.Fatalf("type mismatch accepted: %v", err)
	}
	env.Data = json.RawMessage(`{"conversation_id":"x","user_id":1,"recipient_id":2}`)
	var typing TypingV1
	if err := env.Unmarshal(&typing); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid payload accepted: %v", err)
	}
}

func TestRoutes(t *testing.T) {
	at := time.Now()
	conv := "0190b6f4-8a3e-7c2d-9f10-1234567890ab"
	text, _ := New("0190b6f4-8a40-7000-8000-0000000000e1", at, 1, conv, MessageSentV1{MessageID: "0190b6f4-8a40-7000-8000-0000000000e1", ConversationID: conv, SenderID: 1, RecipientID: 2, ContentType: ContentText, TextContent: "x", CreatedAt: at})
	img, _ := New("0190b6f4-8a40-7000-8000-0000000000e2", at, 1, conv, MessageSentV1{MessageID: "0190b6f4-8a40-7000-8000-0000000000e2", ConversationID: conv, SenderID: 1, RecipientID: 2, ContentType: ContentImage, MediaKey: "k", CreatedAt: at})
	typing, _ := New("0190b6f4-8a40-7000-8000-0000000000e3", at, 1, conv, TypingV1{ConversationID: conv, UserID: 1, RecipientID: 2})
	want := map[string][3]bool{ // text, image, typing
		WorkerPersister:   {true, true, false},
		WorkerFanout:      {true, true, true},
		WorkerThumbnailer: {false, true, false},
	}
	for worker, w := range want {
		r, ok := RouteFor(worker)
		if !ok {
			t.Fatalf("no route for %s", worker)
		}
		got := [3]bool{r.Matches(text), r.Matches(img), r.Matches(typing)}
		if got != w {
			t.Errorf("%s matches %v, want %v", worker, got, w)
		}
	}
	if _, ok := RouteFor("nope"); ok {
		t.Fatal("unknown worker has a route")
	}
}
