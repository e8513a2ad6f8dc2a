package connstore

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// Index is a Store that also keeps, in memory, the connections of one
// gateway that were written through it. A process that runs the gateway
// and its route handlers writes every record of that gateway's
// connections through its Index, so Held answers for them exactly, without
// a round trip to the store: fanout, posting to that same gateway
// in-process, looks up a batch's connections there. Every Store method
// still reads and writes the store itself, so other readers (and other
// gateways' records) are unaffected.
type Index struct {
	Store
	gateway string // "" indexes every connection written through it
	now     func() time.Time

	mu     sync.RWMutex
	byID   map[string]Connection
	byUser map[int64]map[string]struct{}
}

var _ Store = (*Index)(nil)

// NewIndex returns an Index over store for the connections held by gateway.
func NewIndex(store Store, gateway string) *Index {
	return &Index{Store: store, gateway: gateway, now: time.Now,
		byID: map[string]Connection{}, byUser: map[int64]map[string]struct{}{}}
}

// Put records c in the store, then in memory if its gateway is indexed.
func (x *Index) Put(ctx context.Context, c Connection) error {
	if err := x.Store.Put(ctx, c); err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.dropLocked(c.ID) // a replaced record may have changed user or gateway
	if x.gateway != "" && c.Gateway != x.gateway {
		return nil
	}
	x.byID[c.ID] = c
	ids := x.byUser[c.UserID]
	if ids == nil {
		ids = map[string]struct{}{}
		x.byUser[c.UserID] = ids
	}
	ids[c.ID] = struct{}{}
	return nil
}

// Delete forgets id in memory first, so that nothing is posted to a
// connection being closed even if the store's delete fails.
func (x *Index) Delete(ctx context.Context, id string) error {
	x.mu.Lock()
	x.dropLocked(id)
	x.mu.Unlock()
	return x.Store.Delete(ctx, id)
}

// Touch extends the record in the store, then in memory.
func (x *Index) Touch(ctx context.Context, id string, at, expiresAt time.Time) error {
	if err := x.Store.Touch(ctx, id, at, expiresAt); err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if c, ok := x.byID[id]; ok {
		c.LastPingAt, c.ExpiresAt = at, expiresAt
		x.byID[id] = c
	}
	return nil
}

// DeleteByGateway removes gateway's records from memory and the store.
func (x *Index) DeleteByGateway(ctx context.Context, gateway string) ([]int64, error) {
	if gateway == "" {
		return nil, ErrNoGateway
	}
	x.mu.Lock()
	for id, c := range x.byID {
		if c.Gateway == gateway {
			x.dropLocked(id)
		}
	}
	x.mu.Unlock()
	return x.Store.DeleteByGateway(ctx, gateway)
}

func (x *Index) dropLocked(id string) {
	c, ok := x.byID[id]
	if !ok {
		return
	}
	delete(x.byID, id)
	if ids := x.byUser[c.UserID]; ids != nil {
		delete(ids, id)
		if len(ids) == 0 {
			delete(x.byUser, c.UserID)
		}
	}
}

// Held is the indexed gateway's connections, answered from memory.
func (x *Index) Held() Held { return Held{x} }

// Held answers for the connections of an Index's gateway from memory, with
// the ByUsers and Delete of a Store.
type Held struct{ x *Index }

// ByUsers lists the unexpired connections of userIDs held by the indexed
// gateway, by user, oldest first, as Store.ByUsers does.
func (h Held) ByUsers(_ context.Context, userIDs []int64) (map[int64][]Connection, error) {
	x := h.x
	now := x.now()
	out := map[int64][]Connection{}
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, u := range userIDs {
		if _, done := out[u]; done {
			continue
		}
		var list []Connection
		for id := range x.byUser[u] {
			if c := x.byID[id]; c.ExpiresAt.After(now) {
				list = append(list, c)
			}
		}
		if len(list) == 0 {
			continue
		}
		slices.SortFunc(list, func(a, b Connection) int {
			return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), cmp.Compare(a.ID, b.ID))
		})
		out[u] = list
	}
	return out, nil
}

// Delete removes a connection from memory and the store.
func (h Held) Delete(ctx context.Context, id string) error { return h.x.Delete(ctx, id) }
