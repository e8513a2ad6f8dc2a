package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/parleychat/parley/internal/retry"
)

// ExpoURL is Expo's send endpoint; receipts are at the sibling getReceipts.
const ExpoURL = "https://exp.host/--/api/v2/push/send"

// Expo's documented limits: messages per send request, ids per receipts
// request.
const (
	expoMaxBatch    = 100
	expoMaxReceipts = 1000
)

// Expo speaks the Expo push service's HTTP protocol: batches of up to 100
// messages answered by one ticket each, and receipts fetched later by
// ticket id. Expo's API has no collapse field, so notifications of one
// conversation do not replace each other there.
type Expo struct {
	sendURL, receiptsURL string
	accessToken          string // optional: Expo's enhanced push security
	client               *http.Client
	retry                retry.Policy
}

var _ Provider = (*Expo)(nil)

// NewExpo returns a client of the send endpoint sendURL (ExpoURL, or a
// stand-in's …/push/send). accessToken may be empty; client nil means
// http.DefaultClient.
func NewExpo(sendURL, accessToken string, client *http.Client) (*Expo, error) {
	if err := CheckEndpoint(sendURL); err != nil {
		return nil, err
	}
	i := strings.LastIndex(sendURL, "/")
	if i < 0 || sendURL[i+1:] != "send" {
		return nil, fmt.Errorf("%q: want the full URL of the send endpoint, ending in /push/send", sendURL)
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &Expo{sendURL: sendURL, receiptsURL: sendURL[:i+1] + "getReceipts", accessToken: accessToken, client: client, retry: DefaultRetry()}, nil
}

// SetRetry replaces the retry policy (tests record waits).
func (e *Expo) SetRetry(p retry.Policy) { e.retry = p }

type expoMessage struct {
	To               string            `json:"to"`
	Title            string            `json:"title,omitempty"`
	Body             string            `json:"body,omitempty"`
	Data             map[string]string `json:"data,omitempty"`
	Badge            *int              `json:"badge,omitempty"`
	Sound            string            `json:"sound,omitempty"`
	Priority         string            `json:"priority,omitempty"`
	ContentAvailable bool              `json:"_contentAvailable,omitempty"`
}

// expoStatus is a ticket or a receipt.
type expoStatus struct {
	Status  string `json:"status"`
	ID      string `json:"id"`
	Message string `json:"message"`
	Details struct {
		Error string `json:"error"`
	} `json:"details"`
}

// err is the error a ticket or receipt stands for, nil for "ok".
func (s expoStatus) err() error {
	if s.Status == "ok" {
		return nil
	}
	switch s.Details.Error {
	case "DeviceNotRegistered":
		return fmt.Errorf("expo: %s: %w", s.Message, ErrInvalidToken)
	case "MessageRateExceeded":
		return Retryable(fmt.Errorf("expo: %s: %s", s.Details.Error, s.Message))
	}
	return fmt.Errorf("expo: %s %s: %s", s.Status, s.Details.Error, s.Message)
}

// Send posts the notifications in batches of 100, one request per batch;
// a batch that is throttled or fails with a 5xx is retried as a whole. Expo
// refuses a whole request for one bad member (a message over its size limit,
// tokens of different projects), so a batch refused as a request is sent
// again a notification at a time: each then gets its own answer.
func (e *Expo) Send(ctx context.Context, ns []Notification) []Result {
	out := make([]Result, 0, len(ns))
	for start := 0; start < len(ns); start += expoMaxBatch {
		part := ns[start:min(start+expoMaxBatch, len(ns))]
		res, err := e.sendBatch(ctx, part)
		var refused *statusError
		if len(part) > 1 && errors.As(err, &refused) && !IsRetryable(err) {
			for _, n := range part {
				one, err := e.sendBatch(ctx, []Notification{n})
				if err != nil {
					one = []Result{{Err: err}}
				}
				out = append(out, one...)
			}
			continue
		}
		if err != nil {
			for range part {
				out = append(out, Result{Err: err})
			}
			continue
		}
		out = append(out, res...)
	}
	return out
}

// sendBatch posts one request; an error is the request's, not a ticket's.
func (e *Expo) sendBatch(ctx context.Context, part []Notification) ([]Result, error) {
	msgs := make([]expoMessage, len(part))
	for i, n := range part {
		msgs[i] = expoMessageOf(n)
	}
	var tickets struct {
		Data []expoStatus `json:"data"`
	}
	err := do(ctx, e.retry, func(ctx context.Context) error {
		return e.post(ctx, e.sendURL, msgs, &tickets)
	})
	if err != nil {
		return nil, err
	}
	if len(tickets.Data) != len(part) {
		return nil, fmt.Errorf("expo: %d tickets for %d messages", len(tickets.Data), len(part))
	}
	out := make([]Result, len(part))
	for i, t := range tickets.Data {
		out[i] = Result{Ticket: t.ID, Err: t.err()}
	}
	return out, nil
}

func expoMessageOf(n Notification) expoMessage {
	badge := n.Badge
	m := expoMessage{To: n.Token, Data: n.Data, Badge: &badge}
	if n.Silent {
		// A background notification: no alert, the badge only.
		m.ContentAvailable = true
		m.Priority = "normal"
		return m
	}
	m.Title, m.Body, m.Sound, m.Priority = n.Title, n.Body, "default", "high"
	return m
}

// Receipts fetches the receipts of tickets, answering per ticket id the
// error it reports (nil: delivered to the platform's service). Ids Expo
// has no receipt for yet are left out.
func (e *Expo) Receipts(ctx context.Context, ids []string) (map[string]error, error) {
	out := map[string]error{}
	for start := 0; start < len(ids); start += expoMaxReceipts {
		part := ids[start:min(start+expoMaxReceipts, len(ids))]
		var receipts struct {
			Data map[string]expoStatus `json:"data"`
		}
		err := do(ctx, e.retry, func(ctx context.Context) error {
			return e.post(ctx, e.receiptsURL, map[string][]string{"ids": part}, &receipts)
		})
		if err != nil {
			return out, err
		}
		for id, r := range receipts.Data {
			out[id] = r.err()
		}
	}
	return out, nil
}

// post sends body as JSON and decodes a 2xx answer into dst.
func (e *Expo) post(ctx context.Context, url string, body, dst any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("expo: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("expo: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if e.accessToken != "" {
		req.Header.Set("Authorization", "Bearer "+e.accessToken)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return Retryable(fmt.Errorf("expo: %w", err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return Retryable(fmt.Errorf("expo: read answer: %w", err))
	}
	if resp.StatusCode/100 != 2 {
		var errs struct {
			Errors []struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"errors"`
		}
		reason := strings.TrimSpace(string(raw))
		if json.Unmarshal(raw, &errs) == nil && len(errs.Errors) > 0 {
			reason = errs.Errors[0].Code + ": " + errs.Errors[0].Message
		}
		return fmt.Errorf("expo: %w", classify(resp.StatusCode, reason, resp.Header))
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		return fmt.Errorf("expo: decode answer: %w", err)
	}
	return nil
}
