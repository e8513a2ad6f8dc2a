package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/internal/pipelinetest"
	"github.com/parleychat/parley/workers/persister"
)

// epochPage is GET /sync's answer, with the epoch its positions count in.
type epochPage struct {
	syncPage
	Epoch int64 `json:"epoch"`
}

func epochSync(t *testing.T, e *pipelinetest.Env, user, since, epoch int64) epochPage {
	t.Helper()
	var p epochPage
	e.MustDo(t, user, http.MethodGet, fmt.Sprintf("%s/sync?since=%d&epoch=%d", api.Prefix, since, epoch), nil, http.StatusOK, &p)
	return p
}

// TestSyncEpoch: positions count within the feed's epoch. A position of
// the feed's epoch is answered; one of another epoch (the feed renewed, as
// after a restore) answers reset with the head and the new epoch; since=0
// has seen nothing, in any epoch; a bad epoch is refused with a reason.
func TestSyncEpoch(t *testing.T) {
	t.Parallel()
	e := pipelinetest.New(t, pipelinetest.Options{})
	const a, b = 8101, 8102
	if p := epochSync(t, e, b, 0, 0); p.Epoch != 0 || p.Next != 0 || p.Reset {
		t.Fatalf("a feed with no entry: %+v, want epoch 0 and no reset", p)
	}
	conv := e.Conversation(t, a, b)
	for i := range 2 {
		e.Send(t, a, text(conv, fmt.Sprintf("m%d", i)))
	}
	awaitFeed(t, e, b, 3) // the conversation's creation and the messages
	first := epochSync(t, e, b, 0, 0)
	if first.Epoch < 1 || first.Epoch > 1<<53-1 || first.Next != 3 || len(first.Changes) != 3 {
		t.Fatalf("first sync: %+v, want three changes in an epoch from 1 to 2^53-1", first)
	}
	if p := epochSync(t, e, b, 1, first.Epoch); p.Reset || len(p.Changes) != 2 || p.Epoch != first.Epoch {
		t.Fatalf("since 1 in the feed's epoch: %+v", p)
	}
	if p := epochSync(t, e, b, 1, first.Epoch+1); !p.Reset || p.Next != 3 || len(p.Changes) != 0 || p.Epoch != first.Epoch {
		t.Fatalf("since 1 of another epoch: %+v, want reset to the head in the feed's epoch", p)
	}

	n, err := persister.RenewFeedEpochs(context.Background(), e.Pool, 1)
	if err != nil || n != 2 {
		t.Fatalf("renewed %d feeds (%v), want both users'", n, err)
	}
	renewed := epochSync(t, e, b, 2, first.Epoch)
	if !renewed.Reset || renewed.Next != 3 || renewed.Epoch == first.Epoch || renewed.Epoch < 1 {
		t.Fatalf("since 2 of the epoch before renewing: %+v, want reset in a new epoch", renewed)
	}
	if p := epochSync(t, e, b, 0, first.Epoch); p.Reset || len(p.Changes) != 3 {
		t.Fatalf("since 0 with an old epoch: %+v, want the whole feed", p)
	}
	if p := epochSync(t, e, a, 3, 0); p.Reset || len(p.Changes) != 0 {
		t.Fatalf("since the head without an epoch (a client older than epochs): %+v, want no reset", p)
	}

	for _, bad := range []string{"-1", "9007199254740992", "x"} {
		r := e.Do(t, b, http.MethodGet, api.Prefix+"/sync?since=1&epoch="+bad, nil)
		if r.Status != http.StatusBadRequest || !strings.Contains(string(r.Body), "epoch") {
			t.Fatalf("epoch=%s: %d %s, want 400 naming epoch", bad, r.Status, r.Body)
		}
	}
}
