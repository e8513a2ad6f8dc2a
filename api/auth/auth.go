// Package auth verifies JWTs: HS256 ones issued by the existing auth
// service (with an overlap for rotating its secret), or RS256/ES256 ones
// checked against an identity provider's JWKS; and it issues HS256
// development tokens.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// ErrUnauthenticated is wrapped by every verification failure.
var ErrUnauthenticated = errors.New("unauthenticated")

// Verifier checks tokens: HS256 ones signed with a shared secret (and,
// during a rotation, a previous secret until a set time), or RS256 and
// ES256 ones signed by a key in a JWKS key set. One verifier has one of
// the two, so a token signed one way is never checked the other way.
type Verifier struct {
	secrets   []hmacSecret // HS256: the current secret, then the previous one
	keys      *KeySet      // RS256/ES256 instead, when set
	previous  *hmacSecret  // given by WithPreviousSecret, checked by the constructor
	issuer    string
	audience  string
	userClaim string
	leeway    time.Duration
	now       func() time.Time
}

// hmacSecret is an HS256 key, accepted before until (zero: always).
type hmacSecret struct {
	key   []byte
	until time.Time
}

// DefaultLeeway is the clock skew allowed on a token's expiry.
const DefaultLeeway = 30 * time.Second

// Option configures a Verifier.
type Option func(*Verifier)

// WithLeeway sets the clock skew allowed on a token's expiry (at least 0).
func WithLeeway(d time.Duration) Option {
	return func(v *Verifier) { v.leeway = max(d, 0) }
}

// WithPreviousSecret also accepts HS256 tokens signed with the secret used
// before the current one, until the moment given: the overlap that lets a
// secret be rotated without refusing every live token at once. A token it
// verifies is valid no later than until, whatever its exp says.
func WithPreviousSecret(secret []byte, until time.Time) Option {
	return func(v *Verifier) { v.previous = &hmacSecret{key: secret, until: until} }
}

// WithIssuer requires the iss claim to be iss (required with a key set).
func WithIssuer(iss string) Option {
	return func(v *Verifier) { v.issuer = iss }
}

// WithAudience requires the aud claim to hold aud (required with a key set).
func WithAudience(aud string) Option {
	return func(v *Verifier) { v.audience = aud }
}

// WithUserIDClaim reads the user id from the named claim only (Cognito's
// sub is a UUID; its user pools carry the id in a custom:… attribute).
// Without it, sub is read or, failing that, user_id.
func WithUserIDClaim(name string) Option {
	return func(v *Verifier) { v.userClaim = name }
}

// NewVerifier verifies HS256 tokens; it refuses secrets too short to be
// safe with HS256.
func NewVerifier(secret []byte, opts ...Option) (*Verifier, error) {
	if len(secret) < 16 {
		return nil, errors.New("JWT secret must be at least 16 bytes")
	}
	v := newVerifier(opts)
	v.secrets = []hmacSecret{{key: secret}}
	if p := v.previous; p != nil {
		switch {
		case len(p.key) < 16:
			return nil, errors.New("previous JWT secret must be at least 16 bytes")
		case string(p.key) == string(secret):
			return nil, errors.New("previous JWT secret is the current one")
		case p.until.IsZero():
			return nil, errors.New("previous JWT secret needs the end of its overlap")
		}
		v.secrets = append(v.secrets, *p)
	}
	return v, nil
}

// NewJWKSVerifier verifies RS256 and ES256 tokens signed by a key in keys,
// whose header names the key (kid). WithIssuer and WithAudience are
// required: an identity provider signs tokens for many applications.
func NewJWKSVerifier(keys *KeySet, opts ...Option) (*Verifier, error) {
	v := newVerifier(opts)
	switch {
	case keys == nil:
		return nil, errors.New("no key set")
	case v.previous != nil:
		return nil, errors.New("a previous secret is for HS256 tokens, not a key set")
	case v.issuer == "":
		return nil, errors.New("a key set needs the expected issuer")
	case v.audience == "":
		return nil, errors.New("a key set needs the expected audience")
	}
	v.keys = keys
	return v, nil
}

func newVerifier(opts []Option) *Verifier {
	v := &Verifier{leeway: DefaultLeeway, now: time.Now}
	for _, o := range opts {
		o(v)
	}
	return v
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

// UserID returns the user a token was issued for. The user id is the
// configured claim or else `sub` or, failing that, `user_id`: a positive
// integer written in canonical decimal, as a JSON number or a string ("42"
// or 42; not "042", "+42", 42.0 or 4.2e1). Numbers are read exactly, not
// through float64, which would turn 9007199254740993 into another user.
// Tokens without an expiry, expired, not signed with the configured
// algorithms or with a bad signature are refused.
func (v *Verifier) UserID(ctx context.Context, token string) (int64, error) {
	c, err := v.Verify(ctx, token)
	return c.UserID, err
}

// Claims is what a verified token says.
type Claims struct {
	UserID int64
	// ValidUntil is the last moment the verifier accepts the token: its
	// expiry plus the clock-skew leeway (or the end of the previous
	// secret's overlap, if sooner). Whatever the token opened (a WebSocket
	// connection) ends then.
	ValidUntil time.Time
}

// Verify checks a token as UserID does and returns its claims. ctx bounds
// a fetch of the key set a token may cause.
func (v *Verifier) Verify(ctx context.Context, token string) (Claims, error) {
	if token == "" {
		return Claims{}, fmt.Errorf("%w: missing token", ErrUnauthenticated)
	}
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.leeway),
		jwt.WithTimeFunc(v.now),
		jwt.WithJSONNumber(),
	}
	if v.issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.issuer))
	}
	if v.audience != "" {
		opts = append(opts, jwt.WithAudience(v.audience))
	}
	if v.keys != nil {
		opts = append(opts, jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg()}))
		claims := jwt.MapClaims{}
		if _, err := jwt.ParseWithClaims(token, claims, v.keyFor(ctx), opts...); err != nil {
			return Claims{}, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
		}
		return v.claims(claims, time.Time{})
	}
	opts = append(opts, jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}))
	var first error
	now := v.now()
	for _, s := range v.secrets {
		if !s.until.IsZero() && !now.Before(s.until) {
			continue // its overlap has ended
		}
		claims := jwt.MapClaims{}
		_, err := jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return s.key, nil }, opts...)
		if err == nil {
			return v.claims(claims, s.until)
		}
		if first == nil || !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			first = err // the reason of the secret that signed it, if one did
		}
		if !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
			break // signed with this secret (or malformed): another will not help
		}
	}
	return Claims{}, fmt.Errorf("%w: %v", ErrUnauthenticated, first)
}

// keyFor finds the key set's key a token names. Each key is for one
// algorithm, which must be the token's.
func (v *Verifier) keyFor(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		kid, ok := t.Header["kid"].(string)
		if !ok || kid == "" {
			return nil, errors.New("token header names no key (kid)")
		}
		k, err := v.keys.key(ctx, kid)
		if err != nil {
			return nil, err
		}
		if k.alg != t.Method.Alg() {
			return nil, fmt.Errorf("key %q is for %s, the token says %s", kid, k.alg, t.Method.Alg())
		}
		return k.key, nil
	}
}

// claims reads a verified token's user and end, capped by until if set.
func (v *Verifier) claims(claims jwt.MapClaims, until time.Time) (Claims, error) {
	exp, err := claims.GetExpirationTime() // required, so present
	if err != nil || exp == nil {
		return Claims{}, fmt.Errorf("%w: exp: %v", ErrUnauthenticated, err)
	}
	end := exp.Add(v.leeway)
	if !until.IsZero() && until.Before(end) {
		end = until
	}
	names := []string{"sub", "user_id"}
	if v.userClaim != "" {
		names = []string{v.userClaim}
	}
	for _, name := range names {
		if raw, ok := claims[name]; ok {
			id, err := parseUserID(raw)
			if err != nil {
				return Claims{}, fmt.Errorf("%w: claim %s: %v", ErrUnauthenticated, name, err)
			}
			return Claims{UserID: id, ValidUntil: end}, nil
		}
	}
	if v.userClaim != "" {
		return Claims{}, fmt.Errorf("%w: token has no %s claim", ErrUnauthenticated, v.userClaim)
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
