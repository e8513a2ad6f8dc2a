package main

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/parleychat/parley/api/auth"
)

// Config is everything the stack takes from `cdk -c key=value`. It is parsed
// and validated once, before any construct exists, so a bad value fails with
// the name of the context key instead of a jsii stack trace.
type Config struct {
	Stage                string   // stage: dev, prod, ...; part of every physical name
	BootstrapDir         string   // bootstrapDir: folder holding the Lambda `bootstrap` binary
	DatabaseURLSecretArn string   // databaseUrlSecretArn: complete ARN of an existing secret
	VpcID                string   // vpcId: the VPC of the existing RDS instance
	SubnetIDs            []string // subnetIds: comma-separated private subnets
	SecurityGroupIDs     []string // securityGroupIds: comma-separated, allowed into RDS
	AlarmEmail           string   // alarmEmail: optional SNS email subscription
	CorsOrigins          []string // corsOrigins: comma-separated, default "*"
	ArchiveRetentionDays int      // archiveRetentionDays: default 365
	WSAccessLogs         bool     // wsAccessLogs: needs the account's API Gateway CloudWatch role
	// configRevision: any new value changes every function's configuration,
	// so Lambda starts fresh environments that re-read the secrets.
	ConfigRevision string

	// Database connections: see connections.go and DEPLOY.md.
	RDSProxy               bool           // rdsProxy: default on for prod/production
	DBInstanceID           string         // dbInstanceId: the RDS instance the proxy fronts
	DBCredentialsSecretArn string         // dbCredentialsSecretArn: {"username","password"} secret the proxy logs in with
	DBMaxConnections       int            // dbMaxConnections: the server's max_connections, default 100
	DBPoolSize             int            // dbPoolSize: connections per Lambda environment, default 2
	ReservedConcurrency    map[string]int // reservedConcurrency: "handler=N,..." over the defaults

	// Push credentials of the notifier, in secrets the operator creates
	// (complete ARNs); a provider whose secret is not given stays off.
	// Expo needs none.
	APNsKeySecretArn        string // apnsKeySecretArn: the .p8 key's contents
	APNsKeyID               string // apnsKeyId
	APNsTeamID              string // apnsTeamId
	APNsTopic               string // apnsTopic: the app's bundle id
	APNsSandbox             bool   // apnsSandbox
	FCMCredentialsSecretArn string // fcmCredentialsSecretArn: a service account key (JSON)

	// Token verification of the functions that take tokens (API and
	// WebSocket routes), as the API reads it (README.md, Authentication).
	JWTPreviousSecretUntil string // jwtPreviousSecretUntil: CHAT_JWT_PREVIOUS_SECRET_UNTIL, RFC 3339
	JWKSURL                string // jwksUrl: CHAT_JWKS_URL; the JWT secret is then not read
	JWTIssuer              string // jwtIssuer: CHAT_JWT_ISSUER
	JWTAudience            string // jwtAudience: CHAT_JWT_AUDIENCE
	JWTUserIDClaim         string // jwtUserIdClaim: CHAT_JWT_USER_ID_CLAIM

	// OTLPEndpoint: OTEL_EXPORTER_OTLP_ENDPOINT of every function, where
	// traces go (otlpEndpoint; default none: tracing off).
	OTLPEndpoint string
}

// Context keys, in one place so docs and errors say the same thing.
const (
	ctxStage            = "stage"
	ctxBootstrapDir     = "bootstrapDir"
	ctxDatabaseURL      = "databaseUrlSecretArn"
	ctxVpcID            = "vpcId"
	ctxSubnetIDs        = "subnetIds"
	ctxSecurityGroupIDs = "securityGroupIds"
	ctxAlarmEmail       = "alarmEmail"
	ctxCorsOrigins      = "corsOrigins"
	ctxArchiveRetention = "archiveRetentionDays"
	ctxWSAccessLogs     = "wsAccessLogs"
	ctxConfigRevision   = "configRevision"
	ctxRDSProxy         = "rdsProxy"
	ctxDBInstanceID     = "dbInstanceId"
	ctxDBCredentials    = "dbCredentialsSecretArn"
	ctxDBMaxConnections = "dbMaxConnections"
	ctxDBPoolSize       = "dbPoolSize"
	ctxReserved         = "reservedConcurrency"
	ctxAPNsKey          = "apnsKeySecretArn"
	ctxAPNsKeyID        = "apnsKeyId"
	ctxAPNsTeamID       = "apnsTeamId"
	ctxAPNsTopic        = "apnsTopic"
	ctxAPNsSandbox      = "apnsSandbox"
	ctxFCMCredentials   = "fcmCredentialsSecretArn"
	ctxJWTPreviousUntil = "jwtPreviousSecretUntil"
	ctxJWKSURL          = "jwksUrl"
	ctxJWTIssuer        = "jwtIssuer"
	ctxJWTAudience      = "jwtAudience"
	ctxJWTUserIDClaim   = "jwtUserIdClaim"
	ctxOTLPEndpoint     = "otlpEndpoint"
)

// maxSecretOverlap is the API's bound on CHAT_JWT_PREVIOUS_SECRET_UNTIL: a
// later time makes every token-verifying function refuse to start.
const maxSecretOverlap = 30 * 24 * time.Hour

const (
	defaultStage                = "dev"
	defaultBootstrapDir         = "../dist/lambda"
	defaultArchiveRetentionDays = 365
	defaultDBMaxConnections     = 100 // a small RDS instance (db.t4g.micro/small) allows about this many
	defaultDBPoolSize           = 2
)

// Stage names end up in bucket-adjacent names, rule names and function names
// (64 chars max), so keep them short and DNS-like.
var stagePattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,19}$`)

// A complete ARN ends in the 6-character suffix Secrets Manager adds; IAM
// grants on a partial ARN would silently match nothing.
var secretArnPattern = regexp.MustCompile(`^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+-[A-Za-z0-9]{6}$`)

// RDS instance identifiers: a letter, then letters, digits and single hyphens.
var dbInstancePattern = regexp.MustCompile(`^[a-zA-Z](-?[a-zA-Z0-9])*$`)

// VPC pieces are checked only for shape (8 or 17 hex digits, as AWS issues
// them); whether they exist is CloudFormation's job.
var (
	vpcIDPattern    = regexp.MustCompile(`^vpc-([0-9a-f]{8}|[0-9a-f]{17})$`)
	subnetIDPattern = regexp.MustCompile(`^subnet-([0-9a-f]{8}|[0-9a-f]{17})$`)
	sgIDPattern     = regexp.MustCompile(`^sg-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

// ParseConfig reads the context through get (tryGetContext in main, a map in
// tests) and applies defaults.
func ParseConfig(get func(key string) any) (Config, error) {
	c := Config{
		Stage:                   stringOr(get(ctxStage), defaultStage),
		BootstrapDir:            stringOr(get(ctxBootstrapDir), defaultBootstrapDir),
		DatabaseURLSecretArn:    stringOr(get(ctxDatabaseURL), ""),
		VpcID:                   stringOr(get(ctxVpcID), ""),
		SubnetIDs:               list(get(ctxSubnetIDs)),
		SecurityGroupIDs:        list(get(ctxSecurityGroupIDs)),
		AlarmEmail:              stringOr(get(ctxAlarmEmail), ""),
		ConfigRevision:          stringOr(get(ctxConfigRevision), ""),
		CorsOrigins:             list(get(ctxCorsOrigins)),
		ArchiveRetentionDays:    defaultArchiveRetentionDays,
		DBInstanceID:            stringOr(get(ctxDBInstanceID), ""),
		DBCredentialsSecretArn:  stringOr(get(ctxDBCredentials), ""),
		DBMaxConnections:        defaultDBMaxConnections,
		DBPoolSize:              defaultDBPoolSize,
		ReservedConcurrency:     map[string]int{},
		APNsKeySecretArn:        stringOr(get(ctxAPNsKey), ""),
		APNsKeyID:               stringOr(get(ctxAPNsKeyID), ""),
		APNsTeamID:              stringOr(get(ctxAPNsTeamID), ""),
		APNsTopic:               stringOr(get(ctxAPNsTopic), ""),
		FCMCredentialsSecretArn: stringOr(get(ctxFCMCredentials), ""),
		JWTPreviousSecretUntil:  stringOr(get(ctxJWTPreviousUntil), ""),
		JWKSURL:                 stringOr(get(ctxJWKSURL), ""),
		JWTIssuer:               stringOr(get(ctxJWTIssuer), ""),
		JWTAudience:             stringOr(get(ctxJWTAudience), ""),
		JWTUserIDClaim:          stringOr(get(ctxJWTUserIDClaim), ""),
		OTLPEndpoint:            stringOr(get(ctxOTLPEndpoint), ""),
	}
	c.RDSProxy = c.IsProd()
	if len(c.CorsOrigins) == 0 {
		c.CorsOrigins = []string{"*"}
	}
	var errs []error
	if v := stringOr(get(ctxArchiveRetention), ""); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("%s: want a number of days (0 = forever), got %q", ctxArchiveRetention, v))
		}
		c.ArchiveRetentionDays = n
	}
	if v := stringOr(get(ctxAPNsSandbox), ""); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: want true or false, got %q", ctxAPNsSandbox, v))
		}
		c.APNsSandbox = b
	}
	if v := stringOr(get(ctxWSAccessLogs), ""); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: want true or false, got %q", ctxWSAccessLogs, v))
		}
		c.WSAccessLogs = b
	}
	if v := stringOr(get(ctxRDSProxy), ""); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: want true or false, got %q", ctxRDSProxy, v))
		}
		c.RDSProxy = b
	}
	for key, dst := range map[string]*int{ctxDBMaxConnections: &c.DBMaxConnections, ctxDBPoolSize: &c.DBPoolSize} {
		if v := stringOr(get(key), ""); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: want a number, got %q", key, v))
			}
			*dst = n
		}
	}
	for _, kv := range list(get(ctxReserved)) {
		h, v, ok := strings.Cut(kv, "=")
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if !ok || err != nil {
			errs = append(errs, fmt.Errorf("%s: want handler=N,..., got %q", ctxReserved, kv))
			continue
		}
		c.ReservedConcurrency[strings.TrimSpace(h)] = n
	}
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	}
	return c, errors.Join(errs...)
}

// Validate checks values that would otherwise fail late, at deploy time.
func (c Config) Validate() error {
	var errs []error
	if !stagePattern.MatchString(c.Stage) {
		errs = append(errs, fmt.Errorf("%s: %q must match %s", ctxStage, c.Stage, stagePattern))
	}
	if c.DatabaseURLSecretArn != "" && !secretArnPattern.MatchString(c.DatabaseURLSecretArn) {
		errs = append(errs, fmt.Errorf("%s: %q is not a complete secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-xxxxxx)", ctxDatabaseURL, c.DatabaseURLSecretArn))
	}
	for key, arn := range map[string]string{ctxAPNsKey: c.APNsKeySecretArn, ctxFCMCredentials: c.FCMCredentialsSecretArn} {
		if arn != "" && !secretArnPattern.MatchString(arn) {
			errs = append(errs, fmt.Errorf("%s: %q is not a complete secret ARN", key, arn))
		}
	}
	// The notifier refuses to start with a key but no id, team or topic.
	if c.APNsKeySecretArn != "" && (c.APNsKeyID == "" || c.APNsTeamID == "" || c.APNsTopic == "") {
		errs = append(errs, fmt.Errorf("%s needs %s, %s and %s", ctxAPNsKey, ctxAPNsKeyID, ctxAPNsTeamID, ctxAPNsTopic))
	}
	// Half a VPC config would put some functions where they cannot reach RDS.
	if c.VpcID != "" || len(c.SubnetIDs) > 0 || len(c.SecurityGroupIDs) > 0 {
		if !vpcIDPattern.MatchString(c.VpcID) {
			errs = append(errs, fmt.Errorf("%s: %q is not a VPC id (needed with %s and %s)", ctxVpcID, c.VpcID, ctxSubnetIDs, ctxSecurityGroupIDs))
		}
		if len(c.SubnetIDs) == 0 {
			errs = append(errs, fmt.Errorf("%s: required with %s", ctxSubnetIDs, ctxVpcID))
		}
		if len(c.SecurityGroupIDs) == 0 {
			errs = append(errs, fmt.Errorf("%s: required with %s", ctxSecurityGroupIDs, ctxVpcID))
		}
		for _, s := range c.SubnetIDs {
			if !subnetIDPattern.MatchString(s) {
				errs = append(errs, fmt.Errorf("%s: %q is not a subnet id", ctxSubnetIDs, s))
			}
		}
		for _, s := range c.SecurityGroupIDs {
			if !sgIDPattern.MatchString(s) {
				errs = append(errs, fmt.Errorf("%s: %q is not a security group id", ctxSecurityGroupIDs, s))
			}
		}
	}
	if c.ArchiveRetentionDays < 0 {
		errs = append(errs, fmt.Errorf("%s: must not be negative", ctxArchiveRetention))
	}
	if c.RDSProxy {
		// On by default for prod: turning it off there is a decision, so it
		// is asked for by name.
		if !c.InVpc() {
			errs = append(errs, fmt.Errorf("%s: the proxy lives in the database's VPC: give %s, %s and %s (or -c %s=false)", ctxRDSProxy, ctxVpcID, ctxSubnetIDs, ctxSecurityGroupIDs, ctxRDSProxy))
		}
		if !dbInstancePattern.MatchString(c.DBInstanceID) {
			errs = append(errs, fmt.Errorf("%s: %q is not an RDS instance identifier (needed with %s=true)", ctxDBInstanceID, c.DBInstanceID, ctxRDSProxy))
		}
		if !secretArnPattern.MatchString(c.DBCredentialsSecretArn) {
			errs = append(errs, fmt.Errorf("%s: %q is not a complete secret ARN (needed with %s=true: the proxy logs in with its username and password)", ctxDBCredentials, c.DBCredentialsSecretArn, ctxRDSProxy))
		}
	}
	if err := c.checkConnections(); err != nil {
		errs = append(errs, err)
	}
	if err := c.checkAuth(time.Now()); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkAuth refuses at synth what the token-verifying functions would
// refuse at their cold start (cmd/chat's authconfig.go), and the OTLP
// endpoint's shape.
func (c Config) checkAuth(now time.Time) error {
	var errs []error
	if c.JWTPreviousSecretUntil != "" {
		until, err := time.Parse(time.RFC3339, c.JWTPreviousSecretUntil)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %q is not an RFC 3339 time (2026-12-02T18:00:00Z)", ctxJWTPreviousUntil, c.JWTPreviousSecretUntil))
		case until.After(now.Add(maxSecretOverlap)):
			errs = append(errs, fmt.Errorf("%s: %s is more than 30 days ahead", ctxJWTPreviousUntil, c.JWTPreviousSecretUntil))
		}
		if c.JWKSURL != "" {
			errs = append(errs, fmt.Errorf("%s rotates the HS256 secret and cannot be used with %s", ctxJWTPreviousUntil, ctxJWKSURL))
		}
	}
	if c.JWKSURL != "" {
		// The functions' own rule (userinfo, fragment, scheme), and https
		// only: no loopback host serves a Lambda its keys.
		if err := auth.CheckJWKSURL(c.JWKSURL); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", ctxJWKSURL, err))
		} else if u, _ := url.Parse(c.JWKSURL); u.Scheme != "https" {
			errs = append(errs, fmt.Errorf("%s: %q is not an https URL", ctxJWKSURL, c.JWKSURL))
		}
		if c.JWTIssuer == "" || c.JWTAudience == "" {
			errs = append(errs, fmt.Errorf("%s needs %s and %s", ctxJWKSURL, ctxJWTIssuer, ctxJWTAudience))
		}
	}
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			errs = append(errs, fmt.Errorf("%s: %q is not an http(s) URL", ctxOTLPEndpoint, c.OTLPEndpoint))
		case strings.HasSuffix(strings.TrimSuffix(u.Path, "/"), "/v1/traces"):
			// It becomes OTEL_EXPORTER_OTLP_ENDPOINT, a base the functions
			// add /v1/traces to: this one would export to .../v1/traces/v1/traces.
			errs = append(errs, fmt.Errorf("%s: %q is the collector's base URL, without /v1/traces (it is added)", ctxOTLPEndpoint, c.OTLPEndpoint))
		}
	}
	return errors.Join(errs...)
}

// AuthEnv is the token verification settings of the functions that take
// tokens, as the variables the API reads.
func (c Config) AuthEnv() map[string]string {
	env := map[string]string{}
	for name, v := range map[string]string{
		"CHAT_JWT_PREVIOUS_SECRET_UNTIL": c.JWTPreviousSecretUntil,
		"CHAT_JWKS_URL":                  c.JWKSURL,
		"CHAT_JWT_ISSUER":                c.JWTIssuer,
		"CHAT_JWT_AUDIENCE":              c.JWTAudience,
		"CHAT_JWT_USER_ID_CLAIM":         c.JWTUserIDClaim,
	} {
		if v != "" {
			env[name] = v
		}
	}
	return env
}

// CheckBootstrap fails early with a hint when the Lambda binary was not built:
// the asset would otherwise fail deep inside the CDK with a bare path.
func (c Config) CheckBootstrap() error {
	p := filepath.Join(c.BootstrapDir, "bootstrap")
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("%s: %s is missing; build it first (see DEPLOY.md) or pass -c %s=DIR: %w", ctxBootstrapDir, p, ctxBootstrapDir, err)
	}
	return nil
}

// InVpc reports whether the functions that talk to PostgreSQL go into a VPC.
func (c Config) InVpc() bool { return c.VpcID != "" }

// IsProd keeps data (table, bucket, secrets, logs) when the stack is deleted.
func (c Config) IsProd() bool { return c.Stage == "prod" || c.Stage == "production" }

// stringOr accepts what the CLI passes (strings) and what cdk.json may hold
// (numbers, booleans).
func stringOr(v any, def string) string {
	switch x := v.(type) {
	case nil:
		return def
	case string:
		if s := strings.TrimSpace(x); s != "" {
			return s
		}
		return def
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	default:
		return fmt.Sprint(x)
	}
}

// list takes "a,b" from the CLI or ["a","b"] from cdk.json.
func list(v any) []string {
	var parts []string
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		for _, e := range x {
			parts = append(parts, fmt.Sprint(e))
		}
	default:
		parts = strings.Split(stringOr(v, ""), ",")
	}
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
