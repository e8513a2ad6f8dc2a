// Package push sends notifications to devices: one small interface
// (Provider) over the Expo push service, APNs and FCM HTTP v1, each spoken
// through its documented HTTP protocol, and a development Sink that records
// what would have been sent.
//
// Providers answer per notification, so that one device's failure never
// fails another's: ErrInvalidToken means the device is gone for good (the
// caller deletes it), a Retryable error means "try again later" (throttling,
// 5xx, network) after the provider's own bounded retries, anything else is
// permanent for that notification.
package push

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/parleychat/parley/internal/retry"
)

// Platforms a device registers with.
const (
	PlatformIOS     = "ios"     // an APNs device token
	PlatformAndroid = "android" // an FCM registration token
	PlatformExpo    = "expo"    // an Expo push token, ExponentPushToken[…]
)

// Notification is one push to one device.
type Notification struct {
	Platform string `json:"platform"`
	Token    string `json:"token"`
	// Title and Body are shown; both empty with Silent.
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
	// Badge is the app icon's number: the user's total unread count.
	Badge int `json:"badge"`
	// CollapseID groups a conversation's notifications, so a newer one
	// replaces the older where the platform allows it.
	CollapseID string `json:"collapse_id,omitempty"`
	// Data goes to the app with the notification (conversation_id,
	// message_id, seq), so that it opens the right screen.
	Data map[string]string `json:"data,omitempty"`
	// Silent is a background update (the badge after a read) that shows
	// nothing.
	Silent bool `json:"silent,omitempty"`
}

// Result is a provider's answer for one notification.
type Result struct {
	// Ticket is the Expo push ticket, whose receipt says later whether the
	// device took the notification; "" for other providers.
	Ticket string
	Err    error
}

// Provider sends notifications. Send returns one Result per notification,
// in order.
type Provider interface {
	Send(ctx context.Context, ns []Notification) []Result
}

// ErrInvalidToken says that the device token will never work again (APNs
// 410 or BadDeviceToken, FCM UNREGISTERED, Expo DeviceNotRegistered).
var ErrInvalidToken = errors.New("device token is no longer valid")

// retryableError marks a failure worth trying again later.
type retryableError struct{ err error }

func (r retryableError) Error() string { return r.err.Error() }
func (r retryableError) Unwrap() error { return r.err }

// Retryable marks err as worth retrying (throttled, unavailable).
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return retryableError{err}
}

// IsRetryable reports whether err, or anything it wraps, is Retryable.
func IsRetryable(err error) bool {
	var r retryableError
	return errors.As(err, &r)
}

// statusError is an HTTP answer that is not a success.
type statusError struct {
	Status     int
	Reason     string
	RetryAfter time.Duration
}

func (s *statusError) Error() string {
	if s.Reason == "" {
		return fmt.Sprintf("HTTP %d", s.Status)
	}
	return fmt.Sprintf("HTTP %d: %s", s.Status, s.Reason)
}

// classify turns a non-success HTTP status into an error: throttling and
// server errors are retryable, the rest are not.
func classify(status int, reason string, h http.Header) error {
	err := &statusError{Status: status, Reason: reason, RetryAfter: retryAfter(h)}
	if status == http.StatusTooManyRequests || status >= 500 {
		return Retryable(err)
	}
	return err
}

// retryAfter reads a Retry-After header given in seconds; 0 if absent.
func retryAfter(h http.Header) time.Duration {
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// DefaultRetry is the providers' own retry of throttled and failed sends:
// three attempts within about a second and a half, so that a struggling
// service costs one event a short wait before its queue retries it later.
func DefaultRetry() retry.Policy {
	return retry.Policy{Attempts: 3, Base: 250 * time.Millisecond, Max: time.Second, Jitter: 0.5}
}

// do runs op under p, retrying only retryable errors, and waits at least a
// server's Retry-After (bounded by maxRetryAfter) before the next attempt.
func do(ctx context.Context, p retry.Policy, op func(ctx context.Context) error) error {
	var hint time.Duration
	sleep := p.Sleep
	if sleep == nil {
		sleep = retry.Sleep
	}
	p.Sleep = func(ctx context.Context, d time.Duration) error {
		return sleep(ctx, max(d, min(hint, maxRetryAfter)))
	}
	_, err := p.Do(ctx, func(ctx context.Context) error {
		err := op(ctx)
		hint = 0
		var se *statusError
		if errors.As(err, &se) {
			hint = se.RetryAfter
		}
		return err
	}, IsRetryable, nil)
	return err
}

// sendEach sends each notification with one request of its own, up to
// limit at once, each retried under p.
func sendEach(ctx context.Context, ns []Notification, limit int, p retry.Policy, sendOne func(context.Context, Notification) error) []Result {
	out := make([]Result, len(ns))
	var g errgroup.Group
	g.SetLimit(limit)
	for i, n := range ns {
		g.Go(func() error {
			out[i].Err = do(ctx, p, func(ctx context.Context) error { return sendOne(ctx, n) })
			return nil
		})
	}
	_ = g.Wait() // the goroutines return nil
	return out
}

// maxRetryAfter bounds how long one send waits for a Retry-After: longer
// waits are the queue's to make.
const maxRetryAfter = 5 * time.Second

// CheckEndpoint validates a provider endpoint override: https, or plain
// http to a loopback address only (a local stand-in in tests or staging).
func CheckEndpoint(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", raw)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return fmt.Errorf("%q: plain http is accepted for loopback addresses only", raw)
	}
	return fmt.Errorf("%q: want an https:// URL", raw)
}

// Router sends each notification through the provider of its platform.
// A platform without one gets an error saying so.
type Router map[string]Provider

var _ Provider = Router(nil)

func (r Router) Send(ctx context.Context, ns []Notification) []Result {
	out := make([]Result, len(ns))
	byPlatform := map[string][]int{}
	for i, n := range ns {
		byPlatform[n.Platform] = append(byPlatform[n.Platform], i)
	}
	for platform, idx := range byPlatform {
		p, ok := r[platform]
		if !ok {
			for _, i := range idx {
				out[i].Err = fmt.Errorf("no push provider is configured for platform %q", platform)
			}
			continue
		}
		part := make([]Notification, len(idx))
		for k, i := range idx {
			part[k] = ns[i]
		}
		for k, res := range p.Send(ctx, part) {
			out[idx[k]] = res
		}
	}
	return out
}
