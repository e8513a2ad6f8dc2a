package main

// EventSource is the Source of every event the chat puts on the bus.
const EventSource = "parley.chat"

// Event types, used as EventBridge DetailType.
const (
	MessageSent                 = "MessageSent"
	MessageRead                 = "MessageRead"
	Typing                      = "Typing"
	MessageDelivered            = "MessageDelivered"
	MessageDeleted              = "MessageDeleted"
	ConversationSettingsChanged = "ConversationSettingsChanged"
	ThumbnailReady              = "ThumbnailReady"
	Connected                   = "Connected"
)

// Worker is one consumer: its own rule, queue, DLQs and Lambda. Name is part
// of the rule name that replay targets, so it must never change.
type Worker struct {
	Name        string
	Handler     string         // CHAT_LAMBDA_HANDLER value
	DetailTypes []string       // the rule's detail-type filter
	Detail      map[string]any // extra filter on the envelope, nil for none
	MemoryMB    float64
	TimeoutSec  float64
	// BatchWindowSec trades latency for fewer invocations; fanout is what
	// users wait on, so it gets none.
	BatchWindowSec float64
}

// Workers is the fixed set of consumers; the filters mirror events.Routes()
// in the app, so AWS delivers what the embedded bus delivers. Typing is
// ephemeral, so only fanout sees it; the persister never stores it.
var Workers = []Worker{
	{
		Name:    "persister",
		Handler: "worker-persister",
		DetailTypes: []string{
			MessageSent, MessageRead, MessageDelivered, MessageDeleted,
			ConversationSettingsChanged, ThumbnailReady,
		},
		MemoryMB: 256, TimeoutSec: 30, BatchWindowSec: 1,
	},
	{
		Name:    "fanout",
		Handler: "worker-fanout",
		DetailTypes: []string{
			MessageSent, MessageRead, Typing, ThumbnailReady, Connected,
		},
		MemoryMB: 256, TimeoutSec: 30, BatchWindowSec: 0,
	},
	{
		Name:        "thumbnailer",
		Handler:     "worker-thumbnailer",
		DetailTypes: []string{MessageSent},
		// Text messages never reach the thumbnailer's queue. Audio does: the
		// thumbnailer fills in audio_duration when the client did not.
		Detail: map[string]any{
			"data": map[string]any{"content_type": []any{"image", "video", "audio"}},
		},
		MemoryMB: 1024, TimeoutSec: 60, BatchWindowSec: 1,
	},
}

// RuleName is stable per stage and worker: replay filters on it.
func RuleName(stage, worker string) string { return "parley-" + stage + "-" + worker }

// EventBusName is the bus the functions publish to.
func EventBusName(stage string) string { return "parley-" + stage }

// ArchiveName is the bus archive replay reads from.
func ArchiveName(stage string) string { return "parley-" + stage + "-events" }

// Edge function handler names (CHAT_LAMBDA_HANDLER values).
const (
	HandlerWSConnect    = "ws-connect"
	HandlerWSDisconnect = "ws-disconnect"
	HandlerWSDefault    = "ws-default"
	HandlerAPI          = "api"
)
