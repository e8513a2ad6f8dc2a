// Package auth verifies the HS256 JWTs issued by the existing auth service
// and issues development tokens of the same shape.
package auth

import (
	"encoding/json"
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

// MinSecretBytes is the shortest secret CheckSecret accepts: HS256's key
// should be as long as its 32-byte output.
const MinSecretBytes = 32

// minSecretSymbols is how many distinct bytes a secret must hold: a random
// 32-byte secret has about 30, hex about 16; "aaaa…" or "abab…" has 1 or 2.
const minSecretSymbols = 8

// CheckSecret refuses a secret that is too short or so repetitive that it
// can be guessed, for servers that verify real users' tokens.
func CheckSecret(secret []byte) error {
	if len(secret) < MinSecretBytes {
		return fmt.Errorf("JWT secret must be at least %d bytes (it has %d)", MinSecretBytes, len(secret))
	}
	var seen [256]bool
	n := 0
	for _, b := range secret {
		if !seen[b] {
			seen[b] = true
			n++
		}
	}
	if n < minSecretSymbols {
		return fmt.Errorf("JWT secret must hold at least %d distinct characters (it has %d): use a random secret", minSecretSymbols, n)
	}
	return nil
}

// UserID returns the user a token was issued for. The user id is the `sub`
// claim or, failing that, `user_id`: a positive integer written in canonical
// decimal, as a JSON number or a string ("42" or 42; not "042", "+42", 42.0
// or 4.2e1). Numbers are read exactly, not through float64, which would turn
// 9007199254740993 into another user. Tokens
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
		jwt.WithJSONNumber(),
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
	var digits string
	switch v := raw.(type) {
	case json.Number:
		digits = v.String()
	case string:
		digits = v
	default:
		return 0, fmt.Errorf("unexpected type %T", raw)
	}
	if !canonicalDecimal(digits) {
		return 0, fmt.Errorf("%q is not a positive integer in canonical decimal", digits)
	}
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("user id %s is out of range", digits)
	}
	return id, nil
}

// canonicalDecimal reports whether s is a positive integer written the one
// way: digits only, no sign, no leading zero.
func canonicalDecimal(s string) bool {
	if s == "" || s[0] == '0' {
		return false
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
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
