package chat

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/internal/connstore"
)

// PresenceConnections is what GET /presence needs of the connection store:
// a user is online while any of their connections is live.
type PresenceConnections interface {
	ByUsers(ctx context.Context, userIDs []int64) (map[int64][]connstore.Connection, error)
}

var _ PresenceConnections = connstore.Store(nil)

// WithPresence answers presence queries from conns; without it they answer
// CodeNotConfigured.
func WithPresence(conns PresenceConnections) Option {
	return func(s *Service) { s.presenceConns = conns }
}

// MaxPresenceUsers bounds the users one presence query asks about.
const MaxPresenceUsers = 100

// PresenceView is one user's presence as the caller may see it. A user
// who hides their last seen, or where either blocks the other, shows
// neither online nor last seen; a caller who hides their own last seen sees
// no one's.
type PresenceView struct {
	UserID     int64      `json:"user_id"`
	Online     bool       `json:"online"`
	LastSeenAt *time.Time `json:"last_seen_at"`
}

// PresenceSettings are a user's presence privacy settings.
type PresenceSettings struct {
	HideLastSeen *bool `json:"hide_last_seen"`
}

// ParseUserIDs reads a comma-separated list of user ids, as a query gives
// it.
func ParseUserIDs(raw string) ([]int64, error) {
	if strings.TrimSpace(raw) == "" {
		return nil, Errorf(CodeBadRequest, "user_ids is required: a comma-separated list of user ids")
	}
	parts := strings.Split(raw, ",")
	if len(parts) > MaxPresenceUsers {
		return nil, Errorf(CodeBadRequest, "user_ids has %d ids; the limit is %d", len(parts), MaxPresenceUsers)
	}
	ids := make([]int64, 0, len(parts))
	for _, p := range parts {
		n, err := strconv.ParseInt(strings.TrimSpace(p), 10, 64)
		if err != nil || n <= 0 {
			return nil, Errorf(CodeBadRequest, "user_ids: %q is not a positive user id", p)
		}
		if !slices.Contains(ids, n) {
			ids = append(ids, n)
		}
	}
	return ids, nil
}

// Presence answers the presence of those of ids who share a conversation
// with userID, in the order asked; the others are left out.
func (s *Service) Presence(ctx context.Context, userID int64, ids []int64) ([]PresenceView, error) {
	if s.presenceConns == nil {
		return nil, Errorf(CodeNotConfigured, "presence is not available on this server")
	}
	shared, err := s.q.ListSharedPartners(ctx, db.ListSharedPartnersParams{UserID: userID, UserIds: ids})
	if err != nil {
		return nil, unavailable("the database", err)
	}
	out := []PresenceView{}
	if len(shared) == 0 {
		return out, nil
	}
	blocked, err := s.q.ListBlockedAmong(ctx, db.ListBlockedAmongParams{UserID: userID, UserIds: shared})
	if err != nil {
		return nil, unavailable("the database", err)
	}
	rows, err := s.q.ListPresence(ctx, append(slices.Clone(shared), userID))
	if err != nil {
		return nil, unavailable("the database", err)
	}
	stored := map[int64]db.UserPresence{}
	for _, r := range rows {
		stored[r.UserID] = r
	}
	conns, err := s.presenceConns.ByUsers(ctx, shared)
	if err != nil {
		return nil, unavailable("the connection store", err)
	}
	now := s.now()
	callerHides := stored[userID].HideLastSeen
	for _, id := range ids {
		if !slices.Contains(shared, id) {
			continue
		}
		v := PresenceView{UserID: id}
		if slices.Contains(blocked, id) || stored[id].HideLastSeen {
			out = append(out, v)
			continue
		}
		v.Online = slices.ContainsFunc(conns[id], func(c connstore.Connection) bool { return c.Live(now) })
		if !v.Online && !callerHides {
			v.LastSeenAt = stored[id].LastSeenAt
		}
		out = append(out, v)
	}
	return out, nil
}

// PresenceSettingsOf answers the user's presence privacy settings.
func (s *Service) PresenceSettingsOf(ctx context.Context, userID int64) (PresenceSettings, error) {
	rows, err := s.q.ListPresence(ctx, []int64{userID})
	if err != nil {
		return PresenceSettings{}, unavailable("the database", err)
	}
	hide := len(rows) > 0 && rows[0].HideLastSeen
	return PresenceSettings{HideLastSeen: &hide}, nil
}

// UpdatePresenceSettings stores the user's presence privacy. It is a direct
// write, like a block: the next presence query and push must obey it.
func (s *Service) UpdatePresenceSettings(ctx context.Context, userID int64, in PresenceSettings) (PresenceSettings, error) {
	if in.HideLastSeen == nil {
		return in, Errorf(CodeInvalid, "nothing to change: give hide_last_seen")
	}
	if err := s.allowWrite(userID, WriteSettings, "settings changes"); err != nil {
		return in, err
	}
	if err := s.q.SetHideLastSeen(ctx, db.SetHideLastSeenParams{UserID: userID, HideLastSeen: *in.HideLastSeen}); err != nil {
		return in, unavailable("the database", err)
	}
	return in, nil
}
