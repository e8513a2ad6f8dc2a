package push

import (
	"bytes"
	"context"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleychat/parley/internal/retry"
)

// FCMURL is FCM's API; the send path is appended to it.
const FCMURL = "https://fcm.googleapis.com"

const (
	fcmScope       = "https://www.googleapis.com/auth/firebase.messaging"
	fcmConcurrency = 16
	// fcmTokenMargin renews an access token this long before it expires.
	fcmTokenMargin = 5 * time.Minute
)

// ServiceAccount is the part of a Google service account key file (JSON)
// that the OAuth2 JWT-bearer flow needs.
type ServiceAccount struct {
	Type         string `json:"type"`
	ProjectID    string `json:"project_id"`
	PrivateKeyID string `json:"private_key_id"`
	PrivateKey   string `json:"private_key"`
	ClientEmail  string `json:"client_email"`
	TokenURI     string `json:"token_uri"`
}

// FCM speaks FCM's HTTP v1 API, authorized by OAuth2 access tokens that a
// service account obtains with a signed JWT (RFC 7523) at its token_uri.
type FCM struct {
	sendURL string
	account ServiceAccount
	key     *rsa.PrivateKey
	client  *http.Client
	retry   retry.Policy
	now     func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

var _ Provider = (*FCM)(nil)

// NewFCM parses the service account key file credentials and returns a
// client of the FCM API at base (FCMURL or a stand-in). client nil means
// http.DefaultClient.
func NewFCM(base string, credentials []byte, client *http.Client) (*FCM, error) {
	if err := CheckEndpoint(base); err != nil {
		return nil, err
	}
	var sa ServiceAccount
	if err := json.Unmarshal(credentials, &sa); err != nil {
		return nil, fmt.Errorf("FCM service account JSON: %w", err)
	}
	if sa.Type != "service_account" || sa.ProjectID == "" || sa.ClientEmail == "" || sa.PrivateKey == "" || sa.TokenURI == "" {
		return nil, errors.New("FCM service account JSON: want type service_account with project_id, client_email, private_key and token_uri")
	}
	if err := CheckEndpoint(sa.TokenURI); err != nil {
		return nil, fmt.Errorf("FCM service account token_uri: %w", err)
	}
	key, err := jwt.ParseRSAPrivateKeyFromPEM([]byte(sa.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("FCM service account private_key: %w", err)
	}
	if client == nil {
		client = http.DefaultClient
	}
	sendURL := strings.TrimRight(base, "/") + "/v1/projects/" + url.PathEscape(sa.ProjectID) + "/messages:send"
	return &FCM{sendURL: sendURL, account: sa, key: key, client: client, retry: DefaultRetry(), now: time.Now}, nil
}

// SetRetry replaces the retry policy (tests record waits).
func (f *FCM) SetRetry(p retry.Policy) { f.retry = p }

// Send posts each notification, several at once.
func (f *FCM) Send(ctx context.Context, ns []Notification) []Result {
	return sendEach(ctx, ns, fcmConcurrency, f.retry, f.sendOne)
}

type fcmMessage struct {
	Token        string            `json:"token"`
	Notification *fcmNotification  `json:"notification,omitempty"`
	Data         map[string]string `json:"data,omitempty"`
	Android      fcmAndroid        `json:"android"`
	APNs         *fcmAPNs          `json:"apns,omitempty"`
}

type fcmNotification struct {
	Title string `json:"title,omitempty"`
	Body  string `json:"body,omitempty"`
}

type fcmAndroid struct {
	CollapseKey  string               `json:"collapse_key,omitempty"`
	Priority     string               `json:"priority"`
	Notification *fcmAndroidNotifData `json:"notification,omitempty"`
}

type fcmAndroidNotifData struct {
	Tag               string `json:"tag,omitempty"`
	NotificationCount int    `json:"notification_count"`
}

type fcmAPNs struct {
	Headers map[string]string `json:"headers,omitempty"`
	Payload map[string]any    `json:"payload"`
}

func fcmMessageOf(n Notification) fcmMessage {
	data := map[string]string{}
	for k, v := range n.Data {
		data[k] = v
	}
	// Android has no badge field outside a shown notification: a silent
	// update carries it as data, for the app to apply.
	data["badge"] = strconv.Itoa(n.Badge)
	m := fcmMessage{Token: n.Token, Data: data}
	if n.Silent {
		m.Android = fcmAndroid{Priority: "normal"}
		m.APNs = &fcmAPNs{
			Headers: map[string]string{"apns-push-type": "background", "apns-priority": "5"},
			Payload: map[string]any{"aps": map[string]any{"content-available": 1, "badge": n.Badge}},
		}
		return m
	}
	m.Notification = &fcmNotification{Title: n.Title, Body: n.Body}
	m.Android = fcmAndroid{CollapseKey: n.CollapseID, Priority: "high",
		Notification: &fcmAndroidNotifData{Tag: n.CollapseID, NotificationCount: n.Badge}}
	headers := map[string]string{}
	if n.CollapseID != "" && len(n.CollapseID) <= apnsMaxCollapseID {
		headers["apns-collapse-id"] = n.CollapseID
	}
	m.APNs = &fcmAPNs{Headers: headers, Payload: map[string]any{"aps": map[string]any{"badge": n.Badge, "sound": "default"}}}
	return m
}

func (f *FCM) sendOne(ctx context.Context, n Notification) error {
	body, err := json.Marshal(map[string]any{"message": fcmMessageOf(n)})
	if err != nil {
		return fmt.Errorf("fcm: %w", err)
	}
	token, err := f.accessToken(ctx)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.sendURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("fcm: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return Retryable(fmt.Errorf("fcm: %w", err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var answer struct {
		Error struct {
			Status  string `json:"status"`
			Message string `json:"message"`
			Details []struct {
				Type      string `json:"@type"`
				ErrorCode string `json:"errorCode"`
			} `json:"details"`
		} `json:"error"`
	}
	_ = json.Unmarshal(raw, &answer)
	code := answer.Error.Status
	for _, d := range answer.Error.Details {
		if d.ErrorCode != "" {
			code = d.ErrorCode
		}
	}
	switch {
	case code == "UNREGISTERED":
		return fmt.Errorf("fcm: %d %s: %w", resp.StatusCode, code, ErrInvalidToken)
	case resp.StatusCode == http.StatusUnauthorized:
		// The access token was refused: drop it so the retry gets another.
		f.mu.Lock()
		f.token = ""
		f.mu.Unlock()
		return Retryable(fmt.Errorf("fcm: %d %s", resp.StatusCode, answer.Error.Message))
	}
	return fmt.Errorf("fcm: %w", classify(resp.StatusCode, code+": "+answer.Error.Message, resp.Header))
}

// accessToken returns a cached OAuth2 access token or obtains one.
func (f *FCM) accessToken(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.token != "" && now.Before(f.expires.Add(-fcmTokenMargin)) {
		return f.token, nil
	}
	claims := jwt.MapClaims{"iss": f.account.ClientEmail, "scope": fcmScope, "aud": f.account.TokenURI,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	if f.account.PrivateKeyID != "" {
		t.Header["kid"] = f.account.PrivateKeyID
	}
	assertion, err := t.SignedString(f.key)
	if err != nil {
		return "", fmt.Errorf("fcm: sign token request: %w", err)
	}
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {assertion}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.account.TokenURI, strings.NewReader(form.Encode()))
	if err != nil {
		return "", fmt.Errorf("fcm: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := f.client.Do(req)
	if err != nil {
		return "", Retryable(fmt.Errorf("fcm: token request: %w", err))
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fcm: token request: %w", classify(resp.StatusCode, strings.TrimSpace(string(raw)), resp.Header))
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("fcm: token answer without access_token: %s", strings.TrimSpace(string(raw)))
	}
	f.token, f.expires = tok.AccessToken, now.Add(time.Duration(tok.ExpiresIn)*time.Second)
	return f.token, nil
}
