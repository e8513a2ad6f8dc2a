// Package wsproto defines the chat's WebSocket protocol, both directions,
// once: the actions clients send, the replies and pushes the server sends,
// and their encoding. The mobile app switches on action and type names:
// never rename one. asyncapi.json documents every frame; the tests check
// the Go types, the golden files in testdata and that document agree.
//
// The package imports only the standard library, so any client or worker
// can speak the protocol without pulling in the server.
package wsproto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Actions a client sends, in Inbound.Action.
const (
	ActionSendMessage = "sendMessage"
	ActionPing        = "ping"
	ActionTyping      = "typing"
	ActionMarkRead    = "markRead"
	// Changes to a sent message: by its sender (edit, unsend), by any
	// participant (their one reaction).
	ActionEditMessage    = "editMessage"
	ActionUnsendMessage  = "unsendMessage"
	ActionSetReaction    = "setReaction"
	ActionRemoveReaction = "removeReaction"
)

// The close the server ends a connection with when the token it was opened
// with expires, after an unauthenticated error frame (a private-use code,
// RFC 6455 section 7.4.2): reconnect with a fresh token. Where no timer can
// close it (API Gateway), every frame after expiry is refused with that
// error frame, and fanout closes it (with 1000) on the first push meant for
// it, sending that error frame instead.
const (
	CloseTokenExpired       = 4001
	CloseTokenExpiredReason = "Token expired"
)

// Actions lists every client action, for error messages.
func Actions() []string {
	return []string{ActionSendMessage, ActionPing, ActionTyping, ActionMarkRead,
		ActionEditMessage, ActionUnsendMessage, ActionSetReaction, ActionRemoveReaction}
}

// Types of the frames the server sends, in their "type" field.
const (
	// Replies to the sending connection.
	TypeAcknowledgment       = "acknowledgment"
	TypePong                 = "pong"
	TypeReadAcknowledgment   = "readAcknowledgment"
	TypeChangeAcknowledgment = "changeAcknowledgment"
	TypeError                = "error"
	// Pushes, sent by fanout.
	TypeConnected        = "connected"
	TypeNewMessage       = "newMessage"
	TypeMessageDelivered = "messageDelivered"
	TypeMessageRead      = "messageRead"
	TypeTyping           = "typing"
	TypeMessageUpdated   = "messageUpdated"
	TypePresence         = "presence"
	TypeMessageUnsent    = "messageUnsent"
	TypeReactionChanged  = "reactionChanged"
	// A change of the user's sync feed, to connections in feed mode.
	TypeFeedChange = "feedChange"
)

// ConnectedMessage is the greeting text of the seed contract.
const ConnectedMessage = "WebSocket connection established"

// Inbound is every client frame: an action and its data. Data is decoded
// per action into the server's input types (see package api); the
// structs below are its documented shape.
type Inbound struct {
	Action string          `json:"action"`
	Data   json.RawMessage `json:"data,omitempty"`
}

// SendMessageData is the data of sendMessage: recipientId or
// conversationId, and the content.
type SendMessageData struct {
	RecipientID     int64  `json:"recipientId,omitempty"`
	ConversationID  string `json:"conversationId,omitempty"`
	ContentType     string `json:"contentType,omitempty"`
	TextContent     string `json:"textContent,omitempty"`
	MediaKey        string `json:"mediaKey,omitempty"`
	MediaURL        string `json:"mediaUrl,omitempty"`
	AudioDuration   *int32 `json:"audioDuration,omitempty"`
	ReplyToID       string `json:"replyToId,omitempty"`
	ClientMessageID string `json:"clientMessageId,omitempty"`
}

// TypingData is the data of the typing action.
type TypingData struct {
	ConversationID string `json:"conversationId"`
	RecipientID    int64  `json:"recipientId,omitempty"`
	IsTyping       bool   `json:"isTyping"`
}

// MarkReadData is the data of markRead.
type MarkReadData struct {
	ConversationID string   `json:"conversationId,omitempty"`
	MessageIDs     []string `json:"messageIds"`
}

// EditMessageData is the data of editMessage: the new text.
type EditMessageData struct {
	MessageID   string `json:"messageId"`
	TextContent string `json:"textContent"`
}

// MessageRefData is the data of unsendMessage and removeReaction.
type MessageRefData struct {
	MessageID string `json:"messageId"`
}

// SetReactionData is the data of setReaction: one emoji.
type SetReactionData struct {
	MessageID string `json:"messageId"`
	Emoji     string `json:"emoji"`
}

// Action is a client frame with typed data, as clients build it.
type Action[T any] struct {
	Action string `json:"action"`
	Data   T      `json:"data,omitzero"`
}

// SendMessage builds a sendMessage action.
func SendMessage(d SendMessageData) Action[SendMessageData] {
	return Action[SendMessageData]{Action: ActionSendMessage, Data: d}
}

// Typing builds a typing action.
func Typing(d TypingData) Action[TypingData] {
	return Action[TypingData]{Action: ActionTyping, Data: d}
}

// MarkRead builds a markRead action.
func MarkRead(d MarkReadData) Action[MarkReadData] {
	return Action[MarkReadData]{Action: ActionMarkRead, Data: d}
}

// EditMessage builds an editMessage action.
func EditMessage(d EditMessageData) Action[EditMessageData] {
	return Action[EditMessageData]{Action: ActionEditMessage, Data: d}
}

// UnsendMessage builds an unsendMessage action.
func UnsendMessage(d MessageRefData) Action[MessageRefData] {
	return Action[MessageRefData]{Action: ActionUnsendMessage, Data: d}
}

// SetReaction builds a setReaction action.
func SetReaction(d SetReactionData) Action[SetReactionData] {
	return Action[SetReactionData]{Action: ActionSetReaction, Data: d}
}

// RemoveReaction builds a removeReaction action.
func RemoveReaction(d MessageRefData) Action[MessageRefData] {
	return Action[MessageRefData]{Action: ActionRemoveReaction, Data: d}
}

// Ping is the ping action; it has no data.
type Ping struct {
	Action string `json:"action"`
}

// NewPing builds a ping action.
func NewPing() Ping { return Ping{Action: ActionPing} }

// Frame is a frame the server sends.
type Frame interface {
	FrameType() string
}

var (
	_ Frame = Connected{}
	_ Frame = Acknowledgment{}
	_ Frame = Pong{}
	_ Frame = ReadAcknowledgment{}
	_ Frame = ChangeAcknowledgment{}
	_ Frame = Error{}
	_ Frame = Push[NewMessageData]{}
)

// Encode encodes a server frame. HTML characters stay as they are: a
// presigned URL's & must reach the client as &, not \u0026.
func Encode(f Frame) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("wsproto: encode %s frame: %w", f.FrameType(), err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Connected greets a new connection.
type Connected struct {
	Type    string `json:"type"`
	Message string `json:"message"`
}

func (f Connected) FrameType() string { return f.Type }

// NewConnected builds the greeting.
func NewConnected() Connected { return Connected{Type: TypeConnected, Message: ConnectedMessage} }

// Acknowledgment answers sendMessage once the message is durably accepted.
type Acknowledgment struct {
	Type            string    `json:"type"`
	MessageID       string    `json:"messageId"`
	ConversationID  string    `json:"conversationId"`
	ClientMessageID string    `json:"clientMessageId,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
}

func (f Acknowledgment) FrameType() string { return f.Type }

// NewAcknowledgment builds the answer to sendMessage.
func NewAcknowledgment(messageID, conversationID, clientMessageID string, createdAt time.Time) Acknowledgment {
	return Acknowledgment{Type: TypeAcknowledgment, MessageID: messageID, ConversationID: conversationID,
		ClientMessageID: clientMessageID, CreatedAt: createdAt.UTC()}
}

// Pong answers ping.
type Pong struct {
	Type string `json:"type"`
}

func (f Pong) FrameType() string { return f.Type }

// NewPong builds the answer to ping.
func NewPong() Pong { return Pong{Type: TypePong} }

// ReadAcknowledgment answers markRead: which ids the receipt applied to.
type ReadAcknowledgment struct {
	Type           string   `json:"type"`
	ConversationID string   `json:"conversationId"`
	Read           []string `json:"read"`
	Ignored        []string `json:"ignored"`
}

func (f ReadAcknowledgment) FrameType() string { return f.Type }

// NewReadAcknowledgment builds the answer to markRead.
func NewReadAcknowledgment(conversationID string, read, ignored []string) ReadAcknowledgment {
	return ReadAcknowledgment{Type: TypeReadAcknowledgment, ConversationID: conversationID,
		Read: nonNil(read), Ignored: nonNil(ignored)}
}

// ChangeAcknowledgment answers editMessage, unsendMessage, setReaction and
// removeReaction once the change is durably accepted; At is the change's
// time, which orders it against the message's other changes.
type ChangeAcknowledgment struct {
	Type           string    `json:"type"`
	Action         string    `json:"action"`
	MessageID      string    `json:"messageId"`
	ConversationID string    `json:"conversationId"`
	At             time.Time `json:"at"`
}

func (f ChangeAcknowledgment) FrameType() string { return f.Type }

// NewChangeAcknowledgment builds the answer to a change of a message.
func NewChangeAcknowledgment(action, messageID, conversationID string, at time.Time) ChangeAcknowledgment {
	return ChangeAcknowledgment{Type: TypeChangeAcknowledgment, Action: action, MessageID: messageID,
		ConversationID: conversationID, At: at.UTC()}
}

// Error answers a frame that failed; the connection stays open. Code is
// one of the server's stable error codes; Action is the failed action, if
// the frame named one.
//
// RetryAfterMs, on the retryable codes (unavailable, overloaded,
// rate_limited), is how many milliseconds the client should wait before
// sending the same frame again; nothing of the refused frame happened.
type Error struct {
	Type         string `json:"type"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	Action       string `json:"action,omitempty"`
	RetryAfterMs int64  `json:"retryAfterMs,omitempty"`
}

func (f Error) FrameType() string { return f.Type }

// NewError builds an error frame.
func NewError(action, code, message string) Error {
	return Error{Type: TypeError, Code: code, Message: message, Action: action}
}

// WithRetryAfter asks the client to retry after d (at least 1 ms).
func (f Error) WithRetryAfter(d time.Duration) Error {
	f.RetryAfterMs = max(d.Milliseconds(), 1)
	return f
}

// Push is a frame fanout sends: a type and its data.
type Push[T any] struct {
	Type string `json:"type"`
	Data T      `json:"data"`
}

func (f Push[T]) FrameType() string { return f.Type }

// FeedChange is one entry of a user's sync feed, as GET /sync answers it
// and a feedChange frame carries it: Kind is the type of the frame that
// announces the change where one exists, Data that frame's data (a
// newMessage's with the message's seq, and without presigned URLs).
type FeedChange struct {
	Position       int64           `json:"position"`
	Kind           string          `json:"kind"`
	ConversationID string          `json:"conversation_id"`
	OccurredAt     time.Time       `json:"occurred_at"`
	Data           json.RawMessage `json:"data"`
}

// FeedChangeFrame pushes one change of the user's sync feed to a
// connection opened in feed mode, in place of the change's own frame.
// Epoch is the feed's: a position means something only within it. A
// client that sees a position beyond the next one it expects has missed
// changes and fills the gap with one GET /sync from the last it has; one
// at or below it has it already.
type FeedChangeFrame struct {
	Type  string     `json:"type"`
	Epoch int64      `json:"epoch"`
	Data  FeedChange `json:"data"`
}

func (f FeedChangeFrame) FrameType() string { return f.Type }

// NewFeedChange builds a feedChange frame.
func NewFeedChange(epoch int64, c FeedChange) FeedChangeFrame {
	c.OccurredAt = c.OccurredAt.UTC()
	return FeedChangeFrame{Type: TypeFeedChange, Epoch: epoch, Data: c}
}

// NewMessageData is a message as a push carries it. MediaURL is a
// short-lived presigned GET.
type NewMessageData struct {
	ID              string    `json:"id"`
	ConversationID  string    `json:"conversationId"`
	SenderID        int64     `json:"senderId"`
	RecipientID     int64     `json:"recipientId,omitempty"` // absent in a group
	ContentType     string    `json:"contentType"`
	TextContent     string    `json:"textContent,omitempty"`
	MediaURL        string    `json:"mediaUrl,omitempty"`
	MediaKey        string    `json:"mediaKey,omitempty"`
	AudioDuration   *int32    `json:"audioDuration,omitempty"`
	ReplyToID       string    `json:"replyToId,omitempty"`
	ClientMessageID string    `json:"clientMessageId,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
	// System is set on a group's system message (contentType "system"):
	// what changed.
	System *SystemData `json:"system,omitempty"`
}

// SystemData is what a group's system message says changed: action is
// created, added, removed, left, renamed or role_changed; userIds the
// members it is of; title and role where the action has one. Its fields
// are events.SystemMessage's, in the frames' camelCase.
type SystemData struct {
	Action  string  `json:"action"`
	ActorID int64   `json:"actorId"`
	UserIDs []int64 `json:"userIds,omitempty"`
	Title   string  `json:"title,omitempty"`
	Role    string  `json:"role,omitempty"`
}

// SystemMessage pushes a group's system message (the sender is the member
// who made the change).
func SystemMessage(id, conversationID string, createdAt time.Time, s SystemData) Push[NewMessageData] {
	return NewMessage(NewMessageData{ID: id, ConversationID: conversationID, SenderID: s.ActorID,
		ContentType: "system", CreatedAt: createdAt, System: &s})
}

// NewMessage pushes a message to its recipient and the sender's other
// devices.
func NewMessage(d NewMessageData) Push[NewMessageData] {
	d.CreatedAt = d.CreatedAt.UTC()
	return Push[NewMessageData]{Type: TypeNewMessage, Data: d}
}

// MessageDeliveredData says a message reached one of the recipient's
// devices.
type MessageDeliveredData struct {
	MessageID      string    `json:"messageId"`
	ConversationID string    `json:"conversationId"`
	DeliveredAt    time.Time `json:"deliveredAt"`
}

// MessageDelivered pushes a delivery receipt to the sender.
func MessageDelivered(d MessageDeliveredData) Push[MessageDeliveredData] {
	d.DeliveredAt = d.DeliveredAt.UTC()
	return Push[MessageDeliveredData]{Type: TypeMessageDelivered, Data: d}
}

// MessageReadData says a reader read messages.
type MessageReadData struct {
	ConversationID string    `json:"conversationId"`
	ReaderID       int64     `json:"readerId"`
	MessageIDs     []string  `json:"messageIds"`
	ReadAt         time.Time `json:"readAt"`
}

// MessageRead pushes a read receipt to the other participants and the
// reader's devices.
func MessageRead(d MessageReadData) Push[MessageReadData] {
	d.ReadAt = d.ReadAt.UTC()
	return Push[MessageReadData]{Type: TypeMessageRead, Data: d}
}

// TypingStateData says whether a user is typing in a conversation.
type TypingStateData struct {
	ConversationID string `json:"conversationId"`
	UserID         int64  `json:"userId"`
	IsTyping       bool   `json:"isTyping"`
}

// TypingState pushes a typing indicator to the other participant.
func TypingState(d TypingStateData) Push[TypingStateData] {
	return Push[TypingStateData]{Type: TypeTyping, Data: d}
}

// MessageUpdatedData is what changed on a stored message (its thumbnail,
// its audio duration, its edited text). MediaThumbnailURL is a short-lived
// presigned GET. An edit carries TextContent and EditedAt: a client keeps
// the text of the latest EditedAt it has seen.
type MessageUpdatedData struct {
	MessageID         string     `json:"messageId"`
	ConversationID    string     `json:"conversationId"`
	MediaThumbnailURL string     `json:"mediaThumbnailUrl,omitempty"`
	AudioDuration     *int32     `json:"audioDuration,omitempty"`
	TextContent       string     `json:"textContent,omitempty"`
	EditedAt          *time.Time `json:"editedAt,omitempty"`
}

// MessageUpdated pushes a message's change to the participants.
func MessageUpdated(d MessageUpdatedData) Push[MessageUpdatedData] {
	if d.EditedAt != nil {
		t := d.EditedAt.UTC()
		d.EditedAt = &t
	}
	return Push[MessageUpdatedData]{Type: TypeMessageUpdated, Data: d}
}

// MessageUnsentData says a message was deleted for everyone: a client
// shows a tombstone in its place.
type MessageUnsentData struct {
	MessageID      string    `json:"messageId"`
	ConversationID string    `json:"conversationId"`
	UnsentAt       time.Time `json:"unsentAt"`
}

// MessageUnsent pushes an unsend to the participants.
func MessageUnsent(d MessageUnsentData) Push[MessageUnsentData] {
	d.UnsentAt = d.UnsentAt.UTC()
	return Push[MessageUnsentData]{Type: TypeMessageUnsent, Data: d}
}

// ReactionChangedData is one participant's reaction to a message, set or
// (Emoji null) removed. A client keeps the latest ChangedAt per user.
type ReactionChangedData struct {
	MessageID      string    `json:"messageId"`
	ConversationID string    `json:"conversationId"`
	UserID         int64     `json:"userId"`
	Emoji          *string   `json:"emoji"`
	ChangedAt      time.Time `json:"changedAt"`
}

// ReactionChanged pushes a reaction's change to the participants.
func ReactionChanged(d ReactionChangedData) Push[ReactionChangedData] {
	d.ChangedAt = d.ChangedAt.UTC()
	return Push[ReactionChangedData]{Type: TypeReactionChanged, Data: d}
}

// PresenceData is a user's presence as one receiver may see it.
// LastSeenAt is nil while the user is online, and for a receiver who hides
// their own last seen.
type PresenceData struct {
	UserID     int64      `json:"userId"`
	Online     bool       `json:"online"`
	LastSeenAt *time.Time `json:"lastSeenAt"`
}

// Presence pushes a user's presence change to those who share a
// conversation with them.
func Presence(d PresenceData) Push[PresenceData] {
	if d.LastSeenAt != nil {
		t := d.LastSeenAt.UTC()
		d.LastSeenAt = &t
	}
	return Push[PresenceData]{Type: TypePresence, Data: d}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
