package push

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleychat/parley/internal/retry"
)

// APNs endpoints.
const (
	APNsProduction = "https://api.push.apple.com"
	APNsSandbox    = "https://api.sandbox.push.apple.com"
)

const (
	// apnsTokenAge: Apple refuses provider tokens older than an hour and
	// throttles ones renewed more often than every 20 minutes.
	apnsTokenAge = 40 * time.Minute
	// apnsConcurrency bounds the requests in flight on the HTTP/2
	// connection, below APNs's usual stream limit.
	apnsConcurrency = 16
	// apnsMaxCollapseID is apns-collapse-id's limit in bytes.
	apnsMaxCollapseID = 64
)

// APNsConfig is token-based authentication with a .p8 signing key.
type APNsConfig struct {
	URL    string // APNsProduction, APNsSandbox or a stand-in
	KeyPEM []byte // the .p8 file's contents (a PKCS #8 EC private key)
	KeyID  string // the key's id (10 characters)
	TeamID string // the developer team id
	Topic  string // the app's bundle id
}

// APNs speaks Apple's push HTTP/2 API: one request per notification, many
// in flight on one connection.
type APNs struct {
	cfg    APNsConfig
	key    *ecdsa.PrivateKey
	client *http.Client
	retry  retry.Policy
	now    func() time.Time

	mu       sync.Mutex
	token    string
	signedAt time.Time
}

var _ Provider = (*APNs)(nil)

// NewAPNs checks cfg and returns a client. client nil means one whose
// transport negotiates HTTP/2 over TLS, as APNs requires.
func NewAPNs(cfg APNsConfig, client *http.Client) (*APNs, error) {
	if err := CheckEndpoint(cfg.URL); err != nil {
		return nil, err
	}
	if cfg.KeyID == "" || cfg.TeamID == "" || cfg.Topic == "" {
		return nil, errors.New("APNs needs a key id, a team id and a topic (the bundle id)")
	}
	key, err := jwt.ParseECPrivateKeyFromPEM(cfg.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("APNs signing key (.p8): %w", err)
	}
	if client == nil {
		client = &http.Client{Transport: &http.Transport{ForceAttemptHTTP2: true}, Timeout: 30 * time.Second}
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	return &APNs{cfg: cfg, key: key, client: client, retry: DefaultRetry(), now: time.Now}, nil
}

// SetRetry replaces the retry policy (tests record waits).
func (a *APNs) SetRetry(p retry.Policy) { a.retry = p }

// Send posts each notification on its own stream, several at once.
func (a *APNs) Send(ctx context.Context, ns []Notification) []Result {
	return sendEach(ctx, ns, apnsConcurrency, a.retry, a.sendOne)
}

type apnsAlert struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type apnsAPS struct {
	Alert            *apnsAlert `json:"alert,omitempty"`
	Badge            *int       `json:"badge,omitempty"`
	Sound            string     `json:"sound,omitempty"`
	ThreadID         string     `json:"thread-id,omitempty"`
	ContentAvailable int        `json:"content-available,omitempty"`
}

func (a *APNs) sendOne(ctx context.Context, n Notification) error {
	badge := n.Badge
	payload := map[string]any{}
	for k, v := range n.Data {
		payload[k] = v
	}
	aps := apnsAPS{Badge: &badge}
	pushType, priority := "alert", "10"
	if n.Silent {
		aps.ContentAvailable, pushType, priority = 1, "background", "5"
	} else {
		aps.Alert, aps.Sound, aps.ThreadID = &apnsAlert{Title: n.Title, Body: n.Body}, "default", n.CollapseID
	}
	payload["aps"] = aps
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("apns: %w", err)
	}
	token, err := a.providerToken(false)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.cfg.URL+"/3/device/"+n.Token, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("apns: %w", err)
	}
	req.Header.Set("authorization", "bearer "+token)
	req.Header.Set("apns-topic", a.cfg.Topic)
	req.Header.Set("apns-push-type", pushType)
	req.Header.Set("apns-priority", priority)
	if n.CollapseID != "" && !n.Silent && len(n.CollapseID) <= apnsMaxCollapseID {
		req.Header.Set("apns-collapse-id", n.CollapseID)
	}
	req.Header.Set("content-type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return Retryable(fmt.Errorf("apns: %w", err))
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil
	}
	var answer struct {
		Reason string `json:"reason"`
	}
	_ = json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&answer)
	switch {
	case resp.StatusCode == http.StatusGone, answer.Reason == "BadDeviceToken", answer.Reason == "Unregistered",
		answer.Reason == "DeviceTokenNotForTopic":
		return fmt.Errorf("apns: %d %s: %w", resp.StatusCode, answer.Reason, ErrInvalidToken)
	case answer.Reason == "ExpiredProviderToken" || answer.Reason == "InvalidProviderToken":
		// Sign a new token and let the retry use it.
		if _, err := a.providerToken(true); err != nil {
			return err
		}
		return Retryable(fmt.Errorf("apns: %d %s", resp.StatusCode, answer.Reason))
	}
	return fmt.Errorf("apns: %w", classify(resp.StatusCode, answer.Reason, resp.Header))
}

// providerToken returns the ES256 provider token, signing a new one when
// the cached one is old or renew is set.
func (a *APNs) providerToken(renew bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	if !renew && a.token != "" && now.Sub(a.signedAt) < apnsTokenAge {
		return a.token, nil
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{"iss": a.cfg.TeamID, "iat": now.Unix()})
	t.Header["kid"] = a.cfg.KeyID
	s, err := t.SignedString(a.key)
	if err != nil {
		return "", fmt.Errorf("apns: sign provider token: %w", err)
	}
	a.token, a.signedAt = s, now
	return s, nil
}
