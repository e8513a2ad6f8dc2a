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

// Groups. A membership change is written here, at ingress, in a
// transaction holding the group's row lock, at the database's clock read
// under that lock, and published in the transaction (txWithEvents); a send
// reads the members under a share of the same lock, at the same clock, and
// is published before that share ends (sendToGroup). So each message's
// created_at, its seq and the members it is posted to agree with every
// change: a member sees exactly what was created while they were one, on
// every path (REST, WebSocket, sync, push, media). The local bus commits
// the event with the change; if the commit fails after an EventBridge
// publish, the persister applies the published change itself (last
// writer wins by its time), so nothing is half done.

// GroupInput creates a group.
type GroupInput struct {
	Title     string  `json:"title"`
	MemberIDs []int64 `json:"member_ids"`
}

// MembersInput adds members to a group.
type MembersInput struct {
	UserIDs []int64 `json:"user_ids"`
}

// RenameInput renames a group.
type RenameInput struct {
	Title string `json:"title"`
}

// RoleInput sets a member's role.
type RoleInput struct {
	Role string `json:"role"`
}

// GroupMemberView is one member of a group.
type GroupMemberView struct {
	UserID   int64     `json:"user_id"`
	Role     string    `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
}

// CreateGroup creates a group with the user as its owner.
func (s *Service) CreateGroup(ctx context.Context, userID int64, in GroupInput) (ConversationView, error) {
	title, err := s.groupTitle(in.Title)
	if err != nil {
		return ConversationView{}, err
	}
	members, err := s.newMembers(ctx, userID, in.MemberIDs, "member_ids")
	if err != nil {
		return ConversationView{}, err
	}
	if len(members) == 0 {
		return ConversationView{}, Errorf(CodeInvalid, "member_ids must name at least one other user")
	}
	if 1+len(members) > s.limits.MaxGroupMembers {
		return ConversationView{}, Errorf(CodeInvalid, "a group has at most %d members; member_ids names %d besides you", s.limits.MaxGroupMembers, len(members))
	}
	if err := s.allowWrite(userID, WriteConversation, "new conversations"); err != nil {
		return ConversationView{}, err
	}
	id := newID()
	all := append([]int64{userID}, members...)
	var published bool
	joined, err := s.txWithEvents(ctx, func(ctx context.Context, tx pgx.Tx) error {
		q := db.New(tx)
		at, err := dbClock(ctx, tx)
		if err != nil {
			return err
		}
		if _, err := q.InsertGroup(ctx, db.InsertGroupParams{ID: id, Title: &title, CreatedAt: at, CreatedBy: &userID}); err != nil {
			return unavailable("the database", err)
		}
		roles := make([]string, len(all))
		for i := range roles {
			roles[i] = events.RoleMember
		}
		roles[0] = events.RoleOwner
		if _, err := q.JoinGroup(ctx, db.JoinGroupParams{ConversationID: id, Roles: roles, At: at, UserIds: all}); err != nil {
			return unavailable("the database", err)
		}
		if err := s.publishGroupChange(ctx, id, at, events.GroupChangedV1{
			ActorID: userID, Action: events.GroupCreated, UserIDs: all, Title: title, MemberIDs: sorted(all)}); err != nil {
			return err
		}
		published = true
		return nil
	})
	if err != nil && !s.appliedAnyway("a group change", published && !joined, id, err) {
		return ConversationView{}, txError(err)
	}
	v, err := s.Conversation(ctx, userID, id)
	if err != nil && published && !joined {
		// Created, by the persister in a moment if not by this commit:
		// the answer is the group as it will be.
		return ConversationView{ID: id.String(), Participant1ID: userID, Kind: "group", Title: &title,
			Role: events.RoleOwner, MemberCount: int64(len(all))}, nil
	}
	return v, err
}

// appliedAnyway reports whether a group's change or message (what) whose
// transaction failed stands nonetheless: published by a bus that did not
// join the transaction (EventBridge publishes at once; the local bus's
// events roll back with it), whose commit then failed. The persister
// applies what was published, so the request succeeded. It logs why.
func (s *Service) appliedAnyway(what string, publishedApart bool, convID uuid.UUID, err error) bool {
	if !publishedApart {
		return false
	}
	s.logger.Warn(what+" was published but its transaction failed; the persister applies it",
		"conversation_id", convID, "err", err)
	return true
}

// AddMembers adds users to a group; an owner or admin may.
func (s *Service) AddMembers(ctx context.Context, userID int64, convID uuid.UUID, in MembersInput) (ConversationView, error) {
	users, err := s.newMembers(ctx, userID, in.UserIDs, "user_ids")
	if err != nil {
		return ConversationView{}, err
	}
	if len(users) == 0 {
		return ConversationView{}, Errorf(CodeInvalid, "user_ids must name at least one user other than you")
	}
	if err := s.allowWrite(userID, WriteSettings, "group changes"); err != nil {
		return ConversationView{}, err
	}
	err = s.changeGroup(ctx, userID, convID, func(g groupState) (*events.GroupChangedV1, error) {
		if !g.canManage(userID) {
			return nil, Errorf(CodeForbidden, "only the owner and admins of group %s can add members", convID)
		}
		fresh := slices.DeleteFunc(slices.Clone(users), g.isMember)
		if len(fresh) == 0 {
			return nil, nil // all members already: nothing changes
		}
		if n := len(g.members) + len(fresh); n > s.limits.MaxGroupMembers {
			return nil, Errorf(CodeInvalid, "a group has at most %d members; adding %d would make %d", s.limits.MaxGroupMembers, len(fresh), n)
		}
		roles := make([]string, len(fresh))
		for i := range roles {
			roles[i] = events.RoleMember
		}
		joined, err := g.q.JoinGroup(ctx, db.JoinGroupParams{ConversationID: convID, Roles: roles, At: g.at, UserIds: fresh})
		if err != nil {
			return nil, unavailable("the database", err)
		}
		if len(joined) == 0 {
			return nil, nil
		}
		return &events.GroupChangedV1{Action: events.GroupAdded, UserIDs: sorted(joined),
			MemberIDs: sorted(append(g.memberIDs(), joined...))}, nil
	})
	if err != nil {
		return ConversationView{}, err
	}
	return s.Conversation(ctx, userID, convID)
}

// RemoveMember removes a member from a group, or, when it is the user
// themselves, leaves it. The owner may remove anyone, an admin members;
// the owner leaves only as the last member (they hand ownership on first).
func (s *Service) RemoveMember(ctx context.Context, userID int64, convID uuid.UUID, target int64) error {
	if target <= 0 {
		return Errorf(CodeInvalid, "user id must be positive")
	}
	if err := s.allowWrite(userID, WriteSettings, "group changes"); err != nil {
		return err
	}
	return s.changeGroup(ctx, userID, convID, func(g groupState) (*events.GroupChangedV1, error) {
		role, ok := g.members[target]
		if !ok {
			return nil, Errorf(CodeNotFound, "user %d is not a member of group %s", target, convID)
		}
		action := events.GroupRemoved
		switch {
		case target == userID:
			action = events.GroupLeft
			if role == events.RoleOwner && len(g.members) > 1 {
				return nil, Errorf(CodeConflict, "the owner cannot leave group %s while it has other members: make another member the owner first", convID)
			}
		case g.members[userID] == events.RoleOwner:
		case g.members[userID] == events.RoleAdmin && role == events.RoleMember:
		default:
			return nil, Errorf(CodeForbidden, "you cannot remove user %d from group %s: the owner removes anyone, an admin members only", target, convID)
		}
		left, err := g.q.LeaveGroup(ctx, db.LeaveGroupParams{At: g.at, ConversationID: convID, UserIds: []int64{target}})
		if err != nil {
			return nil, unavailable("the database", err)
		}
		if len(left) == 0 {
			return nil, nil
		}
		rest := slices.DeleteFunc(g.memberIDs(), func(u int64) bool { return u == target })
		return &events.GroupChangedV1{Action: action, UserIDs: []int64{target}, MemberIDs: rest}, nil
	})
}

// RenameGroup changes a group's title; an owner or admin may.
func (s *Service) RenameGroup(ctx context.Context, userID int64, convID uuid.UUID, in RenameInput) (ConversationView, error) {
	title, err := s.groupTitle(in.Title)
	if err != nil {
		return ConversationView{}, err
	}
	if err := s.allowWrite(userID, WriteSettings, "group changes"); err != nil {
		return ConversationView{}, err
	}
	err = s.changeGroup(ctx, userID, convID, func(g groupState) (*events.GroupChangedV1, error) {
		if !g.canManage(userID) {
			return nil, Errorf(CodeForbidden, "only the owner and admins of group %s can rename it", convID)
		}
		if g.title == title {
			return nil, nil
		}
		if _, err := g.q.RenameGroup(ctx, db.RenameGroupParams{Title: &title, At: g.at, ID: convID}); err != nil {
			return nil, unavailable("the database", err)
		}
		return &events.GroupChangedV1{Action: events.GroupRenamed, Title: title, MemberIDs: g.memberIDs()}, nil
	})
	if err != nil {
		return ConversationView{}, err
	}
	return s.Conversation(ctx, userID, convID)
}

// SetRole sets a member's role; the owner alone may. Making another member
// the owner hands ownership on: the owner becomes an admin.
func (s *Service) SetRole(ctx context.Context, userID int64, convID uuid.UUID, target int64, in RoleInput) (ConversationView, error) {
	if !events.ValidRole(in.Role) {
		return ConversationView{}, Errorf(CodeInvalid, "role %q is not one of owner, admin, member", in.Role)
	}
	if err := s.allowWrite(userID, WriteSettings, "group changes"); err != nil {
		return ConversationView{}, err
	}
	err := s.changeGroup(ctx, userID, convID, func(g groupState) (*events.GroupChangedV1, error) {
		if g.members[userID] != events.RoleOwner {
			return nil, Errorf(CodeForbidden, "only the owner of group %s can change roles", convID)
		}
		role, ok := g.members[target]
		if !ok {
			return nil, Errorf(CodeNotFound, "user %d is not a member of group %s", target, convID)
		}
		if target == userID {
			return nil, Errorf(CodeInvalid, "the owner hands ownership on by making another member the owner")
		}
		if role == in.Role {
			return nil, nil
		}
		if err := db.ApplyGroupRole(ctx, g.q, convID, userID, target, in.Role, g.at); err != nil {
			return nil, unavailable("the database", err)
		}
		return &events.GroupChangedV1{Action: events.GroupRoleChanged, UserIDs: []int64{target}, Role: in.Role, MemberIDs: g.memberIDs()}, nil
	})
	if err != nil {
		return ConversationView{}, err
	}
	return s.Conversation(ctx, userID, convID)
}

// GroupMembers lists a group's current members to one of them, or to a
// former member as they were when that member left.
func (s *Service) GroupMembers(ctx context.Context, userID int64, convID uuid.UUID) ([]GroupMemberView, error) {
	v, err := s.viewer(ctx, convID, userID)
	if err != nil {
		return nil, err
	}
	if v.Kind != "group" {
		return nil, Errorf(CodeNotFound, "conversation %s is not a group", convID)
	}
	rows, err := s.q.ListGroupParticipants(ctx, convID)
	if err != nil {
		return nil, unavailable("the database", err)
	}
	until := v.ConversationParticipant.LeftAt
	out := []GroupMemberView{}
	for _, r := range rows {
		// Members at the time the viewer sees up to: now, or when they left.
		current := r.LeftAt == nil
		if until != nil {
			current = !r.JoinedAt.After(*until) && (r.LeftAt == nil || !r.LeftAt.Before(*until))
		}
		if current {
			out = append(out, GroupMemberView{UserID: r.UserID, Role: r.Role, JoinedAt: r.JoinedAt})
		}
	}
	return out, nil
}

// groupState is a group as a change sees it, under the group's row lock.
type groupState struct {
	q       *db.Queries
	at      time.Time // the change's time: the database's clock under the lock
	title   string
	members map[int64]string // current members' roles
}

func (g groupState) isMember(u int64) bool { _, ok := g.members[u]; return ok }
func (g groupState) canManage(u int64) bool {
	r := g.members[u]
	return r == events.RoleOwner || r == events.RoleAdmin
}

func (g groupState) memberIDs() []int64 {
	out := make([]int64, 0, len(g.members))
	for u := range g.members {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// changeGroup runs change under the group's row lock, for a current member,
// and publishes the change it returns (nil: nothing changed) in the
// transaction (txWithEvents).
func (s *Service) changeGroup(ctx context.Context, userID int64, convID uuid.UUID, change func(groupState) (*events.GroupChangedV1, error)) error {
	var published bool
	joined, err := s.txWithEvents(ctx, func(ctx context.Context, tx pgx.Tx) error {
		q := db.New(tx)
		g, err := q.LockGroup(ctx, convID)
		if errors.Is(err, pgx.ErrNoRows) {
			return Errorf(CodeNotFound, "group %s not found", convID)
		}
		if err != nil {
			return unavailable("the database", err)
		}
		at := g.Clock
		rows, err := q.ListGroupParticipants(ctx, convID)
		if err != nil {
			return unavailable("the database", err)
		}
		st := groupState{q: q, at: at.UTC(), title: deref(g.Title), members: map[int64]string{}}
		for _, r := range rows {
			if r.LeftAt == nil {
				st.members[r.UserID] = r.Role
			}
		}
		if !st.isMember(userID) {
			return Errorf(CodeForbidden, "you are not a member of group %s", convID)
		}
		ev, err := change(st)
		if err != nil || ev == nil {
			return err
		}
		ev.ActorID = userID
		if err := s.publishGroupChange(ctx, convID, st.at, *ev); err != nil {
			return err
		}
		published = true
		return nil
	})
	if err != nil && !s.appliedAnyway("a group change", published && !joined, convID, err) {
		return txError(err)
	}
	return nil
}

func (s *Service) publishGroupChange(ctx context.Context, convID uuid.UUID, at time.Time, ev events.GroupChangedV1) error {
	ev.ConversationID, ev.At = convID.String(), at
	env, err := events.New(newID().String(), at, ev.ActorID, convID.String(), ev)
	if err != nil {
		return internal(err)
	}
	return s.publish(ctx, env)
}

// dbClock reads the database's clock, the time of a group's changes and of
// its messages (see the top of this file).
func dbClock(ctx context.Context, tx pgx.Tx) (time.Time, error) {
	var at time.Time
	if err := tx.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&at); err != nil {
		return at, unavailable("the database", err)
	}
	return at.UTC(), nil
}

// groupMembersForSend reads a group's members for a message, under a share
// of the group's row lock held for the rest of q's transaction, with the
// database's clock: the message's created_at (sendToGroup). It answers the
// members but the sender, or refuses a sender who is not a member.
func groupMembersForSend(ctx context.Context, q *db.Queries, convID uuid.UUID, userID int64) (members []int64, at time.Time, err error) {
	if _, err := q.ShareLockGroup(ctx, convID); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, at, Errorf(CodeNotFound, "group %s not found", convID)
		}
		return nil, at, unavailable("the database", err)
	}
	rows, err := q.GroupMembersForSend(ctx, convID)
	if err != nil {
		return nil, at, unavailable("the database", err)
	}
	in := false
	for _, r := range rows {
		if r.UserID == userID {
			in = true
			continue
		}
		members = append(members, r.UserID)
	}
	if !in {
		return nil, at, Errorf(CodeForbidden, "you are not a member of group %s", convID)
	}
	return members, rows[0].Clock.UTC().Truncate(time.Microsecond), nil // rows holds the sender
}

func (s *Service) groupTitle(t string) (string, error) {
	t = strings.TrimSpace(t)
	switch {
	case !utf8.ValidString(t):
		return "", Errorf(CodeInvalid, "title is not valid UTF-8")
	case blank(t):
		return "", Errorf(CodeInvalid, "title must not be empty")
	case utf8.RuneCountInString(t) > s.limits.MaxGroupTitleRunes:
		return "", Errorf(CodeInvalid, "title has %d characters; the limit is %d", utf8.RuneCountInString(t), s.limits.MaxGroupTitleRunes)
	}
	return t, nil
}

// newMembers checks the users to add: positive, the user themselves left
// out, each once; none may block the user (they would be added to a
// conversation with someone they blocked).
func (s *Service) newMembers(ctx context.Context, userID int64, ids []int64, field string) ([]int64, error) {
	if len(ids) > s.limits.MaxGroupMembers {
		return nil, Errorf(CodeInvalid, "%s names %d users; a group has at most %d members", field, len(ids), s.limits.MaxGroupMembers)
	}
	var out []int64
	for _, u := range ids {
		if u <= 0 {
			return nil, Errorf(CodeInvalid, "%s holds %d: user ids are positive", field, u)
		}
		if u != userID && !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	if len(out) == 0 {
		return out, nil
	}
	// One read for all of them, fresh: a block must stop the very next add.
	blocked, err := s.blockedAmong(ctx, userID, out...)
	if err != nil {
		return nil, err
	}
	for _, u := range out { // the first in the request's order
		if slices.Contains(blocked, u) {
			return nil, Errorf(CodeForbidden, "you cannot add user %d", u)
		}
	}
	return out, nil
}

func sorted(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// txError is a transaction's failure as the client is told it: its own
// refusal, or the database unavailable (a failed begin or commit).
func txError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return unavailable("the database", err)
}
