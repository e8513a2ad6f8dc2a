package fanout

import (
	"context"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/wsproto"
)

// The frames fanout pushes, built from the events they announce. The
// frames themselves are defined in wsproto.

func (f *Fanout) newMessageFrame(ctx context.Context, m events.MessageSentV1) wsproto.Frame {
	return wsproto.NewMessage(wsproto.NewMessageData{
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
		CreatedAt:       m.CreatedAt,
	})
}

// systemMessageFrame is a group change's system message, as newMessage.
func systemMessageFrame(e events.Envelope, m events.GroupChangedV1) wsproto.Frame {
	return wsproto.SystemMessage(e.ID, m.ConversationID, m.At, wsproto.SystemData(m.System()))
}

func messageDeliveredFrame(m events.MessageDeliveredV1) wsproto.Frame {
	return wsproto.MessageDelivered(wsproto.MessageDeliveredData{
		MessageID:      m.MessageID,
		ConversationID: m.ConversationID,
		DeliveredAt:    m.DeliveredAt,
	})
}

func messageReadFrame(m events.MessageReadV1) wsproto.Frame {
	return wsproto.MessageRead(wsproto.MessageReadData{
		ConversationID: m.ConversationID,
		ReaderID:       m.ReaderID,
		MessageIDs:     m.MessageIDs,
		ReadAt:         m.ReadAt,
	})
}

func typingFrame(m events.TypingV1) wsproto.Frame {
	return wsproto.TypingState(wsproto.TypingStateData{
		ConversationID: m.ConversationID,
		UserID:         m.UserID,
		IsTyping:       m.IsTyping,
	})
}

func (f *Fanout) messageUpdatedFrame(ctx context.Context, m events.ThumbnailReadyV1) wsproto.Frame {
	return wsproto.MessageUpdated(wsproto.MessageUpdatedData{
		MessageID:         m.MessageID,
		ConversationID:    m.ConversationID,
		MediaThumbnailURL: f.presign(ctx, m.ThumbnailKey),
		AudioDuration:     m.AudioDuration,
	})
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

func messageEditedFrame(m events.MessageEditedV1) wsproto.Frame {
	return wsproto.MessageUpdated(wsproto.MessageUpdatedData{
		MessageID:      m.MessageID,
		ConversationID: m.ConversationID,
		TextContent:    m.TextContent,
		EditedAt:       &m.EditedAt,
	})
}

func messageUnsentFrame(m events.MessageUnsentV1) wsproto.Frame {
	return wsproto.MessageUnsent(wsproto.MessageUnsentData{
		MessageID:      m.MessageID,
		ConversationID: m.ConversationID,
		UnsentAt:       m.UnsentAt,
	})
}

func reactionChangedFrame(m events.ReactionChangedV1) wsproto.Frame {
	var emoji *string
	if m.Emoji != "" {
		emoji = &m.Emoji
	}
	return wsproto.ReactionChanged(wsproto.ReactionChangedData{
		MessageID:      m.MessageID,
		ConversationID: m.ConversationID,
		UserID:         m.UserID,
		Emoji:          emoji,
		ChangedAt:      m.ChangedAt,
	})
}
