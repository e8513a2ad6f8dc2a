// Package auth verifies the HS256 JWTs issued by the existing auth service
// and issues development tokens of the same shape.
package auth

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthenticated is wrapped by every verification failure.
var ErrUnauthenticated = errors.New("unauthenticated")

// Verifier checks tokens signed with a shared secret.
type Verifier struct {
	secret []byte
	leeway time.Duration
	now    func() time.Time
}

// DefaultLeeway is the clock skew allowed on a token's expiry.
const DefaultLeeway = 30 * time.Second

// Option configures a Verifier.
type Option func(*Verifier)

// WithLeeway sets the clock skew allowed on a token's expiry (at least 0).
func WithLeeway(d time.Duration) Option {
	return func(v *Verifier) { v.leeway = max(d, 0) }
}

// NewVerifier refuses secrets too short to be safe with HS256.
func NewVerifier(secret []byte, opts ...Option) (*Verifier, error) {
	if len(secret) < 16 {
		return nil, errors.New("JWT secret must be at least 16 bytes")
	}
	v := &Verifier{secret: secret, leeway: DefaultLeeway, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	return v, nil
}

// UserID returns the user a token was issued for. The user id is the `sub`
// claim (an integer or a numeric string) or, failing that, `user_id`. Tokens
// without an expiry, expired, not signed with HS256 or with a bad signature
// are refused.
func (v *Verifier) UserID(token string) (int64, error) {
	c, err := v.Verify(token)
	return c.UserID, err
}

// Claims is what a verified token says.
type Claims struct {
	UserID int64
	// ValidUntil is the last moment the verifier accepts the token: its
	// expiry plus the clock-skew leeway. Whatever the token opened (a
	// WebSocket connection) ends then.
	ValidUntil time.Time
}

// Verify checks a token as UserID does and returns its claims.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, fmt.Errorf("%w: missing token", ErrUnauthenticated)
	}
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return v.secret, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	exp, err := claims.GetExpirationTime() // required, so present
	if err != nil || exp == nil {
		return Claims{}, fmt.Errorf("%w: exp: %v", ErrUnauthenticated, err)
	}
	for _, name := range []string{"sub", "user_id"} {
		if raw, ok := claims[name]; ok {
			id, err := parseUserID(raw)
			if err != nil {
				return Claims{}, fmt.Errorf("%w: claim %s: %v", ErrUnauthenticated, name, err)
			}
			return Claims{UserID: id, ValidUntil: exp.Add(v.leeway)}, nil
		}
	}
	return Claims{}, fmt.Errorf("%w: token has neither sub nor user_id", ErrUnauthenticated)
}

func parseUserID(raw any) (int64, error) {
	var id int64
	switch v := raw.(type) {
	case float64:
		if v != float64(int64(v)) {
			return 0, fmt.Errorf("%v is not an integer", v)
		}
		id = int64(v)
	case string:
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a numeric user id", v)
		}
		id = n
	default:
		return 0, fmt.Errorf("unexpected type %T", raw)
	}
	if id <= 0 {
		return 0, fmt.Errorf("user id %d is not positive", id)
	}
	return id, nil
}

// Issue signs a token for userID valid for ttl, shaped like the auth
// service's (numeric string sub). Used by `chat token` and tests.
func Issue(secret []byte, userID int64, ttl time.Duration, now time.Time) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": strconv.FormatInt(userID, 10),
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	})
	s, err := t.SignedString(secret)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}
