package events

import (
	"errors"
	"fmt"
	"time"
)

// Defaults of how long after sending its sender may change a message. The
// ingress refuses a change past its window and puts the deadline it
// computed (the message's created_at plus the window) in the event; the
// persister checks the change's own time against that deadline, not a
// window of its own, so that a late or replayed event gives the same
// answer whatever either is configured with.
const (
	DefaultEditWindow   = 15 * time.Minute
	DefaultUnsendWindow = time.Hour
)

// Within reports whether a change at `at` to a message created at createdAt
// falls in window.
func Within(createdAt, at time.Time, window time.Duration) bool {
	return !at.Before(createdAt) && at.Sub(createdAt) <= window
}

// ChangeDeadline is the last moment a change to a message created at
// createdAt may take effect, under window.
func ChangeDeadline(createdAt time.Time, window time.Duration) time.Time {
	return createdAt.Add(window)
}

// MessageEditedV1 replaces the text of a text message. EditedAt is fixed at
// ingress: the persister keeps the newest edit, whatever order edits arrive in.
type MessageEditedV1 struct {
	MessageID      string    `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	SenderID       int64     `json:"sender_id"`
	TextContent    string    `json:"text_content"`
	EditedAt       time.Time `json:"edited_at"`
	// Deadline is the last moment the edit may apply (ChangeDeadline),
	// fixed at ingress.
	Deadline time.Time `json:"deadline"`
	// ParticipantIDs are the conversation's participants, the sender
	// included (their other devices): who fanout tells.
	ParticipantIDs []int64 `json:"participant_ids"`
	// SourceConnectionID is the WebSocket connection the edit came from,
	// if any: fanout skips it.
	SourceConnectionID string `json:"source_connection_id,omitempty"`
}

func (MessageEditedV1) EventType() string { return TypeMessageEdited }
func (MessageEditedV1) EventVersion() int { return 1 }

func (m MessageEditedV1) Validate() error {
	errs := checkChange(m.MessageID, m.ConversationID, "sender_id", m.SenderID, "edited_at", m.EditedAt)
	if m.Deadline.IsZero() {
		errs = append(errs, errors.New("deadline is missing"))
	}
	if m.TextContent == "" {
		errs = append(errs, errors.New("text_content is empty"))
	}
	return errors.Join(errs...)
}

// checkChange checks what every change of a message carries: the message,
// who changes it (named by userField) and when (atField).
func checkChange(messageID, conversationID, userField string, userID int64, atField string, at time.Time) []error {
	var errs []error
	if !IsUUID(messageID) || !IsUUID(conversationID) {
		errs = append(errs, errors.New("message_id and conversation_id must be UUIDs"))
	}
	if userID <= 0 {
		errs = append(errs, fmt.Errorf("%s must be positive", userField))
	}
	if at.IsZero() {
		errs = append(errs, fmt.Errorf("%s is missing", atField))
	}
	return errs
}

// MessageUnsentV1 deletes a message for everyone: the persister leaves a
// tombstone in its place in the sequence, the thumbnailer deletes its media
// objects (ContentType and MediaKey are the message's, so that the media
// route selects it as it selects MessageSent).
type MessageUnsentV1 struct {
	MessageID      string    `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	SenderID       int64     `json:"sender_id"`
	ContentType    string    `json:"content_type"`
	MediaKey       string    `json:"media_key,omitempty"`
	UnsentAt       time.Time `json:"unsent_at"`
	// Deadline: as in MessageEditedV1.
	Deadline time.Time `json:"deadline"`
	// ParticipantIDs and SourceConnectionID: as in MessageEditedV1.
	ParticipantIDs     []int64 `json:"participant_ids"`
	SourceConnectionID string  `json:"source_connection_id,omitempty"`
}

func (MessageUnsentV1) EventType() string { return TypeMessageUnsent }
func (MessageUnsentV1) EventVersion() int { return 1 }

func (m MessageUnsentV1) Validate() error {
	errs := checkChange(m.MessageID, m.ConversationID, "sender_id", m.SenderID, "unsent_at", m.UnsentAt)
	if m.Deadline.IsZero() {
		errs = append(errs, errors.New("deadline is missing"))
	}
	if !ValidContentType(m.ContentType) {
		errs = append(errs, fmt.Errorf("content_type %q is not one of text, image, video, audio", m.ContentType))
	}
	return errors.Join(errs...)
}

// ReactionChangedV1 sets a participant's one reaction to a message, or
// removes it (Emoji empty). The newest change by ChangedAt wins.
type ReactionChangedV1 struct {
	MessageID      string    `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	UserID         int64     `json:"user_id"`
	Emoji          string    `json:"emoji,omitempty"`
	ChangedAt      time.Time `json:"changed_at"`
	// ParticipantIDs and SourceConnectionID: as in MessageEditedV1.
	ParticipantIDs     []int64 `json:"participant_ids"`
	SourceConnectionID string  `json:"source_connection_id,omitempty"`
}

func (ReactionChangedV1) EventType() string { return TypeReactionChanged }
func (ReactionChangedV1) EventVersion() int { return 1 }

func (m ReactionChangedV1) Validate() error {
	return errors.Join(checkChange(m.MessageID, m.ConversationID, "user_id", m.UserID, "changed_at", m.ChangedAt)...)
}
