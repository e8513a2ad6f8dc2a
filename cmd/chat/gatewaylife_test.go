package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/api/auth"
)

// TestGatewayForgetsItsPreviousRun: records left by a gateway that died
// without $disconnect are deleted when a gateway of the same identity
// starts, and their users are announced offline unless another record
// keeps them online; another gateway's records and unclaimed ones stay.
func TestGatewayForgetsItsPreviousRun(t *testing.T) {
	e := newEnv(t)
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	self := "http://" + e.admin // the default identity: the management URL
	for _, r := range []struct {
		id   string
		user int64
		gw   string
	}{
		{"PrevRunConn001=", 2, self},
		{"PrevRunConn002=", 5, self},
		{"PrevRunConn003=", 5, self},
		{"OtherGwConn001=", 2, "http://127.0.0.1:1"},
		{"UnclaimedConn1=", 2, ""},
	} {
		if _, err := e.pool.Exec(context.Background(), `INSERT INTO ws_connections (connection_id, user_id, connected_at, last_ping_at, expires_at, gateway)
			VALUES ($1, $2, now() - interval '1 second', now(), now() + interval '1 hour', $3)`, r.id, r.user, r.gw); err != nil {
			t.Fatal(err)
		}
	}

	gwEnv := e.gatewayView()
	gwEnv.waitHTTP(gwEnv.start("gateway"))
	if n := count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE gateway = $1`, self); n != 0 {
		t.Errorf("%d records of the previous run remain, want 0", n)
	}
	if n := count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE connection_id IN ('OtherGwConn001=', 'UnclaimedConn1=')`); n != 2 {
		t.Errorf("%d of the other gateway's and unclaimed records remain, want 2", n)
	}
	// No fanout runs here: the announcements wait in its queue. User 5 had
	// only records of the previous run; user 2 still has others.
	offline := func(user int64) int {
		return count(t, e.pool, `SELECT count(*) FROM queue_fanout WHERE type = 'Presence'
			AND (payload->'data'->>'user_id')::bigint = $1 AND NOT (payload->'data'->>'online')::boolean`, user)
	}
	if n := offline(5); n != 1 {
		t.Errorf("user 5 announced offline %d times, want once", n)
	}
	if n := offline(2); n != 0 {
		t.Errorf("user 2, still connected elsewhere, announced offline %d times", n)
	}

	// This run's connections are recorded under the same identity.
	gwEnv.dialNoGreeting(3)
	waitUntil(t, "the new connection is recorded", func() bool {
		return count(t, e.pool, `SELECT count(*) FROM ws_connections WHERE user_id = 3 AND gateway = $1`, self) == 1
	})
}

// TestGatewayCrashLoopDrainsFanout runs the pieces as separate processes
// and SIGKILLs the gateway a few times while messages are sent over REST.
// Each killed gateway leaves records of connections that died with it.
// Once the load ends, the fanout queue drains, and every client connected
// after the last restart has received every message sent to it after it
// connected.
func TestGatewayCrashLoopDrainsFanout(t *testing.T) {
	e := newEnv(t)
	// While the gateway is down the fanout queue lags, and ingress would
	// refuse sends (overload); this test is about what fanout does after,
	// so every send must be accepted.
	e.extra = append(e.extra, "CHAT_OVERLOAD_QUEUE_AGE=0")
	if code := runCmd(t, e, "migrate"); code != 0 {
		t.Fatalf("migrate exited %d", code)
	}
	e.waitHTTP(e.start("api"))
	gwEnv := e.gatewayView()
	gw := gwEnv.start("gateway")
	gwEnv.waitHTTP(gw)
	e.start("worker", "fanout")
	e.start("worker", "persister")

	// Receivers 1..n hold WebSocket connections; sender 100+i writes to
	// receiver i over REST only.
	const (
		receivers = 6
		devices   = 2 // connections per receiver and run
		restarts  = 3
		phase     = 1500 * time.Millisecond
	)
	type sent struct {
		id string
		at time.Time // when the send began
	}
	var (
		mu      sync.Mutex
		log     = make(map[int64][]sent) // by receiver
		failed  atomic.Int64
		stop    = make(chan struct{})
		senders sync.WaitGroup
	)
	for w := range 4 {
		senders.Go(func() {
			for i := 0; ; i++ {
				// Paced, so that the test measures recovery rather than
				// how fast two cores can persist.
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
				to := int64(1 + (w+4*i)%receivers)
				at := time.Now()
				id, err := restSend(e, 100+to, to, fmt.Sprintf("w%d m%d", w, i))
				if err != nil {
					failed.Add(1)
					continue
				}
				mu.Lock()
				log[to] = append(log[to], sent{id, at})
				mu.Unlock()
			}
		})
	}
	stopLoad := sync.OnceFunc(func() { close(stop); senders.Wait() })
	t.Cleanup(stopLoad)

	connectAll := func() map[int64][]*wsClient {
		clients := map[int64][]*wsClient{}
		for u := int64(1); u <= receivers; u++ {
			for range devices {
				clients[u] = append(clients[u], gwEnv.dial(u))
			}
		}
		return clients
	}
	connectAll()
	for range restarts {
		time.Sleep(phase)
		gw.kill() // SIGKILL: no $disconnect for its connections
		gw = gwEnv.start("gateway")
		gwEnv.waitHTTP(gw)
		connectAll()
	}
	// The last run's clients, connected after the last restart.
	final := connectAll()
	since := time.Now()
	time.Sleep(phase)
	stopLoad()
	ended := time.Now()
	left := count(t, e.pool, `SELECT count(*) FROM queue_fanout`)

	deadline := time.Now().Add(60 * time.Second)
	for count(t, e.pool, `SELECT count(*) FROM queue_fanout`) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	drained := time.Since(ended)
	if n := count(t, e.pool, `SELECT count(*) FROM queue_fanout`); n != 0 {
		t.Fatalf("%d events still in the fanout queue %v after the load ended (%d right after it)", n, drained.Round(time.Millisecond), left)
	}

	// Every frame the fanout queue held has been posted; collect them.
	want, got := 0, 0
	total := 0
	for u, cs := range final {
		var ids []string
		for _, s := range log[u] {
			if s.at.After(since) {
				ids = append(ids, s.id)
			}
		}
		total += len(log[u])
		for _, c := range cs {
			want += len(ids)
			missing := receiveAll(c, ids, 10*time.Second)
			got += len(ids) - len(missing)
			if len(missing) > 0 {
				t.Errorf("user %d: a device connected after the last restart missed %d of %d messages sent since, e.g. %s", u, len(missing), len(ids), missing[0])
			}
		}
	}
	if failed.Load() > 0 {
		t.Errorf("%d REST sends failed", failed.Load())
	}
	t.Logf("%d messages sent over %d gateway restarts; %d events in the fanout queue when the load ended, drained %v later; %d/%d frames delivered to the last run's clients",
		total, restarts, left, drained.Round(time.Millisecond), got, want)
}

// restSend posts a text message as user and returns its id. It reports
// errors instead of failing the test, for it runs off the test's goroutine.
func restSend(e *env, user, to int64, text string) (string, error) {
	body, _ := json.Marshal(map[string]any{"recipient_id": to, "content_type": "text", "text_content": text})
	req, err := http.NewRequest("POST", "http://"+e.http+"/api/v1/chat/messages", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	tok, err := auth.Issue([]byte(testSecret), user, time.Hour, time.Now())
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var m message
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("send: status %d: %v", resp.StatusCode, err)
	}
	return m.ID, nil
}

// receiveAll reads c's frames until newMessage frames for all ids have
// arrived or d passed, and returns the ids that did not arrive.
func receiveAll(c *wsClient, ids []string, d time.Duration) []string {
	pending := make(map[string]bool, len(ids))
	for _, id := range ids {
		pending[id] = true
	}
	deadline := time.After(d)
	for len(pending) > 0 {
		select {
		case f, ok := <-c.inbox:
			if !ok {
				return keys(pending)
			}
			if id, _ := data(f)["id"].(string); f["type"] == "newMessage" {
				delete(pending, id)
			}
		case <-deadline:
			return keys(pending)
		}
	}
	return nil
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
