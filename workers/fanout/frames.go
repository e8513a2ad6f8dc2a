package fanout

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parleychat/parley/events"
)

// Frame types the mobile app reads. Never rename one: installed apps switch
// on them.
const (
	frameNewMessage       = "newMessage"
	frameMessageDelivered = "messageDelivered"
	frameMessageRead      = "messageRead"
	frameTyping           = "typing"
	frameMessageUpdated   = "messageUpdated"
	frameConnected        = "connected"
)

// connectedMessage is the greeting text of the seed contract.
const connectedMessage = "WebSocket connection established"

// frame is the envelope of every server-to-client WebSocket message.
type frame struct {
	Type    string `json:"type"`
	Data    any    `json:"data,omitempty"`
	Message string `json:"message,omitempty"`
}

type newMessageData struct {
	ID              string    `json:"id"`
	ConversationID  string    `json:"conversationId"`
	SenderID        int64     `json:"senderId"`
	RecipientID     int64     `json:"recipientId"`
	ContentType     string    `json:"contentType"`
	TextContent     string    `json:"textContent,omitempty"`
	MediaURL        string    `json:"mediaUrl,omitempty"`
	MediaKey        string    `json:"mediaKey,omitempty"`
	AudioDuration   *int32    `json:"audioDuration,omitempty"`
	ReplyToID       string    `json:"replyToId,omitempty"`
	ClientMessageID string    `json:"clientMessageId,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
}

type messageDeliveredData struct {
	MessageID      string    `json:"messageId"`
	ConversationID string    `json:"conversationId"`
	DeliveredAt    time.Time `json:"deliveredAt"`
}

type messageReadData struct {
	ConversationID string    `json:"conversationId"`
	ReaderID       int64     `json:"readerId"`
	MessageIDs     []string  `json:"messageIds"`
	ReadAt         time.Time `json:"readAt"`
}

type typingData struct {
	ConversationID string `json:"conversationId"`
	UserID         int64  `json:"userId"`
	IsTyping       bool   `json:"isTyping"`
}

type messageUpdatedData struct {
	MessageID         string `json:"messageId"`
	ConversationID    string `json:"conversationId"`
	MediaThumbnailURL string `json:"mediaThumbnailUrl,omitempty"`
	AudioDuration     *int32 `json:"audioDuration,omitempty"`
}

func encodeFrame(f frame) ([]byte, error) {
	b, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("fanout: encode %s frame: %w", f.Type, err)
	}
	return b, nil
}

func (f *Fanout) newMessageFrame(ctx context.Context, m events.MessageSentV1) frame {
	return frame{Type: frameNewMessage, Data: newMessageData{
		ID:              m.MessageID,
		ConversationID:  m.ConversationID,
		SenderID:        m.SenderID,
		RecipientID:     m.RecipientID,
		ContentType:     m.ContentType,
		TextContent:     m.TextContent,
		MediaURL:        f.presign(ctx, m.MediaKey),
		MediaKey:        m.MediaKey,
		AudioDuration:   m.AudioDuration,
		ReplyToID:       m.ReplyToID,
		ClientMessageID: m.ClientMessageID,
		CreatedAt:       m.CreatedAt.UTC(),
	}}
}

func messageDeliveredFrame(m events.MessageDeliveredV1) frame {
	return frame{Type: frameMessageDelivered, Data: messageDeliveredData{
		MessageID:      m.MessageID,
		ConversationID: m.ConversationID,
		DeliveredAt:    m.DeliveredAt.UTC(),
	}}
}

func messageReadFrame(m events.MessageReadV1) frame {
	return frame{Type: frameMessageRead, Data: messageReadData{
		ConversationID: m.ConversationID,
		ReaderID:       m.ReaderID,
		MessageIDs:     m.MessageIDs,
		ReadAt:         m.ReadAt.UTC(),
	}}
}

func typingFrame(m events.TypingV1) frame {
	return frame{Type: frameTyping, Data: typingData{
		ConversationID: m.ConversationID,
		UserID:         m.UserID,
		IsTyping:       m.IsTyping,
	}}
}

func (f *Fanout) messageUpdatedFrame(ctx context.Context, m events.ThumbnailReadyV1) frame {
	return frame{Type: frameMessageUpdated, Data: messageUpdatedData{
		MessageID:         m.MessageID,
		ConversationID:    m.ConversationID,
		MediaThumbnailURL: f.presign(ctx, m.ThumbnailKey),
		AudioDuration:     m.AudioDuration,
	}}
}

func connectedFrame() frame {
	return frame{Type: frameConnected, Message: connectedMessage}
}

// presign returns a download URL for key, or "" when there is no key, no
// media store, or presigning fails. A frame without the URL is still worth
// sending: the app fetches the message over REST, which signs it again.
func (f *Fanout) presign(ctx context.Context, key string) string {
	if key == "" || f.media == nil {
		return ""
	}
	u, _, err := f.media.PresignGet(ctx, key)
	if err != nil {
		f.logger.WarnContext(ctx, "fanout: presign media URL", "key", key, "err", err)
		return ""
	}
	return u
}
