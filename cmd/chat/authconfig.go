package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/parleychat/parley/api/auth"
)

// maxSecretOverlap bounds CHAT_JWT_PREVIOUS_SECRET_UNTIL: the overlap need
// only outlive the tokens signed with the previous secret, and one left
// configured by mistake must not keep an old secret alive for good.
const maxSecretOverlap = 30 * 24 * time.Hour

// jwtConfig is how tokens are verified beyond JWT_SECRET: a previous
// secret during a rotation, or a JWKS key set instead of any secret.
type jwtConfig struct {
	// PreviousSecret (CHAT_JWT_PREVIOUS_SECRET; on Lambda the JWT secret's
	// AWSPREVIOUS version) is accepted until PreviousUntil
	// (CHAT_JWT_PREVIOUS_SECRET_UNTIL, RFC 3339). Empty once that has passed.
	PreviousSecret string
	PreviousUntil  time.Time

	JWKSURL        string        // CHAT_JWKS_URL: verify RS256/ES256 tokens against this key set instead
	Issuer         string        // CHAT_JWT_ISSUER: required iss (required with CHAT_JWKS_URL)
	Audience       string        // CHAT_JWT_AUDIENCE: required aud (required with CHAT_JWKS_URL)
	UserIDClaim    string        // CHAT_JWT_USER_ID_CLAIM: the claim holding the user id; default sub, then user_id
	JWKSRefresh    time.Duration // CHAT_JWKS_REFRESH_INTERVAL, default 1h
	JWKSMinRefresh time.Duration // CHAT_JWKS_MIN_REFRESH_INTERVAL, default 1m
	JWKSTimeout    time.Duration // CHAT_JWKS_FETCH_TIMEOUT, default 5s
}

// previousUntilSet reports whether an overlap is configured and not over,
// so the previous secret is needed (Lambda reads it from Secrets Manager).
func previousUntilSet(getenv func(string) string, now time.Time) bool {
	until, err := time.Parse(time.RFC3339, strings.TrimSpace(getenv("CHAT_JWT_PREVIOUS_SECRET_UNTIL")))
	return err == nil && now.Before(until)
}

// loadJWT reads JWT_SECRET and the variables of jwtConfig; dur reads a
// duration as loadConfig's other settings are read.
func (c *Config) loadJWT(getenv func(string) string, dev, needJWT bool, dur func(string, time.Duration) time.Duration) []error {
	var errs []error
	j := &c.JWT
	j.JWKSURL = strings.TrimSpace(getenv("CHAT_JWKS_URL"))
	j.Issuer = strings.TrimSpace(getenv("CHAT_JWT_ISSUER"))
	j.Audience = strings.TrimSpace(getenv("CHAT_JWT_AUDIENCE"))
	j.UserIDClaim = strings.TrimSpace(getenv("CHAT_JWT_USER_ID_CLAIM"))
	previous := getenv("CHAT_JWT_PREVIOUS_SECRET")
	untilText := strings.TrimSpace(getenv("CHAT_JWT_PREVIOUS_SECRET_UNTIL"))

	if j.JWKSURL != "" {
		// One way of verifying at a time: a token is never checked with a
		// kind of key its issuer did not mean.
		if getenv("JWT_SECRET") != "" {
			errs = append(errs, errors.New("JWT_SECRET and CHAT_JWKS_URL are both set: tokens are verified either with the HS256 secret or against the key set; unset one"))
		}
		if previous != "" || untilText != "" {
			errs = append(errs, errors.New("CHAT_JWT_PREVIOUS_SECRET(_UNTIL) rotates the HS256 secret and cannot be used with CHAT_JWKS_URL (the key set carries its own rotation)"))
		}
		if err := auth.CheckJWKSURL(j.JWKSURL); err != nil {
			errs = append(errs, fmt.Errorf("CHAT_JWKS_URL: %w", err))
		}
		if j.Issuer == "" {
			errs = append(errs, errors.New("CHAT_JWT_ISSUER is required with CHAT_JWKS_URL: the iss of your tokens, e.g. https://cognito-idp.REGION.amazonaws.com/POOL_ID"))
		}
		if j.Audience == "" {
			errs = append(errs, errors.New("CHAT_JWT_AUDIENCE is required with CHAT_JWKS_URL: the aud of your tokens (Cognito: the app client id)"))
		}
		j.JWKSRefresh = dur("CHAT_JWKS_REFRESH_INTERVAL", auth.DefaultJWKSRefresh)
		j.JWKSMinRefresh = dur("CHAT_JWKS_MIN_REFRESH_INTERVAL", auth.DefaultJWKSMinRefresh)
		j.JWKSTimeout = dur("CHAT_JWKS_FETCH_TIMEOUT", auth.DefaultJWKSTimeout)
		if j.JWKSMinRefresh > j.JWKSRefresh {
			errs = append(errs, fmt.Errorf("CHAT_JWKS_MIN_REFRESH_INTERVAL=%s is longer than CHAT_JWKS_REFRESH_INTERVAL=%s", j.JWKSMinRefresh, j.JWKSRefresh))
		}
		return errs
	}

	c.JWTSecret = getenv("JWT_SECRET")
	if c.JWTSecret == "" && dev {
		c.JWTSecret, c.DevSecretInUse = devJWTSecret, true
	}
	if c.JWTSecret == "" && needJWT {
		errs = append(errs, errors.New("JWT_SECRET is required (the HS256 secret shared with the auth service), or CHAT_JWKS_URL to verify tokens against a key set"))
	} else if err := checkSecret("JWT_SECRET", c.JWTSecret, dev); err != nil {
		errs = append(errs, err)
	}

	if c.JWTSecret == "" || (previous == "" && untilText == "") {
		// A worker verifies no tokens: the stack may give it the overlap's
		// end as it gives every function, without the secret.
		return errs
	}
	until, err := time.Parse(time.RFC3339, untilText)
	now := time.Now()
	switch {
	case untilText == "":
		return append(errs, errors.New("CHAT_JWT_PREVIOUS_SECRET needs CHAT_JWT_PREVIOUS_SECRET_UNTIL: the RFC 3339 time (e.g. 2026-12-02T18:00:00Z) when it stops being accepted"))
	case err != nil:
		return append(errs, fmt.Errorf("CHAT_JWT_PREVIOUS_SECRET_UNTIL=%q: want an RFC 3339 time such as 2026-12-02T18:00:00Z", untilText))
	case !now.Before(until):
		return errs // the overlap is over: the previous secret is refused, so not needed
	case until.Sub(now) > maxSecretOverlap:
		return append(errs, fmt.Errorf("CHAT_JWT_PREVIOUS_SECRET_UNTIL=%s: at most %d days ahead (the overlap need only outlive the tokens signed with the previous secret)", untilText, maxSecretOverlap/(24*time.Hour)))
	case previous == "":
		return append(errs, errors.New("CHAT_JWT_PREVIOUS_SECRET_UNTIL is set but CHAT_JWT_PREVIOUS_SECRET is not (with JWT_SECRET_ARN on Lambda it is the secret's AWSPREVIOUS version)"))
	case previous == c.JWTSecret:
		return append(errs, errors.New("CHAT_JWT_PREVIOUS_SECRET is JWT_SECRET: set JWT_SECRET to the new secret and CHAT_JWT_PREVIOUS_SECRET to the old one"))
	}
	if err := checkSecret("CHAT_JWT_PREVIOUS_SECRET", previous, dev); err != nil {
		return append(errs, err)
	}
	j.PreviousSecret, j.PreviousUntil = previous, until
	return errs
}

// checkSecret refuses, outside chat dev, a secret anyone may know or guess.
func checkSecret(name, secret string, dev bool) error {
	switch {
	case secret == "":
		return nil
	case dev:
		if len(secret) < 16 {
			return fmt.Errorf("%s must be at least 16 bytes", name)
		}
	case secret == devJWTSecret:
		return fmt.Errorf("%s is the published development secret, which only chat dev may use: set the secret shared with the auth service", name)
	default:
		if err := auth.CheckSecret([]byte(secret)); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// verifiesTokens: the process is configured to verify tokens (workers are
// not).
func (c Config) verifiesTokens() bool { return c.JWTSecret != "" || c.JWT.JWKSURL != "" }

// verifier builds the token verifier the configuration describes. With a
// key set it fetches the keys once now, so the first requests need not;
// a failure there is logged and retried when a token needs a key.
func (c Config) verifier(ctx context.Context, logger *slog.Logger) (*auth.Verifier, error) {
	j := c.JWT
	var opts []auth.Option
	if j.Issuer != "" {
		opts = append(opts, auth.WithIssuer(j.Issuer))
	}
	if j.Audience != "" {
		opts = append(opts, auth.WithAudience(j.Audience))
	}
	if j.UserIDClaim != "" {
		opts = append(opts, auth.WithUserIDClaim(j.UserIDClaim))
	}
	if j.JWKSURL == "" {
		if j.PreviousSecret != "" {
			opts = append(opts, auth.WithPreviousSecret([]byte(j.PreviousSecret), j.PreviousUntil))
		}
		v, err := auth.NewVerifier([]byte(c.JWTSecret), opts...)
		if err != nil {
			return nil, fmt.Errorf("JWT_SECRET: %w", err)
		}
		return v, nil
	}
	keys, err := auth.NewKeySet(auth.KeySetConfig{
		URL: j.JWKSURL, Refresh: j.JWKSRefresh, MinRefresh: j.JWKSMinRefresh, Timeout: j.JWKSTimeout, Logger: logger,
	})
	if err != nil {
		return nil, fmt.Errorf("CHAT_JWKS_URL: %w", err)
	}
	v, err := auth.NewJWKSVerifier(keys, opts...)
	if err != nil {
		return nil, fmt.Errorf("CHAT_JWKS_URL: %w", err)
	}
	_ = keys.Refresh(ctx) // logged by the key set
	return v, nil
}
