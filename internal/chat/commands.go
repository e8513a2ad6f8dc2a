package chat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/media"
)

// Send validates a message, resolves its conversation and publishes
// MessageSent. It answers once the event is durable on the bus. The same
// client_message_id from the same sender always yields the same message.
func (s *Service) Send(ctx context.Context, userID int64, in SendInput) (MessageView, error) {
	if err := s.admit(); err != nil {
		return MessageView{}, err
	}
	if err := s.allowWrite(userID, WriteSend, "messages"); err != nil {
		return MessageView{}, err
	}
	if err := s.validateSend(ctx, userID, &in); err != nil {
		return MessageView{}, err
	}
	convID, recipientID, err := s.resolveConversation(ctx, userID, in.RecipientID, in.ConversationID)
	if err != nil {
		return MessageView{}, err
	}
	if recipientID == 0 {
		return s.sendToGroup(ctx, userID, convID, in)
	}
	withheld, err := s.blocks(ctx, recipientID, userID)
	if err != nil {
		return MessageView{}, err
	}
	if err := s.checkReply(ctx, s.q, userID, convID, in.ReplyToID); err != nil {
		return MessageView{}, err
	}
	p := sentPayload(userID, convID, in, s.clock())
	p.RecipientID, p.WithheldFromRecipient = recipientID, withheld
	if p, err = s.publishSent(ctx, s.q, in, p); err != nil {
		return MessageView{}, err
	}
	return s.sentView(ctx, p), nil
}

// sendToGroup reads the group's members and the database's clock (the
// message's created_at) and publishes the message, all in one transaction
// holding a share of the group's row lock (groups.go). A membership change
// waits for that lock, so its event follows the message's on the bus and
// the persister gives it the later seq: the order of a group's seqs agrees
// with its messages' created_at and with who was a member at each.
// (Published after the lock, a join could come between the read and the
// publish and precede, in seq, a message created before it.)
func (s *Service) sendToGroup(ctx context.Context, userID int64, convID uuid.UUID, in SendInput) (MessageView, error) {
	var p events.MessageSentV1
	var published bool
	joined, err := s.txWithEvents(ctx, func(ctx context.Context, tx pgx.Tx) error {
		q := db.New(tx)
		members, at, err := groupMembersForSend(ctx, q, convID, userID)
		if err != nil {
			return err
		}
		// After the members' read, which refuses a sender who is not one.
		if err := s.checkReply(ctx, q, userID, convID, in.ReplyToID); err != nil {
			return err
		}
		// Blocks do not withhold within a group: a member who blocks
		// another sees the group's messages, as every member does.
		p = sentPayload(userID, convID, in, at)
		p.MemberIDs = members
		if p, err = s.publishSent(ctx, q, in, p); err != nil {
			return err
		}
		published = true
		return nil
	})
	if err != nil && !s.appliedAnyway("a group message", published && !joined, convID, err) {
		return MessageView{}, txError(err)
	}
	return s.sentView(ctx, p), nil
}

// sentPayload is the MessageSent of a send, created at at, with a new id.
func sentPayload(userID int64, convID uuid.UUID, in SendInput, at time.Time) events.MessageSentV1 {
	return events.MessageSentV1{
		MessageID: newID().String(), ConversationID: convID.String(), SenderID: userID,
		ContentType: in.ContentType, TextContent: in.TextContent, MediaKey: in.MediaKey,
		AudioDuration: in.AudioDuration, ReplyToID: in.ReplyToID, ClientMessageID: in.ClientMessageID, CreatedAt: at,
		SourceConnectionID: in.SourceConnectionID,
	}
}

// publishSent publishes p, or, for a client_message_id the sender already
// used, re-publishes the original message (claimClientID), which it
// returns. q reads and records the claims: the pool's, or the transaction
// a group's send holds.
func (s *Service) publishSent(ctx context.Context, q *db.Queries, in SendInput, p events.MessageSentV1) (events.MessageSentV1, error) {
	env, err := events.New(p.MessageID, p.CreatedAt, p.SenderID, p.ConversationID, p)
	if err != nil {
		return p, internal(err)
	}
	if in.ClientMessageID != "" {
		env, p, err = s.claimClientID(ctx, q, in, env, p)
		if err != nil {
			return p, err
		}
		if env.ID == "" { // published with its claim
			return p, nil
		}
	}
	if err := s.publish(ctx, env); err != nil {
		return p, err
	}
	return p, nil
}

// claimClientID records the client's id for this message, or, if the client
// already sent it, returns the original event so that the retry re-publishes
// the same message (handlers are idempotent) instead of a new one.
//
// On a bus that can claim while publishing (ClaimPublisher), a first
// attempt is published right here, in the statement that records the claim;
// it then returns a zero envelope: nothing is left to publish.
func (s *Service) claimClientID(ctx context.Context, q *db.Queries, in SendInput, env events.Envelope, p events.MessageSentV1) (events.Envelope, events.MessageSentV1, error) {
	userID, convID := p.SenderID, uuid.MustParse(p.ConversationID)
	hash := requestHash(convID, in)
	raw, err := env.Encode()
	if err != nil {
		return env, p, internal(err)
	}
	claim := db.InsertMessageRequestParams{
		SenderID: userID, ClientMessageID: in.ClientMessageID, MessageID: uuid.MustParse(p.MessageID),
		RequestHash: hash, Envelope: raw,
	}
	if s.claims != nil {
		claimed, err := s.claims.PublishClaimed(ctx, claim, env)
		if err != nil {
			return env, p, unavailable("the event bus", err)
		}
		if claimed {
			return events.Envelope{}, p, nil
		}
		// An earlier attempt claimed the id: answer as for a retry.
	} else {
		_, err = q.InsertMessageRequest(ctx, claim)
		if err == nil {
			return env, p, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return env, p, unavailable("the database", err)
		}
	}
	prev, err := q.GetMessageRequest(ctx, db.GetMessageRequestParams{SenderID: userID, ClientMessageID: in.ClientMessageID})
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
		if blank(in.TextContent) {
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
		} else if owner, err := media.OwnerOf(in.MediaKey); err != nil {
			problems = append(problems, fmt.Sprintf("media_key: %v", err))
		} else if owner != userID {
			return Errorf(CodeForbidden, "you can only send media you uploaded")
		} else if obj, err := s.verifyUpload(ctx, in.MediaKey); err != nil {
			return AsError(err)
		} else if string(obj.Kind) != in.ContentType {
			problems = append(problems, fmt.Sprintf("media_key holds %s, but content_type is %s", obj.Kind, in.ContentType))
		} else {
			in.MediaKey = obj.Key // a presigned upload's verified copy
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

// checkReply refuses a reply to a stored message of another conversation.
// An id not stored (yet) is accepted: the message replied to may have been
// pushed to the sender before the persister stored it. The persister drops
// a reply_to_id that turns out to be another conversation's.
func (s *Service) checkReply(ctx context.Context, q *db.Queries, userID int64, convID uuid.UUID, replyToID string) error {
	if replyToID == "" {
		return nil
	}
	m, err := q.GetMessage(ctx, uuid.MustParse(replyToID))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return unavailable("the database", err)
	}
	if m.ConversationID != convID {
		return Errorf(CodeInvalid, "reply_to_id %s is a message of another conversation; a reply must be in the same conversation", replyToID)
	}
	// A group member replies only to what they see: not to a message from
	// before they joined, whose text the reply would show to them.
	if ok, err := s.canSee(ctx, q, userID, m); err != nil {
		return err
	} else if !ok {
		return Errorf(CodeInvalid, "reply_to_id %s is a message from before you joined this group", replyToID)
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
// other participant (0 in a group), checking the sender belongs to it.
func (s *Service) resolveConversation(ctx context.Context, userID, recipientID int64, conversationID string) (uuid.UUID, int64, error) {
	if conversationID == "" {
		id, err := s.directConversation(ctx, userID, recipientID)
		if err != nil {
			return uuid.Nil, 0, err
		}
		return id, recipientID, nil
	}
	id := uuid.MustParse(conversationID)
	if _, ok := s.groups.get(id); ok {
		// A group's send reads its members under the group's lock
		// (sendToGroup), which refuses a sender who is not one.
		if recipientID != 0 {
			return uuid.Nil, 0, groupRecipient(id)
		}
		return id, 0, nil
	}
	members, group, err := s.requireMemberOf(ctx, id, userID)
	if err != nil {
		return uuid.Nil, 0, err
	}
	if group {
		if recipientID != 0 {
			return uuid.Nil, 0, groupRecipient(id)
		}
		return id, 0, nil
	}
	var other int64
	for _, o := range members {
		if o != userID {
			other = o
		}
	}
	if recipientID != 0 && recipientID != other {
		return uuid.Nil, 0, Errorf(CodeInvalid, "recipient_id %d is not the other participant of conversation %s", recipientID, id)
	}
	return id, other, nil
}

// groupRecipient refuses a recipient_id given with a group's id.
func groupRecipient(id uuid.UUID) error {
	return Errorf(CodeInvalid, "conversation %s is a group: it has no recipient_id", id)
}

// directConversation gets or creates the direct conversation of a and b;
// creating one takes one of a's WriteConversation tokens.
// The answer is cached: a pair's direct conversation is created once and
// never changes, and the key holds both users, so it can only ever answer a
// conversation the caller is in.
func (s *Service) directConversation(ctx context.Context, a, b int64) (uuid.UUID, error) {
	key := [2]int64{min(a, b), max(a, b)}
	if id, ok := s.direct.get(key); ok {
		return id, nil
	}
	// Only a conversation that would be created costs a token: look first.
	dk := db.DirectKey(a, b)
	id, err := s.q.GetConversationByDirectKey(ctx, &dk)
	switch {
	case err == nil:
		s.direct.put(key, id)
		s.members.put(id, key[:])
		return id, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return uuid.Nil, unavailable("the database", err)
	}
	if err := s.allowWrite(a, WriteConversation, "new conversations"); err != nil {
		return uuid.Nil, err
	}
	// Read fresh, not cached: a block must stop the very next attempt.
	if blocked, err := s.blockedAmong(ctx, a, b); err != nil {
		return uuid.Nil, err
	} else if len(blocked) > 0 {
		return uuid.Nil, Errorf(CodeForbidden, "you cannot start a conversation with user %d", b)
	}
	// The creation and its event commit together: the local bus writes
	// the event in this transaction (db.Scope), so a conversation never
	// exists without it and a creator that lost the race (its insert did
	// nothing) publishes nothing. A bus that cannot join the transaction
	// (EventBridge) publishes before the commit; should the commit then
	// fail, the persister creates the conversation from the event.
	at := time.Now().UTC().Truncate(time.Microsecond)
	_, err = s.txWithEvents(ctx, func(ctx context.Context, tx pgx.Tx) error {
		got, created, err := db.GetOrCreateDirectAt(ctx, tx, newID(), a, b, at)
		if err != nil {
			return unavailable("the database", err)
		}
		id = got
		if !created {
			return nil
		}
		return s.publishCreated(ctx, id, a, b, at)
	})
	if err != nil {
		return uuid.Nil, txError(err)
	}
	s.direct.put(key, id)
	s.members.put(id, key[:])
	return id, nil
}

// publishCreated publishes a direct conversation's creation, from the
// transaction that creates it (directConversation).
func (s *Service) publishCreated(ctx context.Context, id uuid.UUID, creator, other int64, at time.Time) error {
	ev := events.ConversationCreatedV1{ConversationID: id.String(), CreatorID: creator,
		ParticipantIDs: []int64{min(creator, other), max(creator, other)}, CreatedAt: at.UTC()}
	env, err := events.New(newID().String(), ev.CreatedAt, creator, ev.ConversationID, ev)
	if err != nil {
		return internal(err)
	}
	return s.publish(ctx, env)
}

// requireMember returns the participants of a conversation userID is in,
// or refuses: not found when the conversation does not exist, forbidden
// when userID is not one of its participants.
//
// The participants of direct conversations are cached: a direct
// conversation's two participants never change and conversations are never
// deleted (only hidden per participant). The check against the cached list
// is the same as against the database's, so a cached conversation still
// refuses everyone else. Groups (whose members could change) and unknown
// ids are never cached.
func (s *Service) requireMember(ctx context.Context, convID uuid.UUID, userID int64) ([]int64, error) {
	members, _, err := s.requireMemberOf(ctx, convID, userID)
	return members, err
}

// requireMemberOf is requireMember, answering too whether the conversation
// is a group (whose current members it answers).
func (s *Service) requireMemberOf(ctx context.Context, convID uuid.UUID, userID int64) (members []int64, group bool, err error) {
	members, ok := s.members.get(convID)
	if !ok {
		rows, err := s.q.ListMembers(ctx, convID)
		if err != nil {
			return nil, false, unavailable("the database", err)
		}
		if len(rows) == 0 {
			// Not found, or a group the user is no longer in (and nobody
			// is): GetViewer tells them apart.
			if _, err := s.viewer(ctx, convID, userID); err != nil {
				return nil, false, err
			}
			return nil, false, Errorf(CodeForbidden, "you are no longer a member of group %s", convID)
		}
		for _, r := range rows {
			members = append(members, r.UserID)
			group = group || r.Kind == "group"
		}
		if group {
			s.groups.put(convID, struct{}{})
		} else {
			s.members.put(convID, members)
		}
	}
	if !slices.Contains(members, userID) {
		return nil, false, Errorf(CodeForbidden, "you are not a participant of conversation %s", convID)
	}
	return members, group, nil
}

// CreateConversation gets or creates the direct conversation with recipient.
func (s *Service) CreateConversation(ctx context.Context, userID int64, in ConversationInput) (ConversationView, error) {
	recipientID := in.RecipientID
	if recipientID <= 0 {
		return ConversationView{}, Errorf(CodeInvalid, "recipient_id must be a positive user id")
	}
	if recipientID == userID {
		return ConversationView{}, Errorf(CodeInvalid, "you cannot start a conversation with yourself")
	}
	id, err := s.directConversation(ctx, userID, recipientID)
	if err != nil {
		return ConversationView{}, err
	}
	return s.Conversation(ctx, userID, id)
}

// ReadResult says which message ids a read receipt applied to.
type ReadResult struct {
	Read    []string `json:"read"`
	Ignored []string `json:"ignored"`
}

// MarkRead publishes MessageRead for the given messages addressed to the
// user. With a conversation id, ids not stored yet (a message just received
// over WebSocket) are accepted too; the persister applies them once stored.
func (s *Service) MarkRead(ctx context.Context, userID int64, in ReadInput) (ReadResult, error) {
	conversationID, ids := in.ConversationID, in.MessageIDs
	if len(ids) == 0 {
		return ReadResult{}, Errorf(CodeInvalid, "message_ids must not be empty")
	}
	if len(ids) > s.limits.MaxReadBatch {
		return ReadResult{}, Errorf(CodeInvalid, "at most %d message_ids per request", s.limits.MaxReadBatch)
	}
	if err := s.allowWrite(userID, WriteRead, "read receipts"); err != nil {
		return ReadResult{}, err
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
		// A group's message (no recipient) is read by any member but its
		// sender: the persister advances their read position.
		if m.RecipientID == nil && m.SenderID != userID {
			byConv[m.ConversationID] = append(byConv[m.ConversationID], m.ID.String())
			continue
		}
		if m.RecipientID == nil || *m.RecipientID != userID {
			res.Ignored = append(res.Ignored, m.ID.String())
			continue
		}
		byConv[m.ConversationID] = append(byConv[m.ConversationID], m.ID.String())
	}
	var unknown []uuid.UUID
	for _, u := range uids {
		if !found[u] {
			unknown = append(unknown, u)
		}
	}
	if len(unknown) > 0 {
		if conversationID == "" {
			for _, u := range unknown {
				res.Ignored = append(res.Ignored, u.String())
			}
		} else {
			cid := uuid.MustParse(conversationID)
			if _, err := s.requireMember(ctx, cid, userID); err != nil {
				return ReadResult{}, err
			}
			for _, u := range unknown {
				if u.Version() != 7 {
					// Message ids are UUIDv7, fixed at ingress: this one
					// never was one, and the persister need not wait for it.
					res.Ignored = append(res.Ignored, u.String())
					continue
				}
				byConv[cid] = append(byConv[cid], u.String())
			}
		}
	}
	now := s.clock()
	envs := make([]events.Envelope, 0, len(byConv))
	for cid, mids := range byConv {
		// The reader is a participant of every conversation here: one of
		// its stored messages is addressed to them, or requireMember said so.
		members, group, err := s.requireMemberOf(ctx, cid, userID)
		if err != nil {
			return ReadResult{}, err
		}
		// In a group, a read is told to the reader's own devices alone:
		// its members see counts (read by k of n), not every receipt.
		var notify []int64
		for _, m := range members {
			if m != userID && !group {
				notify = append(notify, m)
			}
		}
		env, err := events.New(newID().String(), now, userID, cid.String(), events.MessageReadV1{
			ConversationID: cid.String(), ReaderID: userID, MessageIDs: mids, ReadAt: now, NotifyUserIDs: notify, Group: group})
		if err != nil {
			return ReadResult{}, internal(err)
		}
		envs = append(envs, env)
		res.Read = append(res.Read, mids...)
	}
	if err := s.publish(ctx, envs...); err != nil {
		return ReadResult{}, err
	}
	return res, nil
}

// UpdateSettings publishes the change; the persister applies it.
func (s *Service) UpdateSettings(ctx context.Context, userID int64, convID uuid.UUID, st Settings) error {
	if st.Pinned == nil && st.Muted == nil && st.Archived == nil && st.Deleted == nil {
		return Errorf(CodeInvalid, "nothing to change: give pinned, muted, archived or deleted")
	}
	if err := s.allowWrite(userID, WriteSettings, "settings changes"); err != nil {
		return err
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
	return s.publish(ctx, env)
}

// DeleteMessage hides a stored message for the user ("delete for me").
func (s *Service) DeleteMessage(ctx context.Context, userID int64, messageID uuid.UUID) error {
	if err := s.allowWrite(userID, WriteSettings, "deletions"); err != nil {
		return err
	}
	m, err := s.q.GetMessage(ctx, messageID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Errorf(CodeNotFound, "message %s not found", messageID)
	}
	if err != nil {
		return unavailable("the database", err)
	}
	if ok, err := s.canSee(ctx, s.q, userID, m); err != nil {
		return err
	} else if !ok {
		return Errorf(CodeForbidden, "message %s is not in one of your conversations", messageID)
	}
	now := s.clock()
	env, err := events.New(newID().String(), now, userID, m.ConversationID.String(), events.MessageDeletedV1{
		MessageID: messageID.String(), ConversationID: m.ConversationID.String(), UserID: userID, DeletedAt: now})
	if err != nil {
		return internal(err)
	}
	return s.publish(ctx, env)
}

// Typing publishes an ephemeral typing indicator (see events.Ephemeral).
// Over the user's typing rate it does nothing and reports no error: an
// indicator is a hint, the next keystroke sends another, and a client
// needs no retry for it.
func (s *Service) Typing(ctx context.Context, userID int64, in TypingInput) error {
	if s.admit() != nil {
		// Dropped like an indicator over its rate: refusing it would only
		// add a frame per keystroke while the server is overloaded.
		return nil
	}
	if in.ConversationID == "" {
		return Errorf(CodeBadRequest, "conversation_id is required")
	}
	if !events.IsUUID(in.ConversationID) {
		return Errorf(CodeBadRequest, "conversation_id %q is not a UUID", in.ConversationID)
	}
	if ok, _ := s.limiter.take(WriteTyping, userID); !ok {
		return nil
	}
	// Members first (cached for a direct conversation), so that a group's
	// are read once.
	members, group, err := s.requireMemberOf(ctx, uuid.MustParse(in.ConversationID), userID)
	if err != nil {
		return err
	}
	if group {
		convID := uuid.MustParse(in.ConversationID)
		if in.RecipientID != 0 {
			return groupRecipient(convID)
		}
		if len(members) < 2 {
			return nil // nobody else to tell
		}
		env, err := events.New(newID().String(), s.clock(), userID, convID.String(), events.TypingV1{
			ConversationID: convID.String(), UserID: userID, IsTyping: in.IsTyping,
			MemberIDs: slices.DeleteFunc(slices.Clone(members), func(u int64) bool { return u == userID })})
		if err != nil {
			return internal(err)
		}
		return s.publish(ctx, env)
	}
	convID, other, err := s.resolveConversation(ctx, userID, in.RecipientID, in.ConversationID)
	if err != nil {
		return err
	}
	if blocked, err := s.blocks(ctx, other, userID); err != nil || blocked {
		// Dropped without a word, like a withheld message: the sender is
		// not told about the block.
		return err
	}
	env, err := events.New(newID().String(), s.clock(), userID, convID.String(), events.TypingV1{
		ConversationID: convID.String(), UserID: userID, RecipientID: other, IsTyping: in.IsTyping})
	if err != nil {
		return internal(err)
	}
	return s.publish(ctx, env)
}

// blank reports whether text shows nothing: only whitespace and invisible
// characters (zero-width spaces and joiners, the byte order mark, and the
// filler characters apps use to fake an empty message).
func blank(text string) bool {
	for _, r := range text {
		switch {
		case unicode.IsSpace(r), unicode.Is(unicode.Cf, r): // Cf: U+200B..U+200F, U+2060, U+FEFF, ...
		case r == '\u115F', r == '\u1160', r == '\u3164', r == '\uFFA0', r == '\u2800': // Hangul fillers, blank Braille
		default:
			return false
		}
	}
	return true
}
