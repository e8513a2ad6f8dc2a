package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// Media is what the service needs of the media store: short-lived URLs for
// participants and the owner of an uploaded object.
type Media interface {
	PresignGet(ctx context.Context, key string) (string, time.Time, error)
	OwnerOf(key string) (int64, error)
	// Kind checks an uploaded object exists and returns its sniffed kind
	// (image, video or audio).
	Kind(ctx context.Context, key string) (string, error)
}

// Limits bound what one request may carry.
type Limits struct {
	MaxTextRunes   int     // longest text message, default 4000
	SendRate       float64 // sustained writes per second per user, default 20
	SendBurst      int     // burst of writes per user, default 40
	MaxReadBatch   int     // message ids per read receipt, default 500
	MaxClientIDLen int     // client_message_id length, default 128
}

func (l Limits) withDefaults() Limits {
	if l.MaxTextRunes <= 0 {
		l.MaxTextRunes = 4000
	}
	if l.SendRate == 0 {
		l.SendRate = 20
	}
	if l.SendBurst <= 0 {
		l.SendBurst = 40
	}
	if l.MaxReadBatch <= 0 {
		l.MaxReadBatch = 500
	}
	if l.MaxClientIDLen <= 0 {
		l.MaxClientIDLen = 128
	}
	return l
}

// Service implements the chat operations shared by REST and WebSocket.
type Service struct {
	pool    *pgxpool.Pool
	q       *db.Queries
	bus     events.Publisher
	media   Media
	limits  Limits
	limiter *rateLimiter
	now     func() time.Time
	logger  *slog.Logger
}

// NewService wires the service. media may be nil when no media store is
// configured; media messages are then refused.
func NewService(pool *pgxpool.Pool, bus events.Publisher, media Media, limits Limits, logger *slog.Logger) *Service {
	limits = limits.withDefaults()
	return &Service{
		pool: pool, q: db.New(pool), bus: bus, media: media, limits: limits,
		limiter: newRateLimiter(limits.SendRate, limits.SendBurst, time.Now),
		now:     time.Now, logger: logger,
	}
}

func newID() uuid.UUID { return uuid.Must(uuid.NewV7()) }

// now truncated to PostgreSQL's microsecond precision, so an id's timestamp
// reads back exactly as it was sent.
func (s *Service) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

// SendInput is a message as a client submits it (REST or WebSocket).
type SendInput struct {
	RecipientID     int64
	ConversationID  string
	ContentType     string
	TextContent     string
	MediaKey        string
	MediaURL        string
	AudioDuration   *int32
	ReplyToID       string
	ClientMessageID string
	// SourceConnectionID is set for messages sent over WebSocket.
	SourceConnectionID string
}

// Send validates a message, resolves its conversation and publishes
// MessageSent. It answers once the event is durable on the bus. The same
// client_message_id from the same sender always yields the same message.
func (s *Service) Send(ctx context.Context, userID int64, in SendInput) (MessageView, error) {
	if !s.limiter.allow(userID) {
		return MessageView{}, Errorf(CodeRateLimited, "too many messages; slow down")
	}
	if err := s.validateSend(ctx, userID, &in); err != nil {
		return MessageView{}, err
	}
	convID, recipientID, err := s.resolveConversation(ctx, userID, in.RecipientID, in.ConversationID)
	if err != nil {
		return MessageView{}, err
	}
	now := s.clock()
	msgID := newID()
	payload := events.MessageSentV1{
		MessageID: msgID.String(), ConversationID: convID.String(), SenderID: userID, RecipientID: recipientID,
		ContentType: in.ContentType, TextContent: in.TextContent, MediaKey: in.MediaKey,
		AudioDuration: in.AudioDuration, ReplyToID: in.ReplyToID, ClientMessageID: in.ClientMessageID, CreatedAt: now,
		SourceConnectionID: in.SourceConnectionID,
	}
	env, err := events.New(msgID.String(), now, userID, convID.String(), payload)
	if err != nil {
		return MessageView{}, internal(err)
	}
	if in.ClientMessageID != "" {
		env, payload, err = s.claimClientID(ctx, userID, in, convID, env, payload)
		if err != nil {
			return MessageView{}, err
		}
	}
	if err := s.bus.Publish(ctx, env); err != nil {
		return MessageView{}, unavailable("the event bus", err)
	}
	return s.sentView(ctx, payload), nil
}

// claimClientID records the client's id for this message, or, if the client
// already sent it, returns the original event so that the retry re-publishes
// the same message (handlers are idempotent) instead of a new one.
func (s *Service) claimClientID(ctx context.Context, userID int64, in SendInput, convID uuid.UUID, env events.Envelope, p events.MessageSentV1) (events.Envelope, events.MessageSentV1, error) {
	hash := requestHash(convID, in)
	raw, err := env.Encode()
	if err != nil {
		return env, p, internal(err)
	}
	_, err = s.q.InsertMessageRequest(ctx, db.InsertMessageRequestParams{
		SenderID: userID, ClientMessageID: in.ClientMessageID, MessageID: uuid.MustParse(p.MessageID),
		RequestHash: hash, Envelope: raw,
	})
	if err == nil {
		return env, p, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return env, p, unavailable("the database", err)
	}
	prev, err := s.q.GetMessageRequest(ctx, db.GetMessageRequestParams{SenderID: userID, ClientMessageID: in.ClientMessageID})
	if err != nil {
		return env, p, unavailable("the database", err)
	}
	if prev.RequestHash != hash {
		return env, p, Errorf(CodeConflict, "client_message_id %q was already used for a different message", in.ClientMessageID)
	}
	old, err := events.Decode(prev.Envelope)
	if err != nil {
		return env, p, internal(err)
	}
	var op events.MessageSentV1
	if err := old.Unmarshal(&op); err != nil {
		return env, p, internal(err)
	}
	return old, op, nil
}

func requestHash(convID uuid.UUID, in SendInput) string {
	b, _ := json.Marshal([]any{convID, in.ContentType, in.TextContent, in.MediaKey, in.AudioDuration, in.ReplyToID})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (s *Service) validateSend(ctx context.Context, userID int64, in *SendInput) error {
	var problems []string
	if in.RecipientID == 0 && in.ConversationID == "" {
		problems = append(problems, "recipient_id or conversation_id is required")
	}
	if in.RecipientID < 0 {
		problems = append(problems, "recipient_id must be positive")
	}
	if in.RecipientID == userID {
		problems = append(problems, "you cannot send a message to yourself")
	}
	if in.ConversationID != "" && !events.IsUUID(in.ConversationID) {
		return Errorf(CodeBadRequest, "conversation_id %q is not a UUID", in.ConversationID)
	}
	if in.ReplyToID != "" && !events.IsUUID(in.ReplyToID) {
		return Errorf(CodeBadRequest, "reply_to_id %q is not a UUID", in.ReplyToID)
	}
	if in.ContentType == "" {
		in.ContentType = events.ContentText
	}
	switch {
	case !events.ValidContentType(in.ContentType):
		problems = append(problems, fmt.Sprintf("content_type %q is not one of text, image, video, audio", in.ContentType))
	case in.ContentType == events.ContentText:
		if strings.TrimSpace(in.TextContent) == "" {
			problems = append(problems, "text_content must not be empty")
		}
		if in.MediaKey != "" || in.MediaURL != "" {
			problems = append(problems, "a text message cannot carry media")
		}
	default:
		if in.MediaKey == "" && in.MediaURL != "" {
			in.MediaKey = keyFromURL(in.MediaURL)
		}
		if in.MediaKey == "" {
			problems = append(problems, "a media message needs media_key (or the media_url returned by the upload)")
		} else if s.media == nil {
			problems = append(problems, "media messages are not enabled on this server")
		} else if owner, err := s.media.OwnerOf(in.MediaKey); err != nil {
			problems = append(problems, fmt.Sprintf("media_key: %v", err))
		} else if owner != userID {
			return Errorf(CodeForbidden, "you can only send media you uploaded")
		} else if kind, err := s.media.Kind(ctx, in.MediaKey); err != nil {
			return AsError(err)
		} else if kind != in.ContentType {
			problems = append(problems, fmt.Sprintf("media_key holds %s, but content_type is %s", kind, in.ContentType))
		}
	}
	if n := utf8.RuneCountInString(in.TextContent); n > s.limits.MaxTextRunes {
		problems = append(problems, fmt.Sprintf("text_content has %d characters; the limit is %d", n, s.limits.MaxTextRunes))
	}
	if !utf8.ValidString(in.TextContent) {
		problems = append(problems, "text_content is not valid UTF-8")
	}
	if in.AudioDuration != nil && (*in.AudioDuration < 0 || in.ContentType != events.ContentAudio) {
		problems = append(problems, "audio_duration must be a non-negative number of seconds on an audio message")
	}
	if len(in.ClientMessageID) > s.limits.MaxClientIDLen {
		problems = append(problems, fmt.Sprintf("client_message_id is longer than %d bytes", s.limits.MaxClientIDLen))
	}
	if len(problems) > 0 {
		return Errorf(CodeInvalid, "%s", strings.Join(problems, "; "))
	}
	return nil
}

// keyFromURL accepts the URL an upload returned: the object key is the path
// from its "chat/" segment on (path-style or virtual-hosted, signed or not).
func keyFromURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	if i := strings.Index(u.Path, "/chat/"); i >= 0 {
		return u.Path[i+1:]
	}
	return ""
}

// resolveConversation finds the conversation a message goes to and the
// other participant, checking the sender belongs to it.
func (s *Service) resolveConversation(ctx context.Context, userID, recipientID int64, conversationID string) (uuid.UUID, int64, error) {
	if conversationID == "" {
		id, _, err := db.GetOrCreateDirect(ctx, s.pool, newID(), userID, recipientID)
		if err != nil {
			return uuid.Nil, 0, unavailable("the database", err)
		}
		return id, recipientID, nil
	}
	id := uuid.MustParse(conversationID)
	if err := s.requireParticipant(ctx, id, userID); err != nil {
		return uuid.Nil, 0, err
	}
	others, err := s.q.ListParticipantIDs(ctx, id)
	if err != nil {
		return uuid.Nil, 0, unavailable("the database", err)
	}
	var other int64
	for _, o := range others {
		if o != userID {
			other = o
		}
	}
	if recipientID != 0 && recipientID != other {
		return uuid.Nil, 0, Errorf(CodeInvalid, "recipient_id %d is not the other participant of conversation %s", recipientID, id)
	}
	return id, other, nil
}

// requireParticipant answers 404 for a conversation that does not exist and
// 403 for one the user is not in.
func (s *Service) requireParticipant(ctx context.Context, convID uuid.UUID, userID int64) error {
	_, err := s.participant(ctx, convID, userID)
	return err
}

func (s *Service) participant(ctx context.Context, convID uuid.UUID, userID int64) (db.ConversationParticipant, error) {
	p, err := s.q.GetParticipant(ctx, db.GetParticipantParams{ConversationID: convID, UserID: userID})
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return p, unavailable("the database", err)
	}
	ids, err := s.q.ListParticipantIDs(ctx, convID)
	if err != nil {
		return p, unavailable("the database", err)
	}
	if len(ids) == 0 {
		return p, Errorf(CodeNotFound, "conversation %s not found", convID)
	}
	return p, Errorf(CodeForbidden, "you are not a participant of conversation %s", convID)
}

// CreateConversation gets or creates the direct conversation with recipient.
func (s *Service) CreateConversation(ctx context.Context, userID, recipientID int64) (ConversationView, error) {
	if recipientID <= 0 {
		return ConversationView{}, Errorf(CodeInvalid, "recipient_id must be a positive user id")
	}
	if recipientID == userID {
		return ConversationView{}, Errorf(CodeInvalid, "you cannot start a conversation with yourself")
	}
	id, _, err := db.GetOrCreateDirect(ctx, s.pool, newID(), userID, recipientID)
	if err != nil {
		return ConversationView{}, unavailable("the database", err)
	}
	return s.Conversation(ctx, userID, id)
}

// Conversation returns one conversation as userID sees it.
func (s *Service) Conversation(ctx context.Context, userID int64, id uuid.UUID) (ConversationView, error) {
	if err := s.requireParticipant(ctx, id, userID); err != nil {
		return ConversationView{}, err
	}
	row, err := s.q.GetConversationForUser(ctx, db.GetConversationForUserParams{UserID: userID, ID: id})
	if errors.Is(err, pgx.ErrNoRows) {
		return ConversationView{}, Errorf(CodeNotFound, "conversation %s not found", id)
	}
	if err != nil {
		return ConversationView{}, unavailable("the database", err)
	}
	return conversationView(row), nil
}

// ListParams selects a page of conversations.
type ListParams struct {
	Page, PageSize int
	Archived       *bool
}

// ListConversations returns a page of the user's conversations, pinned
// first, then by latest activity.
func (s *Service) ListConversations(ctx context.Context, userID int64, p ListParams) ([]ConversationView, int64, error) {
	rows, err := s.q.ListConversationsForUser(ctx, db.ListConversationsForUserParams{
		UserID: userID, Archived: p.Archived, PageLimit: int32(p.PageSize), PageOffset: int32((p.Page - 1) * p.PageSize),
	})
	if err != nil {
		return nil, 0, unavailable("the database", err)
	}
	total, err := s.q.CountConversationsForUser(ctx, db.CountConversationsForUserParams{UserID: userID, Archived: p.Archived})
	if err != nil {
		return nil, 0, unavailable("the database", err)
	}
	out := make([]ConversationView, len(rows))
	for i, r := range rows {
		out[i] = conversationView(r)
	}
	return out, total, nil
}

// MessageQuery selects messages: a page (newest first), or a cursor by
// sequence (after: oldest first, for catch-up; before: newest first).
type MessageQuery struct {
	Page, PageSize      int
	AfterSeq, BeforeSeq *int64
}

// Messages lists a conversation's messages as userID sees them.
func (s *Service) Messages(ctx context.Context, userID int64, convID uuid.UUID, mq MessageQuery) ([]MessageView, int64, error) {
	p, err := s.participant(ctx, convID, userID)
	if err != nil {
		return nil, 0, err
	}
	var rows []db.Message
	var total int64 = -1
	switch {
	case mq.AfterSeq != nil:
		rows, err = s.q.ListMessagesAfter(ctx, db.ListMessagesAfterParams{
			ConversationID: convID, AfterSeq: *mq.AfterSeq, HiddenBefore: p.DeletedAt, ViewerID: userID, PageLimit: int32(mq.PageSize)})
	case mq.BeforeSeq != nil:
		rows, err = s.q.ListMessagesBefore(ctx, db.ListMessagesBeforeParams{
			ConversationID: convID, BeforeSeq: *mq.BeforeSeq, HiddenBefore: p.DeletedAt, ViewerID: userID, PageLimit: int32(mq.PageSize)})
	default:
		rows, err = s.q.ListMessagesPage(ctx, db.ListMessagesPageParams{
			ConversationID: convID, HiddenBefore: p.DeletedAt, ViewerID: userID,
			PageLimit: int32(mq.PageSize), PageOffset: int32((mq.Page - 1) * mq.PageSize)})
		if err == nil {
			total, err = s.q.CountMessages(ctx, db.CountMessagesParams{ConversationID: convID, HiddenBefore: p.DeletedAt, ViewerID: userID})
		}
	}
	if err != nil {
		return nil, 0, unavailable("the database", err)
	}
	out := make([]MessageView, len(rows))
	for i, m := range rows {
		out[i] = s.messageView(ctx, m)
	}
	return out, total, nil
}

// ReadResult says which message ids a read receipt applied to.
type ReadResult struct {
	Read    []string `json:"read"`
	Ignored []string `json:"ignored"`
}

// MarkRead publishes MessageRead for the given messages addressed to the
// user. With conversationID, ids not stored yet (a message just received
// over WebSocket) are accepted too; the persister applies them once stored.
func (s *Service) MarkRead(ctx context.Context, userID int64, conversationID string, ids []string) (ReadResult, error) {
	if len(ids) == 0 {
		return ReadResult{}, Errorf(CodeInvalid, "message_ids must not be empty")
	}
	if len(ids) > s.limits.MaxReadBatch {
		return ReadResult{}, Errorf(CodeInvalid, "at most %d message_ids per request", s.limits.MaxReadBatch)
	}
	if !s.limiter.allow(userID) {
		return ReadResult{}, Errorf(CodeRateLimited, "too many requests; slow down")
	}
	uids := make([]uuid.UUID, 0, len(ids))
	seen := map[uuid.UUID]bool{}
	for _, id := range ids {
		if !events.IsUUID(id) {
			return ReadResult{}, Errorf(CodeBadRequest, "message id %q is not a UUID", id)
		}
		u := uuid.MustParse(id)
		if !seen[u] {
			seen[u] = true
			uids = append(uids, u)
		}
	}
	if conversationID != "" && !events.IsUUID(conversationID) {
		return ReadResult{}, Errorf(CodeBadRequest, "conversation_id %q is not a UUID", conversationID)
	}
	stored, err := s.q.ListMessagesByIDs(ctx, uids)
	if err != nil {
		return ReadResult{}, unavailable("the database", err)
	}
	byConv := map[uuid.UUID][]string{}
	res := ReadResult{Read: []string{}, Ignored: []string{}}
	found := map[uuid.UUID]bool{}
	for _, m := range stored {
		found[m.ID] = true
		if m.RecipientID != userID {
			res.Ignored = append(res.Ignored, m.ID.String())
			continue
		}
		byConv[m.ConversationID] = append(byConv[m.ConversationID], m.ID.String())
	}
	var pending []string
	for _, u := range uids {
		if !found[u] {
			pending = append(pending, u.String())
		}
	}
	if len(pending) > 0 {
		if conversationID == "" {
			res.Ignored = append(res.Ignored, pending...)
		} else {
			cid := uuid.MustParse(conversationID)
			if err := s.requireParticipant(ctx, cid, userID); err != nil {
				return ReadResult{}, err
			}
			byConv[cid] = append(byConv[cid], pending...)
		}
	}
	now := s.clock()
	envs := make([]events.Envelope, 0, len(byConv))
	for cid, mids := range byConv {
		members, err := s.q.ListParticipantIDs(ctx, cid)
		if err != nil {
			return ReadResult{}, unavailable("the database", err)
		}
		var notify []int64
		for _, m := range members {
			if m != userID {
				notify = append(notify, m)
			}
		}
		env, err := events.New(newID().String(), now, userID, cid.String(), events.MessageReadV1{
			ConversationID: cid.String(), ReaderID: userID, MessageIDs: mids, ReadAt: now, NotifyUserIDs: notify})
		if err != nil {
			return ReadResult{}, internal(err)
		}
		envs = append(envs, env)
		res.Read = append(res.Read, mids...)
	}
	if err := s.bus.Publish(ctx, envs...); err != nil {
		return ReadResult{}, unavailable("the event bus", err)
	}
	return res, nil
}

// Settings is a partial change of one participant's conversation settings.
type Settings struct {
	Pinned   *bool `json:"pinned,omitempty"`
	Muted    *bool `json:"muted,omitempty"`
	Archived *bool `json:"archived,omitempty"`
	Deleted  *bool `json:"deleted,omitempty"`
}

// UpdateSettings publishes the change; the persister applies it.
func (s *Service) UpdateSettings(ctx context.Context, userID int64, convID uuid.UUID, st Settings) error {
	if st.Pinned == nil && st.Muted == nil && st.Archived == nil && st.Deleted == nil {
		return Errorf(CodeInvalid, "nothing to change: give pinned, muted, archived or deleted")
	}
	if err := s.requireParticipant(ctx, convID, userID); err != nil {
		return err
	}
	now := s.clock()
	env, err := events.New(newID().String(), now, userID, convID.String(), events.ConversationSettingsChangedV1{
		ConversationID: convID.String(), UserID: userID, Pinned: st.Pinned, Muted: st.Muted,
		Archived: st.Archived, Deleted: st.Deleted, ChangedAt: now})
	if err != nil {
		return internal(err)
	}
	if err := s.bus.Publish(ctx, env); err != nil {
		return unavailable("the event bus", err)
	}
	return nil
}

// DeleteMessage hides a stored message for the user ("delete for me").
func (s *Service) DeleteMessage(ctx context.Context, userID int64, messageID uuid.UUID) error {
	m, err := s.q.GetMessage(ctx, messageID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Errorf(CodeNotFound, "message %s not found", messageID)
	}
	if err != nil {
		return unavailable("the database", err)
	}
	if m.SenderID != userID && m.RecipientID != userID {
		return Errorf(CodeForbidden, "message %s is not in one of your conversations", messageID)
	}
	now := s.clock()
	env, err := events.New(newID().String(), now, userID, m.ConversationID.String(), events.MessageDeletedV1{
		MessageID: messageID.String(), ConversationID: m.ConversationID.String(), UserID: userID, DeletedAt: now})
	if err != nil {
		return internal(err)
	}
	if err := s.bus.Publish(ctx, env); err != nil {
		return unavailable("the event bus", err)
	}
	return nil
}

// Typing publishes an ephemeral typing indicator.
func (s *Service) Typing(ctx context.Context, userID int64, conversationID string, recipientID int64, isTyping bool) error {
	if !events.IsUUID(conversationID) {
		return Errorf(CodeBadRequest, "conversationId %q is not a UUID", conversationID)
	}
	convID, other, err := s.resolveConversation(ctx, userID, recipientID, conversationID)
	if err != nil {
		return err
	}
	env, err := events.New(newID().String(), s.clock(), userID, convID.String(), events.TypingV1{
		ConversationID: convID.String(), UserID: userID, RecipientID: other, IsTyping: isTyping})
	if err != nil {
		return internal(err)
	}
	if err := s.bus.Publish(ctx, env); err != nil {
		return unavailable("the event bus", err)
	}
	return nil
}

// Ping checks the database, for health checks.
func (s *Service) Ping(ctx context.Context) error { return s.pool.Ping(ctx) }
