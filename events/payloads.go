package events

import (
	"errors"
	"fmt"
	"time"
)

// Content types a message may carry.
const (
	ContentText  = "text"
	ContentImage = "image"
	ContentVideo = "video"
	ContentAudio = "audio"
	// ContentSystem is a group's system message ("A added B"): stored by
	// the persister from a GroupChanged event, never sent by a client.
	ContentSystem = "system"
)

// ValidContentType reports whether t is one of the content types above.
func ValidContentType(t string) bool {
	switch t {
	case ContentText, ContentImage, ContentVideo, ContentAudio:
		return true
	}
	return false
}

// MessageSentV1 is published when a user sends a message. Its MessageID and
// CreatedAt are fixed at ingress, so every redelivery describes the same row.
type MessageSentV1 struct {
	MessageID       string    `json:"message_id"`
	ConversationID  string    `json:"conversation_id"`
	SenderID        int64     `json:"sender_id"`
	RecipientID     int64     `json:"recipient_id"`
	ContentType     string    `json:"content_type"`
	TextContent     string    `json:"text_content,omitempty"`
	MediaKey        string    `json:"media_key,omitempty"`
	AudioDuration   *int32    `json:"audio_duration,omitempty"`
	ReplyToID       string    `json:"reply_to_id,omitempty"`
	ClientMessageID string    `json:"client_message_id,omitempty"`
	CreatedAt       time.Time `json:"created_at"`
	// SourceConnectionID is the WebSocket connection the message came from,
	// if any: fanout skips it, since that device already has the message.
	SourceConnectionID string `json:"source_connection_id,omitempty"`
	// WithheldFromRecipient is set at ingress when the recipient blocks the
	// sender: the message is kept for the sender only and is never posted or
	// pushed to the recipient. Fixed at ingress, so a replay withholds it too.
	WithheldFromRecipient bool `json:"withheld_from_recipient,omitempty"`
	// MemberIDs are, in a group (RecipientID 0), the members it goes to:
	// every current member but the sender, read under the group's share
	// lock at CreatedAt. Fixed at ingress, so a replay posts and stores
	// the same.
	MemberIDs []int64 `json:"member_ids,omitempty"`
}

// Group reports whether the message is a group's.
func (m MessageSentV1) Group() bool { return m.RecipientID == 0 }

func (MessageSentV1) EventType() string { return TypeMessageSent }
func (MessageSentV1) EventVersion() int { return 1 }

// Validate checks what the persister relies on.
func (m MessageSentV1) Validate() error {
	var errs []error
	if !IsUUID(m.MessageID) {
		errs = append(errs, fmt.Errorf("message_id %q is not a UUID", m.MessageID))
	}
	if !IsUUID(m.ConversationID) {
		errs = append(errs, fmt.Errorf("conversation_id %q is not a UUID", m.ConversationID))
	}
	if m.SenderID <= 0 || m.RecipientID < 0 {
		errs = append(errs, errors.New("sender_id must be positive, recipient_id positive (0 in a group)"))
	}
	for _, u := range m.MemberIDs {
		if u <= 0 || u == m.SenderID {
			errs = append(errs, fmt.Errorf("member_ids holds %d: members are positive and not the sender", u))
			break
		}
	}
	if m.RecipientID > 0 && len(m.MemberIDs) > 0 {
		errs = append(errs, errors.New("a direct message (recipient_id) has no member_ids"))
	}
	if !ValidContentType(m.ContentType) {
		errs = append(errs, fmt.Errorf("content_type %q is not one of text, image, video, audio", m.ContentType))
	}
	if m.ContentType == ContentText && m.TextContent == "" {
		errs = append(errs, errors.New("text message without text_content"))
	}
	if m.ContentType != ContentText && m.MediaKey == "" {
		errs = append(errs, errors.New("media message without media_key"))
	}
	if m.ReplyToID != "" && !IsUUID(m.ReplyToID) {
		errs = append(errs, fmt.Errorf("reply_to_id %q is not a UUID", m.ReplyToID))
	}
	if m.CreatedAt.IsZero() {
		errs = append(errs, errors.New("created_at is missing"))
	}
	return errors.Join(errs...)
}

// MessageReadV1 is published when a reader has seen messages of one
// conversation.
type MessageReadV1 struct {
	ConversationID string    `json:"conversation_id"`
	ReaderID       int64     `json:"reader_id"`
	MessageIDs     []string  `json:"message_ids"`
	ReadAt         time.Time `json:"read_at"`
	// NotifyUserIDs are the other participants, who see the read receipt
	// (none in a group: its members see counts).
	NotifyUserIDs []int64 `json:"notify_user_ids,omitempty"`
	// Group: the conversation is a group; the read advances the reader's
	// read position, from which the messages' counts are read.
	Group bool `json:"group,omitempty"`
}

func (MessageReadV1) EventType() string { return TypeMessageRead }
func (MessageReadV1) EventVersion() int { return 1 }

func (m MessageReadV1) Validate() error {
	if !IsUUID(m.ConversationID) {
		return fmt.Errorf("conversation_id %q is not a UUID", m.ConversationID)
	}
	if m.ReaderID <= 0 {
		return errors.New("reader_id must be positive")
	}
	if len(m.MessageIDs) == 0 {
		return errors.New("message_ids is empty")
	}
	for _, id := range m.MessageIDs {
		if !IsUUID(id) {
			return fmt.Errorf("message id %q is not a UUID", id)
		}
	}
	if m.ReadAt.IsZero() {
		return errors.New("read_at is missing")
	}
	return nil
}

// TypingV1 is ephemeral: only fanout consumes it; it is never persisted.
type TypingV1 struct {
	ConversationID string `json:"conversation_id"`
	UserID         int64  `json:"user_id"`
	RecipientID    int64  `json:"recipient_id"` // 0 in a group
	IsTyping       bool   `json:"is_typing"`
	// MemberIDs are, in a group, the other members: who is told.
	MemberIDs []int64 `json:"member_ids,omitempty"`
}

func (TypingV1) EventType() string { return TypeTyping }
func (TypingV1) EventVersion() int { return 1 }

func (m TypingV1) Validate() error {
	if !IsUUID(m.ConversationID) {
		return fmt.Errorf("conversation_id %q is not a UUID", m.ConversationID)
	}
	if m.UserID <= 0 || m.RecipientID < 0 || (m.RecipientID == 0) == (len(m.MemberIDs) == 0) {
		return errors.New("user_id must be positive, and either recipient_id (direct) or member_ids (a group) given")
	}
	for _, u := range m.MemberIDs {
		if u <= 0 || u == m.UserID {
			return fmt.Errorf("member_ids holds %d: members are positive and not the one typing", u)
		}
	}
	return nil
}

// MessageDeliveredV1 records that a message reached at least one live
// connection of its recipient.
type MessageDeliveredV1 struct {
	MessageID      string    `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	SenderID       int64     `json:"sender_id"`
	RecipientID    int64     `json:"recipient_id"`
	DeliveredAt    time.Time `json:"delivered_at"`
	// Group: the message is a group's, delivered to the member RecipientID.
	Group bool `json:"group,omitempty"`
}

func (MessageDeliveredV1) EventType() string { return TypeMessageDelivered }
func (MessageDeliveredV1) EventVersion() int { return 1 }

func (m MessageDeliveredV1) Validate() error {
	if !IsUUID(m.MessageID) || !IsUUID(m.ConversationID) {
		return errors.New("message_id and conversation_id must be UUIDs")
	}
	if m.DeliveredAt.IsZero() {
		return errors.New("delivered_at is missing")
	}
	return nil
}

// MessageDeletedV1 hides a message for one participant ("delete for me").
type MessageDeletedV1 struct {
	MessageID      string    `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	UserID         int64     `json:"user_id"`
	DeletedAt      time.Time `json:"deleted_at"`
}

func (MessageDeletedV1) EventType() string { return TypeMessageDeleted }
func (MessageDeletedV1) EventVersion() int { return 1 }

func (m MessageDeletedV1) Validate() error {
	if !IsUUID(m.MessageID) || !IsUUID(m.ConversationID) {
		return errors.New("message_id and conversation_id must be UUIDs")
	}
	if m.UserID <= 0 {
		return errors.New("user_id must be positive")
	}
	if m.DeletedAt.IsZero() {
		return errors.New("deleted_at is missing")
	}
	return nil
}

// ConversationSettingsChangedV1 carries only the settings the participant
// changed; nil fields are left as they are.
type ConversationSettingsChangedV1 struct {
	ConversationID string    `json:"conversation_id"`
	UserID         int64     `json:"user_id"`
	Pinned         *bool     `json:"pinned,omitempty"`
	Muted          *bool     `json:"muted,omitempty"`
	Archived       *bool     `json:"archived,omitempty"`
	Deleted        *bool     `json:"deleted,omitempty"`
	ChangedAt      time.Time `json:"changed_at"`
}

func (ConversationSettingsChangedV1) EventType() string { return TypeConversationSettingsChanged }
func (ConversationSettingsChangedV1) EventVersion() int { return 1 }

func (m ConversationSettingsChangedV1) Validate() error {
	if !IsUUID(m.ConversationID) {
		return fmt.Errorf("conversation_id %q is not a UUID", m.ConversationID)
	}
	if m.UserID <= 0 {
		return errors.New("user_id must be positive")
	}
	if m.Pinned == nil && m.Muted == nil && m.Archived == nil && m.Deleted == nil {
		return errors.New("no setting changed")
	}
	if m.ChangedAt.IsZero() {
		return errors.New("changed_at is missing")
	}
	return nil
}

// ThumbnailReadyV1 is published by the thumbnailer once a thumbnail object
// exists next to the original media.
type ThumbnailReadyV1 struct {
	MessageID      string `json:"message_id"`
	ConversationID string `json:"conversation_id"`
	SenderID       int64  `json:"sender_id"`
	RecipientID    int64  `json:"recipient_id"`
	MediaKey       string `json:"media_key"`
	ThumbnailKey   string `json:"thumbnail_key"`
	Width          int    `json:"width"`
	Height         int    `json:"height"`
	AudioDuration  *int32 `json:"audio_duration,omitempty"`
	// WithheldFromRecipient is the message's (see MessageSentV1): the
	// update goes to the sender only.
	WithheldFromRecipient bool `json:"withheld_from_recipient,omitempty"`
	// MemberIDs are the message's, in a group (RecipientID 0): who else
	// learns of the update.
	MemberIDs []int64 `json:"member_ids,omitempty"`
}

func (ThumbnailReadyV1) EventType() string { return TypeThumbnailReady }
func (ThumbnailReadyV1) EventVersion() int { return 1 }

func (m ThumbnailReadyV1) Validate() error {
	if !IsUUID(m.MessageID) || !IsUUID(m.ConversationID) {
		return errors.New("message_id and conversation_id must be UUIDs")
	}
	if m.ThumbnailKey == "" && m.AudioDuration == nil {
		return errors.New("neither thumbnail_key nor audio_duration is set")
	}
	return nil
}

// ConnectedV1 asks fanout to greet a new WebSocket connection: API Gateway
// cannot send to a connection while its $connect route is still running.
type ConnectedV1 struct {
	ConnectionID string `json:"connection_id"`
	UserID       int64  `json:"user_id"`
}

func (ConnectedV1) EventType() string { return TypeConnected }
func (ConnectedV1) EventVersion() int { return 1 }

func (m ConnectedV1) Validate() error {
	if m.ConnectionID == "" || m.UserID <= 0 {
		return errors.New("connection_id and user_id are required")
	}
	return nil
}

// PresenceV1 is ephemeral, like TypingV1: a user's first live connection
// opened (Online) or their last one closed (at At). Fanout debounces it
// before anyone is told, and writes last seen once an offline holds.
type PresenceV1 struct {
	UserID int64     `json:"user_id"`
	Online bool      `json:"online"`
	At     time.Time `json:"at"`
}

func (PresenceV1) EventType() string { return TypePresence }
func (PresenceV1) EventVersion() int { return 1 }

func (m PresenceV1) Validate() error {
	if m.UserID <= 0 {
		return errors.New("user_id must be positive")
	}
	if m.At.IsZero() {
		return errors.New("at is missing")
	}
	return nil
}

// PushRequestedV1 is published by fanout, in the same publish as the batch's
// delivery receipts, for a message that reached none of its recipient's
// live connections (and is not withheld from them): the notifier pushes it
// to the recipient's devices. A recipient who is online costs no event.
type PushRequestedV1 struct {
	MessageID      string    `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	SenderID       int64     `json:"sender_id"`
	RecipientID    int64     `json:"recipient_id"`
	ContentType    string    `json:"content_type"`
	TextContent    string    `json:"text_content,omitempty"`
	CreatedAt      time.Time `json:"created_at"` // the message's
}

func (PushRequestedV1) EventType() string { return TypePushRequested }
func (PushRequestedV1) EventVersion() int { return 1 }

func (m PushRequestedV1) Validate() error {
	var errs []error
	if !IsUUID(m.MessageID) || !IsUUID(m.ConversationID) {
		errs = append(errs, errors.New("message_id and conversation_id must be UUIDs"))
	}
	if m.SenderID <= 0 || m.RecipientID <= 0 {
		errs = append(errs, errors.New("sender_id and recipient_id must be positive"))
	}
	if !ValidContentType(m.ContentType) {
		errs = append(errs, fmt.Errorf("content_type %q is not one of text, image, video, audio", m.ContentType))
	}
	if m.CreatedAt.IsZero() {
		errs = append(errs, errors.New("created_at is missing"))
	}
	return errors.Join(errs...)
}
