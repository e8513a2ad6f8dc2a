// Package ebfake is a stand-in for EventBridge in tests: no EventBridge
// emulator runs offline, so this fake speaks the two operations the chat
// uses (PutEvents and StartReplay) over the SDK's JSON 1.1 protocol, applies
// the chat's routing rules (events.Routes) and forwards matching events to
// real SQS queues, as an EventBridge rule with an SQS target does.
//
// Serve it with httptest.NewServer and point the SDK client's BaseEndpoint at
// it. It does not archive events: StartReplay requests are only recorded.
package ebfake

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/eventbridge/ebevent"
)

// Values the fake puts in the events it delivers.
const (
	Account = "000000000000"
	Region  = "us-east-1"
)

// Request limits EventBridge enforces on PutEvents.
const (
	maxEntries = 10
	maxBytes   = 256 * 1024
)

// Sender is the part of the SQS client the fake uses to deliver to targets.
// It sends one message per call: the SendMessageBatch reply of some local
// SQS servers is misread by the SDK.
type Sender interface {
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, optFns ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

var _ Sender = (*sqs.Client)(nil)

// Entry is a PutEvents entry as the fake received it.
type Entry struct {
	EventBusName string
	Source       string
	DetailType   string
	Detail       string
	Time         time.Time
	Resources    []string
}

// ReplayRequest is a StartReplay call as the fake received it.
type ReplayRequest struct {
	ReplayName     string
	Description    string
	EventSourceArn string
	EventStartTime time.Time
	EventEndTime   time.Time
	DestinationArn string
	FilterArns     []string
}

type rule struct {
	route    events.Route
	queueURL string
}

// Fake is an http.Handler serving the EventBridge API.
type Fake struct {
	sqs   Sender
	rules []rule

	mu       sync.Mutex
	failNext int
	requests [][]Entry
	replays  []ReplayRequest
}

var _ http.Handler = (*Fake)(nil)

// New returns a fake bus with one rule per worker in queueURLs (worker name
// to SQS queue URL), filtering as events.Routes says. Workers without a queue
// get no rule; a name that is not a worker is an error.
func New(client Sender, queueURLs map[string]string) (*Fake, error) {
	f := &Fake{sqs: client}
	for worker, url := range queueURLs {
		route, ok := events.RouteFor(worker)
		if !ok {
			return nil, fmt.Errorf("ebfake: %q is not a worker", worker)
		}
		f.rules = append(f.rules, rule{route: route, queueURL: url})
	}
	return f, nil
}

// FailNext makes the next n entries received fail with InternalFailure, as
// EventBridge reports a transient failure of single entries.
func (f *Fake) FailNext(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = n
}

// Requests returns the entries of every PutEvents request received so far,
// one slice per request, including entries that failed.
func (f *Fake) Requests() [][]Entry {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([][]Entry, len(f.requests))
	for i, r := range f.requests {
		out[i] = slices.Clone(r)
	}
	return out
}

// Replays returns the StartReplay requests received so far.
func (f *Fake) Replays() []ReplayRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.replays)
}

// ServeHTTP answers POST / with X-Amz-Target AWSEvents.PutEvents or
// AWSEvents.StartReplay.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeError(w, http.StatusNotFound, "UnknownOperationException", "only POST / is served")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		writeError(w, http.StatusBadRequest, "SerializationException", "unexpected Content-Type "+ct)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	switch target := r.Header.Get("X-Amz-Target"); target {
	case "AWSEvents.PutEvents":
		f.putEvents(r.Context(), w, body)
	case "AWSEvents.StartReplay":
		f.startReplay(w, body)
	default:
		writeError(w, http.StatusBadRequest, "UnknownOperationException", "unsupported operation "+target)
	}
}

// epochSeconds is a timestamp as the JSON 1.1 protocol writes it.
type epochSeconds float64

func (s epochSeconds) time() time.Time {
	sec, frac := math.Modf(float64(s))
	return time.Unix(int64(sec), int64(math.Round(frac*1e3))*int64(time.Millisecond)).UTC()
}

type putEventsInput struct {
	Entries []struct {
		EventBusName string
		Source       string
		DetailType   string
		Detail       string
		Time         *epochSeconds
		Resources    []string
	}
}

type resultEntry struct {
	EventID      string `json:"EventId,omitempty"`
	ErrorCode    string `json:"ErrorCode,omitempty"`
	ErrorMessage string `json:"ErrorMessage,omitempty"`
}

func (f *Fake) putEvents(ctx context.Context, w http.ResponseWriter, body []byte) {
	var in putEventsInput
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	if n := len(in.Entries); n == 0 || n > maxEntries {
		writeError(w, http.StatusBadRequest, "ValidationException",
			fmt.Sprintf("1 validation error detected: Value at 'entries' failed to satisfy constraint: Member must have length between 1 and %d (got %d)", maxEntries, n))
		return
	}
	received := make([]Entry, len(in.Entries))
	size := 0
	for i, e := range in.Entries {
		received[i] = Entry{EventBusName: e.EventBusName, Source: e.Source, DetailType: e.DetailType, Detail: e.Detail, Resources: e.Resources}
		if e.Time != nil {
			received[i].Time = e.Time.time()
			size += 14
		}
		size += len(e.Source) + len(e.DetailType) + len(e.Detail)
		for _, r := range e.Resources {
			size += len(r)
		}
	}

	f.mu.Lock()
	f.requests = append(f.requests, received)
	injected := min(f.failNext, len(received))
	f.failNext -= injected
	f.mu.Unlock()

	if size > maxBytes {
		writeError(w, http.StatusBadRequest, "ValidationException", "Total size of the entries in the request is over the limit.")
		return
	}

	out := struct {
		FailedEntryCount int
		Entries          []resultEntry
	}{Entries: make([]resultEntry, len(received))}
	for i, e := range received {
		res := resultEntry{ErrorCode: "InternalFailure", ErrorMessage: "Injected failure."}
		if i >= injected {
			res = f.route(ctx, e)
		}
		if res.ErrorCode != "" {
			out.FailedEntryCount++
		}
		out.Entries[i] = res
	}
	writeJSON(w, out)
}

// route delivers one accepted entry to the queue of every matching rule.
func (f *Fake) route(ctx context.Context, e Entry) resultEntry {
	if e.Source == "" || e.DetailType == "" || e.Detail == "" {
		return resultEntry{ErrorCode: "InvalidArgument", ErrorMessage: "Parameters Source, DetailType and Detail are required."}
	}
	var detail struct {
		Data struct {
			ContentType string `json:"content_type"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(e.Detail), &detail); err != nil {
		var typeErr *json.UnmarshalTypeError
		// A detail that is not an object, or not JSON, is malformed; a data
		// field of another shape only fails to match the media filter.
		if !errors.As(err, &typeErr) || typeErr.Field == "" {
			return resultEntry{ErrorCode: "MalformedDetail", ErrorMessage: "Detail is malformed."}
		}
	}
	at := e.Time
	if at.IsZero() {
		at = time.Now()
	}
	ev := ebevent.Event{
		Version:    "0",
		ID:         uuid.NewString(),
		DetailType: e.DetailType,
		Source:     e.Source,
		Account:    Account,
		Time:       at.UTC().Truncate(time.Second),
		Region:     Region,
		Resources:  e.Resources,
		Detail:     json.RawMessage(e.Detail),
	}
	if ev.Resources == nil {
		ev.Resources = []string{}
	}
	msg, err := json.Marshal(ev)
	if err != nil {
		return resultEntry{ErrorCode: "InternalFailure", ErrorMessage: err.Error()}
	}
	for _, r := range f.rules {
		if !matches(r.route, e.Source, e.DetailType, detail.Data.ContentType) {
			continue
		}
		// A failed delivery fails the entry, so the publisher retries it;
		// targets that already got it may get it twice (at-least-once).
		if _, err := f.sqs.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(r.queueURL), MessageBody: aws.String(string(msg))}); err != nil {
			return resultEntry{ErrorCode: "InternalFailure", ErrorMessage: fmt.Sprintf("deliver to %s: %v", r.route.Worker, err)}
		}
	}
	return resultEntry{EventID: ev.ID}
}

// matches is the rule's event pattern: {"source":["parley.chat"],
// "detail-type":[route types], "detail":{"data":{"content_type":[media]}}}.
func matches(r events.Route, source, detailType, contentType string) bool {
	if source != events.Source || !slices.Contains(r.Types, detailType) {
		return false
	}
	return len(r.Media) == 0 || slices.Contains(r.Media, contentType)
}

func (f *Fake) startReplay(w http.ResponseWriter, body []byte) {
	var in struct {
		ReplayName, Description, EventSourceArn string
		EventStartTime, EventEndTime            *epochSeconds
		Destination                             *struct {
			Arn        string
			FilterArns []string
		}
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeError(w, http.StatusBadRequest, "SerializationException", err.Error())
		return
	}
	if in.ReplayName == "" || in.EventSourceArn == "" || in.EventStartTime == nil || in.EventEndTime == nil || in.Destination == nil || in.Destination.Arn == "" {
		writeError(w, http.StatusBadRequest, "ValidationException", "ReplayName, EventSourceArn, EventStartTime, EventEndTime and Destination.Arn are required.")
		return
	}
	rec := ReplayRequest{
		ReplayName:     in.ReplayName,
		Description:    in.Description,
		EventSourceArn: in.EventSourceArn,
		EventStartTime: in.EventStartTime.time(),
		EventEndTime:   in.EventEndTime.time(),
		DestinationArn: in.Destination.Arn,
		FilterArns:     in.Destination.FilterArns,
	}
	f.mu.Lock()
	f.replays = append(f.replays, rec)
	f.mu.Unlock()
	writeJSON(w, map[string]any{
		"ReplayArn":       fmt.Sprintf("arn:aws:events:%s:%s:replay/%s", Region, Account, in.ReplayName),
		"State":           "STARTING",
		"ReplayStartTime": float64(time.Now().Unix()),
	})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(v) // the client went away: nothing to do
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}
