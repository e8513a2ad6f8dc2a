package events

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// TypeGroupChanged is a change of a group conversation: its creation, a
// membership or role change, a new title.
const TypeGroupChanged = "GroupChanged"

// Group actions (GroupChangedV1.Action).
const (
	GroupCreated     = "created"
	GroupAdded       = "added"
	GroupRemoved     = "removed"
	GroupLeft        = "left"
	GroupRenamed     = "renamed"
	GroupRoleChanged = "role_changed"
)

// Member roles in a group: the owner and admins may add, remove and rename;
// the owner alone changes roles. The owner cannot leave or be removed
// while they are the owner (they hand ownership on first).
const (
	RoleOwner  = "owner"
	RoleAdmin  = "admin"
	RoleMember = "member"
)

// ValidRole reports whether r is one of the roles above.
func ValidRole(r string) bool { return r == RoleOwner || r == RoleAdmin || r == RoleMember }

// GroupChangedV1 is published by the ingress, in the transaction that
// wrote the change under the group's row lock (on the local bus it commits
// with it), at At, the database's clock under that lock.
// The persister applies it again (last writer wins by At, so a replay or a
// redelivery changes nothing) and stores its system message, whose id is
// the event's.
type GroupChangedV1 struct {
	ConversationID string `json:"conversation_id"`
	ActorID        int64  `json:"actor_id"`
	Action         string `json:"action"`
	// UserIDs are the members the change is of: created, the members the
	// group was created with (the creator first, its owner); added, those
	// added; removed and left, those who are no longer members;
	// role_changed, the member whose role changed.
	UserIDs []int64 `json:"user_ids,omitempty"`
	Title   string  `json:"title,omitempty"` // created, renamed
	Role    string  `json:"role,omitempty"`  // role_changed
	// MemberIDs are the members after the change: with those who left, who
	// is told of it.
	MemberIDs []int64   `json:"member_ids"`
	At        time.Time `json:"at"`
}

func (GroupChangedV1) EventType() string { return TypeGroupChanged }
func (GroupChangedV1) EventVersion() int { return 1 }

// Audience is who learns of the change: the members after it and those it
// removed.
func (m GroupChangedV1) Audience() []int64 {
	out := slices.Clone(m.MemberIDs)
	if m.Action == GroupRemoved || m.Action == GroupLeft {
		out = append(out, m.UserIDs...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (m GroupChangedV1) Validate() error {
	var errs []error
	if !IsUUID(m.ConversationID) {
		errs = append(errs, fmt.Errorf("conversation_id %q is not a UUID", m.ConversationID))
	}
	if m.ActorID <= 0 {
		errs = append(errs, errors.New("actor_id must be positive"))
	}
	for _, u := range append(slices.Clone(m.UserIDs), m.MemberIDs...) {
		if u <= 0 {
			errs = append(errs, fmt.Errorf("user id %d is not positive", u))
			break
		}
	}
	switch m.Action {
	case GroupCreated, GroupRenamed:
		if m.Title == "" {
			errs = append(errs, fmt.Errorf("a %s change needs a title", m.Action))
		}
		if m.Action == GroupCreated && (len(m.UserIDs) == 0 || m.UserIDs[0] != m.ActorID) {
			errs = append(errs, errors.New("a group is created with its creator as its first member"))
		}
	case GroupAdded, GroupRemoved, GroupLeft:
		if len(m.UserIDs) == 0 {
			errs = append(errs, fmt.Errorf("a %s change needs user_ids", m.Action))
		}
	case GroupRoleChanged:
		if len(m.UserIDs) != 1 || !ValidRole(m.Role) {
			errs = append(errs, errors.New("a role change needs one user and a role of owner, admin or member"))
		}
	default:
		errs = append(errs, fmt.Errorf("action %q is not one of created, added, removed, left, renamed, role_changed", m.Action))
	}
	if m.At.IsZero() {
		errs = append(errs, errors.New("at is missing"))
	}
	return errors.Join(errs...)
}

// SystemMessage is what a group's system message says changed: stored
// with the message, shown by REST and in the sync feed.
type SystemMessage struct {
	Action  string  `json:"action"`
	ActorID int64   `json:"actor_id"`
	UserIDs []int64 `json:"user_ids,omitempty"`
	Title   string  `json:"title,omitempty"`
	Role    string  `json:"role,omitempty"`
}

// System is the change's system message.
func (m GroupChangedV1) System() SystemMessage {
	return SystemMessage{Action: m.Action, ActorID: m.ActorID, UserIDs: m.UserIDs, Title: m.Title, Role: m.Role}
}
