package events

import (
	"encoding/json"
	"slices"
)

// Worker names. They name queues, tables and rules: never rename one, or its
// history is consumed again under the new name.
const (
	WorkerPersister   = "persister"
	WorkerFanout      = "fanout"
	WorkerThumbnailer = "thumbnailer"
	WorkerNotifier    = "notifier"
)

// Route says which events one worker consumes. Types is the coarse filter
// every transport can apply (an EventBridge rule's detail-type); Media, when
// set, narrows MessageSent to those content types (detail.data.content_type).
type Route struct {
	Worker string
	Types  []string
	Media  []string
}

// Routes is the topology: one stream per worker, so a slow or failing worker
// never delays another.
func Routes() []Route {
	return []Route{
		{Worker: WorkerPersister, Types: []string{
			TypeMessageSent, TypeMessageRead, TypeMessageDelivered,
			TypeMessageDeleted, TypeConversationSettingsChanged, TypeThumbnailReady,
			TypeMessageEdited, TypeMessageUnsent, TypeReactionChanged, TypeGroupChanged,
			TypeConversationCreated,
		}},
		// Fanout tells the sender about a delivery itself, right after
		// publishing MessageDelivered, so it does not consume that event.
		// FeedAppended: the persister's appended feed entries, for the
		// connections opened in feed mode.
		{Worker: WorkerFanout, Types: []string{
			TypeMessageSent, TypeMessageRead, TypeTyping, TypeThumbnailReady, TypeConnected, TypePresence,
			TypeMessageEdited, TypeMessageUnsent, TypeReactionChanged, TypeGroupChanged, TypeFeedAppended,
		}},
		// Audio too: the thumbnailer measures audio_duration when the client
		// did not send it. An unsent media message's objects are deleted
		// by it too, the worker that writes media.
		{Worker: WorkerThumbnailer, Types: []string{TypeMessageSent, TypeMessageUnsent}, Media: []string{ContentImage, ContentVideo, ContentAudio}},
		// Pushes to devices of recipients fanout did not reach, and badge
		// updates to a reader's devices.
		{Worker: WorkerNotifier, Types: []string{TypePushRequested, TypeMessageRead}},
	}
}

// Workers lists the worker names of Routes(), in order.
func Workers() []string {
	var names []string
	for _, r := range Routes() {
		names = append(names, r.Worker)
	}
	return names
}

// RouteFor returns the route of a worker by name.
func RouteFor(worker string) (Route, bool) {
	for _, r := range Routes() {
		if r.Worker == worker {
			return r, true
		}
	}
	return Route{}, false
}

// Matches reports whether the worker consumes this event.
func (r Route) Matches(e Envelope) bool {
	if !slices.Contains(r.Types, e.Type) {
		return false
	}
	if len(r.Media) == 0 {
		return true
	}
	var d struct {
		ContentType string `json:"content_type"`
	}
	if err := json.Unmarshal(e.Data, &d); err != nil {
		return false
	}
	return slices.Contains(r.Media, d.ContentType)
}

// Ephemeral reports whether an event is worth nothing once its moment has
// passed (a typing indicator, a feed announcement whose entries the feed
// keeps): a bus may carry it without archiving it and without waiting for
// a disk flush, since losing one in a crash costs a client nothing and
// replaying one later would be wrong.
func Ephemeral(e Envelope) bool {
	return e.Type == TypeTyping || e.Type == TypePresence || e.Type == TypeFeedAppended
}
