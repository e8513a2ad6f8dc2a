package chat

import (
	"context"
	"encoding/json"
	"time"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// MessageView is a message as REST returns it (snake_case, the seed's
// fields). Media URLs are short-lived presigned GETs, issued only to
// participants. Seq is absent until the persister has stored the message.
type MessageView struct {
	ID                string     `json:"id"`
	ConversationID    string     `json:"conversation_id"`
	Seq               int64      `json:"seq,omitempty"`
	SenderID          int64      `json:"sender_id"`
	RecipientID       *int64     `json:"recipient_id"` // null in a group
	ContentType       string     `json:"content_type"`
	TextContent       *string    `json:"text_content"`
	MediaKey          *string    `json:"media_key,omitempty"`
	MediaURL          *string    `json:"media_url"`
	MediaThumbnailURL *string    `json:"media_thumbnail_url"`
	AudioDuration     *int32     `json:"audio_duration"`
	ReplyToID         *string    `json:"reply_to_id"`
	ClientMessageID   *string    `json:"client_message_id,omitempty"`
	CreatedAt         time.Time  `json:"created_at"`
	SentAt            *time.Time `json:"sent_at"`
	DeliveredAt       *time.Time `json:"delivered_at"`
	ReadAt            *time.Time `json:"read_at"`
	Status            string     `json:"status"`
	// EditedAt is the time of the text's last edit; UnsentAt marks a
	// tombstone: its sender deleted it for everyone, its content is gone.
	EditedAt  *time.Time      `json:"edited_at"`
	UnsentAt  *time.Time      `json:"unsent_at"`
	Reactions []ReactionCount `json:"reactions"`
	// System is what a group's system message (content_type "system")
	// says changed.
	System *SystemView `json:"system,omitempty"`
	// Receipts counts, for a group's message, the members who may see it
	// (its sender aside) and how many of them it was delivered to and read
	// by; a direct message has delivered_at and read_at instead.
	Receipts *ReceiptCounts `json:"receipts,omitempty"`
}

// SystemView is a change of a group, as its system message tells it.
type SystemView = events.SystemMessage

// ReceiptCounts are a group message's receipts: delivered to k of n, read
// by k of n.
type ReceiptCounts struct {
	Recipients int64 `json:"recipients"`
	Delivered  int64 `json:"delivered"`
	Read       int64 `json:"read"`
}

// ReactionCount is how many participants reacted to a message with one
// emoji, and whether the viewer is one of them.
type ReactionCount struct {
	Emoji string `json:"emoji"`
	Count int64  `json:"count"`
	Mine  bool   `json:"mine"`
}

// LastMessageView is the preview in a conversation list.
type LastMessageView struct {
	ID          string    `json:"id"`
	Seq         int64     `json:"seq"`
	SenderID    int64     `json:"sender_id"`
	ContentType string    `json:"content_type"`
	TextContent *string   `json:"text_content"`
	CreatedAt   time.Time `json:"created_at"`
	// UnsentAt is set when the last message is a tombstone.
	UnsentAt *time.Time `json:"unsent_at"`
}

// ConversationView is a conversation as one participant sees it.
type ConversationView struct {
	ID             string           `json:"id"`
	Participant1ID int64            `json:"participant1_id"`
	Participant2ID int64            `json:"participant2_id"`
	OtherUserID    int64            `json:"other_user_id"`
	CreatedAt      time.Time        `json:"created_at"`
	UpdatedAt      time.Time        `json:"updated_at"`
	LastMessageAt  *time.Time       `json:"last_message_at"`
	LastSeq        int64            `json:"last_seq"`
	LastMessage    *LastMessageView `json:"last_message"`
	UnreadCount    int64            `json:"unread_count"`
	LastReadSeq    int64            `json:"last_read_seq"`
	Pinned         bool             `json:"pinned"`
	Muted          bool             `json:"muted"`
	Archived       bool             `json:"archived"`
	DeletedAt      *time.Time       `json:"deleted_at"`
	// Kind is "direct" or "group". A group has a title, the viewer's role,
	// its member count, and left_at once the viewer is no longer a member
	// (they keep what they saw until then).
	Kind        string     `json:"kind"`
	Title       *string    `json:"title,omitempty"`
	Role        string     `json:"role,omitempty"`
	MemberCount int64      `json:"member_count,omitempty"`
	LeftAt      *time.Time `json:"left_at,omitempty"`
}

func conversationView(r db.ParticipantConversation) ConversationView {
	p1, p2 := r.UserID, r.OtherUserID
	if p1 > p2 {
		p1, p2 = p2, p1
	}
	v := ConversationView{
		ID: r.ID.String(), Participant1ID: p1, Participant2ID: p2, OtherUserID: r.OtherUserID,
		// The latest message this participant sees: one hidden from them
		// (withheld, deleted for them) does not show its time.
		CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, LastMessageAt: r.LastMessageCreatedAt, LastSeq: r.LastSeq,
		UnreadCount: r.UnreadCount, LastReadSeq: r.LastReadSeq,
		Pinned: r.Pinned, Muted: r.Muted, Archived: r.Archived, DeletedAt: r.DeletedAt, Kind: r.Kind,
	}
	if r.Kind == "group" {
		// No other user: a group's participant fields are the viewer's.
		v.Participant1ID, v.Participant2ID = r.UserID, 0
		v.Title, v.Role, v.MemberCount, v.LeftAt = r.Title, r.Role, r.MemberCount, r.LeftAt
	}
	if r.LastMessageID != nil && r.LastMessageSeq != nil {
		v.LastMessage = &LastMessageView{
			ID: r.LastMessageID.String(), Seq: *r.LastMessageSeq, SenderID: deref(r.LastMessageSenderID),
			ContentType: deref(r.LastMessageContentType), TextContent: r.LastMessageText, CreatedAt: deref(r.LastMessageCreatedAt),
			UnsentAt: r.LastMessageUnsentAt,
		}
	}
	return v
}

func (s *Service) messageView(ctx context.Context, m db.Message) MessageView {
	v := MessageView{
		ID: m.ID.String(), ConversationID: m.ConversationID.String(), Seq: m.Seq,
		SenderID: m.SenderID, RecipientID: m.RecipientID, ContentType: m.ContentType,
		TextContent: m.TextContent, MediaKey: m.MediaKey, AudioDuration: m.AudioDuration,
		ClientMessageID: m.ClientMessageID, CreatedAt: m.CreatedAt, SentAt: &m.SentAt,
		DeliveredAt: m.DeliveredAt, ReadAt: m.ReadAt, Status: "sent",
		EditedAt: m.EditedAt, UnsentAt: m.UnsentAt, Reactions: []ReactionCount{},
	}
	if m.ReplyToID != nil {
		r := m.ReplyToID.String()
		v.ReplyToID = &r
	}
	if len(m.System) > 0 {
		var sv SystemView
		if err := json.Unmarshal(m.System, &sv); err == nil {
			v.System = &sv
		} else {
			s.logger.Warn("unreadable system message", "message_id", m.ID, "err", err)
		}
	}
	switch {
	case m.ReadAt != nil:
		v.Status = "read"
	case m.DeliveredAt != nil:
		v.Status = "delivered"
	}
	v.MediaURL = s.signedURL(ctx, m.MediaKey)
	v.MediaThumbnailURL = s.signedURL(ctx, m.MediaThumbnailKey)
	return v
}

// sentView describes a message that is on the bus but may not be stored yet.
func (s *Service) sentView(ctx context.Context, p events.MessageSentV1) MessageView {
	v := MessageView{
		ID: p.MessageID, ConversationID: p.ConversationID, SenderID: p.SenderID, RecipientID: positive(p.RecipientID),
		ContentType: p.ContentType, TextContent: optional(p.TextContent), MediaKey: optional(p.MediaKey),
		AudioDuration: p.AudioDuration, ReplyToID: optional(p.ReplyToID), ClientMessageID: optional(p.ClientMessageID),
		CreatedAt: p.CreatedAt, Status: "accepted", Reactions: []ReactionCount{},
	}
	v.MediaURL = s.signedURL(ctx, v.MediaKey)
	return v
}

func (s *Service) signedURL(ctx context.Context, key *string) *string {
	if key == nil || *key == "" || s.media == nil {
		return nil
	}
	u, _, err := s.media.PresignGet(ctx, *key)
	if err != nil {
		s.logger.Warn("could not sign media URL", "key", *key, "err", err)
		return nil
	}
	return &u
}

func positive(id int64) *int64 {
	if id <= 0 {
		return nil
	}
	return &id
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
