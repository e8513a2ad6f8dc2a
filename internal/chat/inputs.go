package chat

// Input types: one per command, as every transport decodes it. The JSON
// names are the canonical (REST, snake_case) ones; the WebSocket decoder
// translates its camelCase names to these before decoding, so a field is
// declared once for both transports.

// SendInput is a message as a client submits it.
type SendInput struct {
	RecipientID     int64  `json:"recipient_id"`
	ConversationID  string `json:"conversation_id"`
	ContentType     string `json:"content_type"`
	TextContent     string `json:"text_content"`
	MediaKey        string `json:"media_key"`
	MediaURL        string `json:"media_url"`
	AudioDuration   *int32 `json:"audio_duration"`
	ReplyToID       string `json:"reply_to_id"`
	ClientMessageID string `json:"client_message_id"`
	// SourceConnectionID is set by the WebSocket transport, never decoded:
	// fanout skips the connection that sent the message.
	SourceConnectionID string `json:"-"`
}

// ReadInput is a read receipt. With ConversationID, ids not stored yet (a
// message just received over WebSocket) are accepted too.
type ReadInput struct {
	MessageIDs     []string `json:"message_ids"`
	ConversationID string   `json:"conversation_id"`
}

// TypingInput is a typing indicator.
type TypingInput struct {
	ConversationID string `json:"conversation_id"`
	RecipientID    int64  `json:"recipient_id"`
	IsTyping       bool   `json:"is_typing"`
}

// ConversationInput asks for the direct conversation with a user.
type ConversationInput struct {
	RecipientID int64 `json:"recipient_id"`
}

// Settings is a partial change of one participant's conversation settings.
type Settings struct {
	Pinned   *bool `json:"pinned,omitempty"`
	Muted    *bool `json:"muted,omitempty"`
	Archived *bool `json:"archived,omitempty"`
	Deleted  *bool `json:"deleted,omitempty"`
}

// PresignInput asks for a presigned upload of one file.
type PresignInput struct {
	ContentType string `json:"content_type"`
	Size        int64  `json:"size"`
}

// EditInput is an edit of a text message: its new text. REST takes the
// message id from the path.
type EditInput struct {
	MessageID   string `json:"message_id"`
	TextContent string `json:"text_content"`
	// SourceConnectionID: as in SendInput (fanout skips it).
	SourceConnectionID string `json:"-"`
}

// MessageRef names one message: unsend, removing a reaction.
type MessageRef struct {
	MessageID          string `json:"message_id"`
	SourceConnectionID string `json:"-"`
}

// ReactionInput sets the user's one reaction to a message.
type ReactionInput struct {
	MessageID          string `json:"message_id"`
	Emoji              string `json:"emoji"`
	SourceConnectionID string `json:"-"`
}
