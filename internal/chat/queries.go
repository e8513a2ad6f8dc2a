package chat

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// requireParticipant answers 404 for a conversation that does not exist and
// 403 for one the user is not in.
func (s *Service) requireParticipant(ctx context.Context, convID uuid.UUID, userID int64) error {
	_, err := s.participant(ctx, convID, userID)
	return err
}

func (s *Service) participant(ctx context.Context, convID uuid.UUID, userID int64) (db.ConversationParticipant, error) {
	v, err := s.viewer(ctx, convID, userID)
	return v.ConversationParticipant, err
}

// viewer is a participant (a group's former members included) with their
// conversation's kind: what decides which messages they see (window).
func (s *Service) viewer(ctx context.Context, convID uuid.UUID, userID int64) (db.GetViewerRow, error) {
	p, err := s.q.GetViewer(ctx, db.GetViewerParams{ConversationID: convID, UserID: userID})
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
	v := conversationView(row)
	if err := s.asLeft(ctx, &v); err != nil {
		return ConversationView{}, err
	}
	return v, nil
}

// asLeft shows a former member the group as it was when they left: its
// title then, and no member count (both may have changed since).
func (s *Service) asLeft(ctx context.Context, v *ConversationView) error {
	if v.Kind != "group" || v.LeftAt == nil {
		return nil
	}
	title, err := s.q.GroupTitleAt(ctx, db.GroupTitleAtParams{ConversationID: uuid.MustParse(v.ID), At: *v.LeftAt})
	if err != nil {
		return unavailable("the database", err)
	}
	if title != "" {
		v.Title = &title
	}
	v.MemberCount = 0
	return nil
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
		if err := s.asLeft(ctx, &out[i]); err != nil {
			return nil, 0, err
		}
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
	v, err := s.viewer(ctx, convID, userID)
	if err != nil {
		return nil, 0, err
	}
	p := v.ConversationParticipant
	from, until := window(v)
	var rows []db.Message
	var total int64 = -1
	switch {
	case mq.AfterSeq != nil:
		rows, err = s.q.ListMessagesAfter(ctx, db.ListMessagesAfterParams{
			ConversationID: convID, AfterSeq: *mq.AfterSeq, HiddenBefore: p.DeletedAt, VisibleFrom: from, VisibleUntil: until, ViewerID: userID, PageLimit: int32(mq.PageSize)})
	case mq.BeforeSeq != nil:
		rows, err = s.q.ListMessagesBefore(ctx, db.ListMessagesBeforeParams{
			ConversationID: convID, BeforeSeq: *mq.BeforeSeq, HiddenBefore: p.DeletedAt, VisibleFrom: from, VisibleUntil: until, ViewerID: userID, PageLimit: int32(mq.PageSize)})
	default:
		rows, err = s.q.ListMessagesPage(ctx, db.ListMessagesPageParams{
			ConversationID: convID, HiddenBefore: p.DeletedAt, VisibleFrom: from, VisibleUntil: until, ViewerID: userID,
			PageLimit: int32(mq.PageSize), PageOffset: int32((mq.Page - 1) * mq.PageSize)})
		if err == nil {
			total, err = s.q.CountMessages(ctx, db.CountMessagesParams{ConversationID: convID, HiddenBefore: p.DeletedAt, VisibleFrom: from, VisibleUntil: until, ViewerID: userID})
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
	if v.Kind == "group" && len(ids) > 0 {
		counts, err := s.q.GroupReceiptCounts(ctx, ids)
		if err != nil {
			return nil, 0, unavailable("the database", err)
		}
		for _, c := range counts {
			if v := &out[at[c.ID]]; v.ContentType != events.ContentSystem {
				v.Receipts = &ReceiptCounts{Recipients: c.Recipients, Delivered: c.Delivered, Read: c.Read}
			}
		}
	}
	return out, total, nil
}

// window is the span of creation times whose messages a participant sees:
// a group member's membership (nil, nil in a direct conversation).
func window(v db.GetViewerRow) (from, until *time.Time) {
	if v.Kind != "group" {
		return nil, nil
	}
	return &v.ConversationParticipant.JoinedAt, v.ConversationParticipant.LeftAt
}

// sees reports whether the viewer sees a message created at createdAt.
func sees(v db.GetViewerRow, createdAt time.Time) bool {
	from, until := window(v)
	return (from == nil || !createdAt.Before(*from)) && (until == nil || !createdAt.After(*until))
}

// canSee reports whether userID may see message m: its sender, its
// recipient in a direct conversation, or a member of its group whose
// window holds it. (Deletion for one user is a view filter, not access.)
func (s *Service) canSee(ctx context.Context, q *db.Queries, userID int64, m db.Message) (bool, error) {
	if m.SenderID == userID || (m.RecipientID != nil && *m.RecipientID == userID) {
		return true, nil
	}
	if m.RecipientID != nil {
		return false, nil
	}
	v, err := q.GetViewer(ctx, db.GetViewerParams{ConversationID: m.ConversationID, UserID: userID})
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, unavailable("the database", err)
	}
	return sees(v, m.CreatedAt), nil
}
