package chat

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/events"
)

// A report is written at the edge, not published: it is a moderation record
// no user reads and no worker reacts to, and the reporter gets its id at
// once. The snapshot of the message is taken in the same request, so it is
// the content at the moment of the report.

// ReportReasons are the reasons a report may give; "other" asks for
// details.
var reportReasons = []string{"spam", "harassment", "hate", "sexual", "violence", "self_harm", "scam", "impersonation", "other"}

// ReportReasons lists the accepted reasons, for documentation and errors.
func ReportReasons() []string { return slices.Clone(reportReasons) }

// MaxReportDetails bounds a report's free-text details, in characters.
const MaxReportDetails = 1000

// ReportInput is a report of a message or of a user.
type ReportInput struct {
	MessageID string `json:"message_id"`
	UserID    int64  `json:"user_id"`
	Reason    string `json:"reason"`
	Details   string `json:"details"`
}

// ReportView is a stored report as its reporter sees it: the snapshot is
// for moderators only.
type ReportView struct {
	ID             int64     `json:"id"`
	ReportedUserID int64     `json:"reported_user_id"`
	MessageID      *string   `json:"message_id"`
	Reason         string    `json:"reason"`
	Status         string    `json:"status"`
	CreatedAt      time.Time `json:"created_at"`
}

func (s *Service) validateReport(userID int64, in ReportInput) error {
	var problems []string
	switch {
	case in.MessageID == "" && in.UserID == 0:
		problems = append(problems, "message_id or user_id is required")
	case in.MessageID != "" && in.UserID != 0:
		problems = append(problems, "give message_id or user_id, not both")
	case in.MessageID != "" && !events.IsUUID(in.MessageID):
		return Errorf(CodeBadRequest, "message_id %q is not a UUID", in.MessageID)
	case in.UserID < 0:
		problems = append(problems, "user_id must be a positive user id")
	case in.UserID == userID:
		problems = append(problems, "you cannot report yourself")
	}
	if !slices.Contains(reportReasons, in.Reason) {
		problems = append(problems, "reason must be one of "+strings.Join(reportReasons, ", "))
	}
	if in.Reason == "other" && blank(in.Details) {
		problems = append(problems, `reason "other" needs details`)
	}
	if n := utf8.RuneCountInString(in.Details); n > MaxReportDetails {
		problems = append(problems, "details has more than 1000 characters")
	}
	if len(problems) > 0 {
		return Errorf(CodeInvalid, "%s", strings.Join(problems, "; "))
	}
	return nil
}

// Report stores a report of a message (with a copy of its content) or of a
// user. Reporting the same message or user again answers the first report.
func (s *Service) Report(ctx context.Context, userID int64, in ReportInput) (ReportView, error) {
	if err := s.validateReport(userID, in); err != nil {
		return ReportView{}, err
	}
	if err := s.allowWrite(userID, WriteSettings, "reports"); err != nil {
		return ReportView{}, err
	}
	p := db.InsertReportParams{ReporterID: userID, ReportedUserID: in.UserID, Reason: in.Reason,
		Details: strings.TrimSpace(in.Details), CreatedAt: s.clock()}
	if in.MessageID != "" {
		id := uuid.MustParse(in.MessageID)
		m, err := s.q.GetMessage(ctx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return ReportView{}, Errorf(CodeNotFound, "message %s not found (a message just sent can be reported once it is stored)", id)
		}
		if err != nil {
			return ReportView{}, unavailable("the database", err)
		}
		if m.SenderID == userID {
			return ReportView{}, Errorf(CodeInvalid, "you cannot report your own message")
		}
		if ok, err := s.canSee(ctx, s.q, userID, m); err != nil {
			return ReportView{}, err
		} else if !ok {
			return ReportView{}, Errorf(CodeForbidden, "message %s is not in one of your conversations", id)
		}
		p.ReportedUserID, p.MessageID, p.ConversationID = m.SenderID, &m.ID, &m.ConversationID
		p.ContentType, p.TextContent, p.MediaKey, p.MessageCreatedAt = &m.ContentType, m.TextContent, m.MediaKey, &m.CreatedAt
	}
	r, err := s.q.InsertReport(ctx, p)
	if err != nil {
		return ReportView{}, unavailable("the database", err)
	}
	v := ReportView{ID: r.ID, ReportedUserID: r.ReportedUserID, Reason: r.Reason, Status: "received", CreatedAt: r.CreatedAt}
	if r.MessageID != nil {
		id := r.MessageID.String()
		v.MessageID = &id
	}
	return v, nil
}
