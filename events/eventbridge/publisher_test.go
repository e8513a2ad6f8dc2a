package eventbridge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awseb "github.com/aws/aws-sdk-go-v2/service/eventbridge"
	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
	"github.com/parleychat/parley/events/eventbridge/ebfake"
	"github.com/parleychat/parley/events/sqs/sqstest"
	"github.com/parleychat/parley/internal/awsconf"
)

const (
	bus          = "parley-test"
	conversation = "0190b6f4-8a3e-7c2d-9f10-1234567890ab"
)

var at = time.Date(2026, 11, 29, 12, 0, 0, 123_000_000, time.UTC)

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// client is an SDK client for a test server, without SDK-level retries so
// that every request the publisher makes is visible.
func client(t *testing.T, url string) *awseb.Client {
	t.Helper()
	cfg, err := awsconf.Load(t.Context(), awsconf.Options{Endpoint: url})
	if err != nil {
		t.Fatal(err)
	}
	return awseb.NewFromConfig(cfg, func(o *awseb.Options) { o.RetryMaxAttempts = 1 })
}

func publisher(t *testing.T, url string, edit func(*eventbridge.Options)) *eventbridge.Publisher {
	t.Helper()
	opts := eventbridge.Options{BusName: bus, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond, Logger: testLogger(t)}
	if edit != nil {
		edit(&opts)
	}
	p, err := eventbridge.NewPublisher(client(t, url), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// fakeBus serves a fake EventBridge without rules.
func fakeBus(t *testing.T) (*ebfake.Fake, string) {
	t.Helper()
	f, err := ebfake.New(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func textSent(t *testing.T, text string) events.Envelope {
	t.Helper()
	return mustNew(t, events.MessageSentV1{MessageID: uuid.NewString(), ConversationID: conversation, SenderID: 1, RecipientID: 2,
		ContentType: events.ContentText, TextContent: text, CreatedAt: at})
}

func mustNew(t *testing.T, p events.Payload) events.Envelope {
	t.Helper()
	env, err := events.New(uuid.NewString(), at, 1, conversation, p)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// detailIDs returns the envelope id in each entry's detail.
func detailIDs(t *testing.T, entries []ebfake.Entry) []string {
	t.Helper()
	ids := make([]string, len(entries))
	for i, e := range entries {
		env, err := events.Decode([]byte(e.Detail))
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		ids[i] = env.ID
	}
	return ids
}

func ids(envs []events.Envelope) []string {
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = e.ID
	}
	return out
}

func requestSizes(reqs [][]ebfake.Entry) []int {
	out := make([]int, len(reqs))
	for i, r := range reqs {
		out[i] = len(r)
	}
	return out
}

func TestPublishEntries(t *testing.T) {
	f, url := fakeBus(t)
	env := textSent(t, "Olá")
	if err := publisher(t, url, nil).Publish(context.Background(), env); err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests()
	if len(reqs) != 1 || len(reqs[0]) != 1 {
		t.Fatalf("requests %v, want one entry", requestSizes(reqs))
	}
	e := reqs[0][0]
	want, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if e.EventBusName != bus || e.Source != events.Source || e.DetailType != events.TypeMessageSent ||
		e.Detail != string(want) || !e.Time.Equal(env.OccurredAt) {
		t.Errorf("entry %+v\nwant bus %s, source %s, detail-type %s, time %s, detail %s", e, bus, events.Source, events.TypeMessageSent, env.OccurredAt, want)
	}
}

func TestPublishBatchesAtTenEntries(t *testing.T) {
	f, url := fakeBus(t)
	var envs []events.Envelope
	for i := range 23 {
		envs = append(envs, textSent(t, fmt.Sprint("message ", i)))
	}
	if err := publisher(t, url, nil).Publish(context.Background(), envs...); err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests()
	if got := requestSizes(reqs); !slices.Equal(got, []int{10, 10, 3}) {
		t.Errorf("request sizes %v, want [10 10 3]", got)
	}
	if got := detailIDs(t, slices.Concat(reqs...)); !slices.Equal(got, ids(envs)) {
		t.Errorf("events sent in another order or not all of them:\n got %v\nwant %v", got, ids(envs))
	}
}

func TestPublishBatchesAt256KB(t *testing.T) {
	f, url := fakeBus(t)
	// Each entry is a little over 100 KB: two fit in a request, three do not.
	var envs []events.Envelope
	for range 5 {
		envs = append(envs, textSent(t, strings.Repeat("a", 100*1024)))
	}
	if err := publisher(t, url, nil).Publish(context.Background(), envs...); err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests()
	if got := requestSizes(reqs); !slices.Equal(got, []int{2, 2, 1}) {
		t.Errorf("request sizes %v, want [2 2 1]", got)
	}
	if got := detailIDs(t, slices.Concat(reqs...)); !slices.Equal(got, ids(envs)) {
		t.Errorf("events sent in another order or not all of them")
	}
}

func TestPublishRejectsBeforeSending(t *testing.T) {
	tests := []struct {
		name string
		env  func(t *testing.T) events.Envelope
		want error
	}{
		{"over 256 KB alone", func(t *testing.T) events.Envelope { return textSent(t, strings.Repeat("a", 256*1024)) }, eventbridge.ErrTooLarge},
		{"invalid envelope", func(t *testing.T) events.Envelope {
			e := textSent(t, "hi")
			e.ID = "42"
			return e
		}, events.ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, url := fakeBus(t)
			err := publisher(t, url, nil).Publish(context.Background(), textSent(t, "first"), tt.env(t))
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
			if n := len(f.Requests()); n != 0 {
				t.Errorf("%d requests sent, want none", n)
			}
		})
	}
}

// TestPublishRetriesOnlyFailedEntries runs against real SQS queues: events
// the bus refused at first still reach each of their queues exactly once.
func TestPublishRetriesOnlyFailedEntries(t *testing.T) {
	_, sqsClient := sqstest.StartGoaws(t,
		sqstest.QueueSpec{Name: "persister"}, sqstest.QueueSpec{Name: "fanout"}, sqstest.QueueSpec{Name: "thumbnailer"})
	queues := map[string]string{}
	for _, w := range []string{events.WorkerPersister, events.WorkerFanout, events.WorkerThumbnailer} {
		queues[w] = sqstest.QueueURL(t, sqsClient, w)
	}
	f, err := ebfake.New(sqsClient, queues)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(f)
	defer srv.Close()

	var envs []events.Envelope
	for i := range 12 {
		envs = append(envs, textSent(t, fmt.Sprint("message ", i)))
	}
	f.FailNext(3)
	if err := publisher(t, srv.URL, nil).Publish(context.Background(), envs...); err != nil {
		t.Fatalf("publish: %v", err)
	}

	reqs := f.Requests()
	if got := requestSizes(reqs); !slices.Equal(got, []int{10, 3, 2}) {
		t.Fatalf("request sizes %v, want [10 3 2]: the batch, its 3 failed entries, the next batch", got)
	}
	if got, want := detailIDs(t, reqs[1]), ids(envs[:3]); !slices.Equal(got, want) {
		t.Errorf("retried %v, want the failed entries %v", got, want)
	}

	want := ids(envs)
	slices.Sort(want)
	for worker, wantIDs := range map[string][]string{events.WorkerPersister: want, events.WorkerFanout: want, events.WorkerThumbnailer: nil} {
		var got []string
		for _, m := range sqstest.Drain(t, sqsClient, queues[worker], time.Second) {
			env, err := ebevent.Decode([]byte(aws.ToString(m.Body)))
			if err != nil {
				t.Fatalf("%s: %v", worker, err)
			}
			got = append(got, env.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, wantIDs) {
			t.Errorf("%s queue holds %d events %v, want each of %d exactly once", worker, len(got), got, len(wantIDs))
		}
	}
}

func TestPublishFailsWhenEntriesKeepFailing(t *testing.T) {
	f, url := fakeBus(t)
	envs := []events.Envelope{textSent(t, "a"), textSent(t, "b"), textSent(t, "c")}
	f.FailNext(100)
	err := publisher(t, url, func(o *eventbridge.Options) { o.MaxAttempts = 4 }).Publish(context.Background(), envs...)
	if !errors.Is(err, eventbridge.ErrPublishFailed) {
		t.Fatalf("error %v, want ErrPublishFailed", err)
	}
	for _, e := range envs {
		if !strings.Contains(err.Error(), e.ID) {
			t.Errorf("error %q does not name event %s", err, e.ID)
		}
	}
	if got := requestSizes(f.Requests()); !slices.Equal(got, []int{3, 3, 3, 3}) {
		t.Errorf("request sizes %v, want 4 attempts of 3 entries", got)
	}
}

func TestPublishTransportError(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	err := publisher(t, url, nil).Publish(context.Background(), textSent(t, "a"))
	if !errors.Is(err, eventbridge.ErrPublishFailed) {
		t.Fatalf("error %v, want ErrPublishFailed", err)
	}
}

func TestPublishStopsWhenContextEnds(t *testing.T) {
	f, url := fakeBus(t)
	f.FailNext(100)
	ctx, cancel := context.WithCancel(context.Background())
	p := publisher(t, url, func(o *eventbridge.Options) { o.BaseDelay, o.MaxDelay = time.Hour, time.Hour })
	done := make(chan error, 1)
	go func() { done <- p.Publish(ctx, textSent(t, "a")) }()
	for len(f.Requests()) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	err := <-done
	if !errors.Is(err, eventbridge.ErrPublishFailed) || !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want ErrPublishFailed and context.Canceled", err)
	}
}

// scripted answers PutEvents with the given bodies in turn and records the
// number of entries of each request.
type scripted struct {
	mu      sync.Mutex
	replies []string
	got     [][]string // detail ids per request
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var in struct{ Entries []struct{ Detail string } }
	body, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(body, &in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for _, e := range in.Entries {
		var env struct{ ID string }
		_ = json.Unmarshal([]byte(e.Detail), &env)
		ids = append(ids, env.ID)
	}
	s.got = append(s.got, ids)
	reply := s.replies[0]
	s.replies = s.replies[1:]
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_, _ = io.WriteString(w, reply)
}

// TestPublishRetriesByPosition checks that failures in the middle of a
// batch are matched to their entries by position, and that a reply whose
// entries cannot be matched makes the publisher resend them all.
func TestPublishRetriesByPosition(t *testing.T) {
	s := &scripted{replies: []string{
		`{"FailedEntryCount":2,"Entries":[{"EventId":"e0"},{"ErrorCode":"ThrottlingException","ErrorMessage":"Rate exceeded"},{"EventId":"e2"},{"ErrorCode":"InternalFailure","ErrorMessage":"Internal"},{"EventId":"e4"}]}`,
		`{"FailedEntryCount":0,"Entries":[{"EventId":"e1"}]}`, // one result for two entries
		`{"FailedEntryCount":1,"Entries":[{"EventId":"e1"},{"ErrorCode":"InternalFailure","ErrorMessage":"Internal"}]}`,
		`{"FailedEntryCount":0,"Entries":[{"EventId":"e3"}]}`,
	}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	envs := []events.Envelope{textSent(t, "0"), textSent(t, "1"), textSent(t, "2"), textSent(t, "3"), textSent(t, "4")}
	if err := publisher(t, srv.URL, nil).Publish(context.Background(), envs...); err != nil {
		t.Fatal(err)
	}
	want := [][]string{ids(envs), {envs[1].ID, envs[3].ID}, {envs[1].ID, envs[3].ID}, {envs[3].ID}}
	if !slices.EqualFunc(s.got, want, slices.Equal) {
		t.Errorf("requests\n got %v\nwant %v", s.got, want)
	}
}
