package chat

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
)

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
	ids := make([]uuid.UUID, len(rows))
	at := make(map[uuid.UUID]int, len(rows))
	for i, m := range rows {
		out[i] = s.messageView(ctx, m)
		ids[i], at[m.ID] = m.ID, i
	}
	if len(ids) > 0 {
		counts, err := s.q.ReactionCounts(ctx, db.ReactionCountsParams{ViewerID: userID, Ids: ids})
		if err != nil {
			return nil, 0, unavailable("the database", err)
		}
		for _, c := range counts {
			v := &out[at[c.MessageID]]
			v.Reactions = append(v.Reactions, ReactionCount{Emoji: c.Emoji, Count: c.Count, Mine: c.Mine})
		}
	}
	return out, total, nil
}
