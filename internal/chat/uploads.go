package chat

import "sync"

// uploadSlots bounds the uploads streaming through the server at once, in
// all and per user: each holds a temporary file and a connection, and one
// user's burst must not take them all.
type uploadSlots struct {
	max, perUser int // 0: no bound

	mu     sync.Mutex
	total  int
	byUser map[int64]int
}

func newUploadSlots(max, perUser int) *uploadSlots {
	return &uploadSlots{max: max, perUser: perUser, byUser: map[int64]int{}}
}

// take claims a slot for userID, or refuses at once: a client retries an
// upload more cheaply than the server holds its unread body.
func (u *uploadSlots) take(userID int64) (done func(), err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.perUser > 0 && u.byUser[userID] >= u.perUser:
		return nil, Errorf(CodeRateLimited, "at most %d uploads at once per user; wait for one to finish", u.perUser)
	case u.max > 0 && u.total >= u.max:
		return nil, &Error{Code: CodeOverloaded, Message: "the server is taking as many uploads as it can; retry shortly", RetryAfter: RetryAfter}
	}
	u.total++
	u.byUser[userID]++
	return func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		u.total--
		if u.byUser[userID]--; u.byUser[userID] == 0 {
			delete(u.byUser, userID)
		}
	}, nil
}
