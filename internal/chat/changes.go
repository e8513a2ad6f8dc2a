package chat

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// Changes of a sent message: its sender edits or unsends it, a participant
// sets or removes their reaction. Each is checked here against the stored
// message (cheaply: one read) and published; the persister checks it again
// against the state it writes, which is authoritative.

// ChangeResult answers an accepted change: At is its time, fixed here.
type ChangeResult struct {
	MessageID      string    `json:"message_id"`
	ConversationID string    `json:"conversation_id"`
	At             time.Time `json:"at"`
}

// EditMessage publishes MessageEdited: the sender's new text for a text
// message, within the edit window.
func (s *Service) EditMessage(ctx context.Context, userID int64, in EditInput) (ChangeResult, error) {
	if err := s.allowWrite(userID, WriteSend, "edits"); err != nil {
		return ChangeResult{}, err
	}
	if blank(in.TextContent) {
		return ChangeResult{}, Errorf(CodeInvalid, "text_content must not be empty")
	}
	if n := utf8.RuneCountInString(in.TextContent); n > s.limits.MaxTextRunes {
		return ChangeResult{}, Errorf(CodeInvalid, "text_content has %d characters; the limit is %d", n, s.limits.MaxTextRunes)
	}
	m, err := s.changeTarget(ctx, userID, in.MessageID)
	if err != nil {
		return ChangeResult{}, err
	}
	now := s.clock()
	if err := s.senderWithin(m.Message, userID, now, s.limits.EditWindow, "edit"); err != nil {
		return ChangeResult{}, err
	}
	if m.ContentType != events.ContentText {
		return ChangeResult{}, Errorf(CodeInvalid, "message %s is a %s message; only text messages can be edited", m.ID, m.ContentType)
	}
	if m.blockedBetween {
		// An edit would change what a blocker is shown; the same reason
		// whichever side blocks, as for a new conversation.
		return ChangeResult{}, Errorf(CodeForbidden, "message %s cannot be edited: you and a participant of its conversation block one another", m.ID)
	}
	return s.publishChange(ctx, userID, m.Message, now, events.MessageEditedV1{
		MessageID: m.ID.String(), ConversationID: m.ConversationID.String(), SenderID: userID,
		TextContent: in.TextContent, EditedAt: now, Deadline: events.ChangeDeadline(m.CreatedAt, s.limits.EditWindow), ParticipantIDs: m.notify, SourceConnectionID: in.SourceConnectionID,
	})
}

// UnsendMessage publishes MessageUnsent: the sender deletes a message for
// everyone, within the unsend window. Unsending it again once the tombstone
// is stored answers the first unsend, so that a client's retry succeeds; a
// retry before that publishes a second unsend, which the persister finds
// applied already.
func (s *Service) UnsendMessage(ctx context.Context, userID int64, in MessageRef) (ChangeResult, error) {
	if err := s.allowWrite(userID, WriteSettings, "unsends"); err != nil {
		return ChangeResult{}, err
	}
	m, err := s.changeTarget(ctx, userID, in.MessageID)
	if err != nil && !(m.UnsentAt != nil && m.SenderID == userID) {
		return ChangeResult{}, err
	}
	if m.UnsentAt != nil {
		return ChangeResult{MessageID: m.ID.String(), ConversationID: m.ConversationID.String(), At: *m.UnsentAt}, nil
	}
	now := s.clock()
	if err := s.senderWithin(m.Message, userID, now, s.limits.UnsendWindow, "unsend"); err != nil {
		return ChangeResult{}, err
	}
	return s.publishChange(ctx, userID, m.Message, now, events.MessageUnsentV1{
		MessageID: m.ID.String(), ConversationID: m.ConversationID.String(), SenderID: userID,
		ContentType: m.ContentType, MediaKey: deref(m.MediaKey), UnsentAt: now, Deadline: events.ChangeDeadline(m.CreatedAt, s.limits.UnsendWindow),
		ParticipantIDs: m.notify, SourceConnectionID: in.SourceConnectionID,
	})
}

// SetReaction publishes ReactionChanged: the user's one reaction to a
// message of their conversation becomes emoji.
func (s *Service) SetReaction(ctx context.Context, userID int64, in ReactionInput) (ChangeResult, error) {
	if err := s.allowWrite(userID, WriteSettings, "reactions"); err != nil {
		return ChangeResult{}, err
	}
	if err := checkEmoji(in.Emoji); err != nil {
		return ChangeResult{}, err
	}
	return s.react(ctx, userID, in.MessageID, in.Emoji, in.SourceConnectionID)
}

// RemoveReaction publishes ReactionChanged without an emoji.
func (s *Service) RemoveReaction(ctx context.Context, userID int64, in MessageRef) (ChangeResult, error) {
	if err := s.allowWrite(userID, WriteSettings, "reactions"); err != nil {
		return ChangeResult{}, err
	}
	return s.react(ctx, userID, in.MessageID, "", in.SourceConnectionID)
}

func (s *Service) react(ctx context.Context, userID int64, messageID, emoji, source string) (ChangeResult, error) {
	m, err := s.changeTarget(ctx, userID, messageID)
	if err != nil {
		return ChangeResult{}, err
	}
	now := s.clock()
	return s.publishChange(ctx, userID, m.Message, now, events.ReactionChangedV1{
		MessageID: m.ID.String(), ConversationID: m.ConversationID.String(), UserID: userID,
		Emoji: emoji, ChangedAt: now, ParticipantIDs: m.notify, SourceConnectionID: source,
	})
}

// changeTarget reads the message a change is for, refusing one that does
// not exist, is not in the user's conversation, is hidden from the user or
// is unsent (a tombstone takes no change; the message is returned all the
// same). It returns who learns of a change: the participants the message
// is not hidden from.
func (s *Service) changeTarget(ctx context.Context, userID int64, messageID string) (target, error) {
	if messageID == "" {
		return target{}, Errorf(CodeBadRequest, "message_id is required")
	}
	if !events.IsUUID(messageID) {
		return target{}, Errorf(CodeBadRequest, "message_id %q is not a UUID", messageID)
	}
	id := uuid.MustParse(messageID)
	m, err := s.q.GetMessage(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return target{}, Errorf(CodeNotFound, "message %s not found", id)
	}
	if err != nil {
		return target{}, unavailable("the database", err)
	}
	members, group, err := s.requireMemberOf(ctx, m.ConversationID, userID)
	if err != nil {
		return target{}, Errorf(CodeForbidden, "message %s is not in one of your conversations", id)
	}
	if group {
		return s.groupChangeTarget(ctx, userID, m)
	}
	hiders, err := s.q.ListMessageHiders(ctx, id)
	if err != nil {
		return target{}, unavailable("the database", err)
	}
	if slices.Contains(hiders, userID) {
		return target{}, Errorf(CodeNotFound, "message %s not found", id)
	}
	// Nor is a participant who blocks the user, as they are not sent the
	// user's messages.
	t := target{Message: m}
	for _, u := range members {
		if slices.Contains(hiders, u) {
			continue
		}
		if u != userID {
			blocker, err := s.blocks(ctx, u, userID)
			if err != nil {
				return target{}, err
			}
			blocked, err := s.blocks(ctx, userID, u)
			if err != nil {
				return target{}, err
			}
			t.blockedBetween = t.blockedBetween || blocker || blocked
			if blocker {
				continue
			}
		}
		t.notify = append(t.notify, u)
	}
	if m.UnsentAt != nil {
		return t, Errorf(CodeInvalid, "message %s was unsent", id)
	}
	return t, nil
}

// groupChangeTarget is changeTarget in a group: the user must see the
// message, and the members who see it (current members who joined before
// it) learn of the change. Blocks do not apply within a group.
func (s *Service) groupChangeTarget(ctx context.Context, userID int64, m db.Message) (target, error) {
	if m.ContentType == events.ContentSystem {
		return target{}, Errorf(CodeInvalid, "message %s is a system message; it cannot be changed or reacted to", m.ID)
	}
	hiders, err := s.q.ListMessageHiders(ctx, m.ID)
	if err != nil {
		return target{}, unavailable("the database", err)
	}
	if slices.Contains(hiders, userID) {
		return target{}, Errorf(CodeNotFound, "message %s not found", m.ID)
	}
	rows, err := s.q.ListGroupParticipants(ctx, m.ConversationID)
	if err != nil {
		return target{}, unavailable("the database", err)
	}
	// The user is a current member (changeTarget checked): they see the
	// message if they joined before it, as do the members told of it.
	t, seen := target{Message: m}, false
	for _, r := range rows {
		if r.LeftAt != nil || m.CreatedAt.Before(r.JoinedAt) {
			continue
		}
		seen = seen || r.UserID == userID
		if !slices.Contains(hiders, r.UserID) {
			t.notify = append(t.notify, r.UserID)
		}
	}
	if !seen {
		return target{}, Errorf(CodeNotFound, "message %s not found", m.ID)
	}
	if m.UnsentAt != nil {
		return t, Errorf(CodeInvalid, "message %s was unsent", m.ID)
	}
	return t, nil
}

// target is a message a change is for, as changeTarget found it.
type target struct {
	db.Message
	// notify: who learns of the change.
	notify []int64
	// blockedBetween: the user and a participant the message is shown to
	// block one another (either way, so the reason does not say who).
	blockedBetween bool
}

// senderWithin refuses a change by anyone but the sender, or after window.
func (s *Service) senderWithin(m db.Message, userID int64, now time.Time, window time.Duration, what string) error {
	if m.SenderID != userID {
		return Errorf(CodeForbidden, "only the sender of message %s can %s it", m.ID, what)
	}
	if !events.Within(m.CreatedAt, now, window) {
		return Errorf(CodeForbidden, "message %s was sent more than %s ago; it can no longer be %s", m.ID, window, pastTense(what))
	}
	return nil
}

func pastTense(what string) string {
	if what == "unsend" {
		return "unsent"
	}
	return what + "ed"
}

func (s *Service) publishChange(ctx context.Context, userID int64, m db.Message, at time.Time, p events.Payload) (ChangeResult, error) {
	env, err := events.New(newID().String(), at, userID, m.ConversationID.String(), p)
	if err != nil {
		return ChangeResult{}, internal(fmt.Errorf("%s: %w", p.EventType(), err))
	}
	if err := s.publish(ctx, env); err != nil {
		return ChangeResult{}, err
	}
	return ChangeResult{MessageID: m.ID.String(), ConversationID: m.ConversationID.String(), At: at}, nil
}
