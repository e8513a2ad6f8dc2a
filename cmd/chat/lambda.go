package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/cfn"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/lambdasqs"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/gateway"
	"github.com/parleychat/parley/internal/lambdafn"
	"github.com/parleychat/parley/internal/lambdahttp"
	"github.com/parleychat/parley/internal/metrics"
	"github.com/parleychat/parley/internal/tracing"
)

// lambdaHandler builds the function the Lambda runtime invokes. Building
// happens once per cold start; connections are reused across invocations.
func lambdaHandler(ctx context.Context, name string, getenv func(string) string, stderr io.Writer) (any, func(), error) {
	// The names are shared with the stack, which creates one function each.
	fn, ok := lambdafn.Find(name)
	if !ok {
		return nil, nil, fmt.Errorf("CHAT_LAMBDA_HANDLER=%q: want one of %s", name, strings.Join(lambdafn.Names(), ", "))
	}
	if name == lambdafn.Migrate {
		// Nothing may fail before CloudFormation has its answer: a cold
		// start that dies leaves the deploy waiting for the resource's
		// timeout. So everything happens per request, and errors are reported.
		return cfn.LambdaWrap(migrateResource(getenv, stderr)), func() {}, nil
	}
	// Workers verify no tokens, and the stack does not let them read the JWT
	// secret: resolving it anyway would fail their cold start.
	needJWT := fn.Worker == ""
	secrets := []string{"DATABASE_URL"}
	// With a key set there is no secret to read, even where the stack
	// still names one; during an overlap the previous secret is read too.
	overlap := false
	if needJWT && strings.TrimSpace(getenv("CHAT_JWKS_URL")) == "" {
		secrets = append(secrets, "JWT_SECRET")
		if overlap = previousUntilSet(getenv, time.Now()); overlap {
			secrets = append(secrets, "CHAT_JWT_PREVIOUS_SECRET")
		}
	}
	if fn.Worker == events.WorkerNotifier {
		secrets = append(secrets, "CHAT_APNS_KEY", "CHAT_FCM_CREDENTIALS")
	}
	getenv, err := withSecrets(ctx, getenv, secrets)
	if err != nil {
		return nil, nil, err
	}
	// A secret never rotated has no previous version: there is nothing to
	// overlap with, which must not fail the cold start.
	noPrevious := overlap && getenv("CHAT_JWT_PREVIOUS_SECRET") == ""
	if noPrevious {
		withoutUntil := getenv
		getenv = func(k string) string {
			if k == "CHAT_JWT_PREVIOUS_SECRET_UNTIL" {
				return ""
			}
			return withoutUntil(k)
		}
	}
	cfg, err := loadConfig(getenv, false, needJWT)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid configuration: %w", err)
	}
	logger := newLogger(cfg, stderr).With("handler", name)
	if noPrevious {
		logger.Warn("CHAT_JWT_PREVIOUS_SECRET_UNTIL is set but the JWT secret has no AWSPREVIOUS version: only the current secret is accepted")
	}
	a, err := openApp(ctx, cfg, logger, parts{lambda: true, db: true, bus: true})
	if err != nil {
		return nil, nil, err
	}
	switch {
	case name == lambdafn.API:
		return tracing.Flushing(a.tracing, logger, lambdahttp.Handler(a.tracing.HTTP(a.rest))), a.Close, nil
	case lambdafn.IsWebSocket(name):
		routes := a.tracedRoutes(a.wsRoutes(logger))
		h := map[string]gateway.Handler{lambdafn.WSConnect: routes.Connect, lambdafn.WSDisconnect: routes.Disconnect, lambdafn.WSDefault: routes.Default}[name]
		return tracing.Flushing(a.tracing, logger, h), a.Close, nil
	default:
		h, err := a.workerHandler(ctx, fn.Worker, nil)
		if err != nil {
			a.Close()
			return nil, nil, err
		}
		traced := a.tracing.Worker(fn.Worker, h, logger)
		return tracing.Flushing(a.tracing, logger, lambdasqs.Handler(metrics.EMF(stderr, fn.Worker, events.AsBatch(traced)), logger)), a.Close, nil
	}
}

// migrationsResourceID is the custom resource's physical id: always the
// same, so an update never looks like a replacement to CloudFormation
// (which would then send a Delete for the "old" one).
const migrationsResourceID = "parley-migrations"

// placeholderProperty is set by the stack when it created the database URL
// secret itself: until someone puts a URL in it there is nothing to migrate,
// and failing would roll the first deploy of a stage back.
const placeholderProperty = "DatabaseUrlIsPlaceholder"

// migrateResource applies the migrations on Create and Update, exactly as
// `chat migrate` does, and leaves the database alone on Delete: removing
// the stack never drops data.
func migrateResource(getenv func(string) string, stderr io.Writer) cfn.CustomResourceFunction {
	return func(ctx context.Context, ev cfn.Event) (string, map[string]any, error) {
		logger := slog.New(slog.NewJSONHandler(stderr, nil)).With("handler", lambdafn.Migrate, "request", ev.RequestType)
		if ev.RequestType == cfn.RequestDelete {
			logger.Info("stack resource deleted; the database is left as it is")
			return migrationsResourceID, nil, nil
		}
		env, err := withSecrets(ctx, getenv, []string{"DATABASE_URL"})
		if err != nil {
			return migrationsResourceID, nil, err
		}
		if u := env("DATABASE_URL"); ev.ResourceProperties[placeholderProperty] == "true" &&
			!strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
			logger.Warn("database URL secret still holds its placeholder: no migrations applied")
			return migrationsResourceID, map[string]any{"Result": "skipped: placeholder database URL"}, nil
		}
		cfg, err := loadConfig(env, false, false)
		if err != nil {
			return migrationsResourceID, nil, fmt.Errorf("invalid configuration: %w", err)
		}
		a, err := openApp(ctx, cfg, newLogger(cfg, stderr).With("handler", lambdafn.Migrate),
			parts{db: true, migrate: true, lambda: true})
		if err != nil {
			return migrationsResourceID, nil, fmt.Errorf("migrate: %w", err)
		}
		a.Close()
		return migrationsResourceID, map[string]any{"Result": "migrated"}, nil
	}
}

// runLambda serves invocations until the runtime stops the process.
func runLambda(ctx context.Context, name string, getenv func(string) string, stderr io.Writer) int {
	h, closeFn, err := lambdaHandler(ctx, name, getenv, stderr)
	if err != nil {
		slog.New(slog.NewJSONHandler(stderr, nil)).Error("lambda init failed", "handler", name, "err", err)
		return 1
	}
	defer closeFn()
	lambda.StartWithOptions(h, lambda.WithContext(ctx))
	return 0
}

// secretSource says where a secret setting is in Secrets Manager: the
// variable holding its ARN, as infra/stack.go sets it ("" for a setting
// that is not a secret), and the version stage ("" for the current one).
func secretSource(name string) (arnVar, stage string) {
	switch name {
	case "JWT_SECRET":
		return "JWT_SECRET_ARN", ""
	case "CHAT_JWT_PREVIOUS_SECRET":
		// put-secret-value labels the version it replaces AWSPREVIOUS: the
		// same secret, the same grant, no second secret to manage.
		return "JWT_SECRET_ARN", "AWSPREVIOUS"
	case "DATABASE_URL":
		return "DATABASE_URL_SECRET_ARN", ""
	case "CHAT_APNS_KEY", "CHAT_FCM_CREDENTIALS":
		return name + "_SECRET_ARN", ""
	}
	return "", ""
}

// withSecrets resolves each of names (JWT_SECRET, CHAT_JWT_PREVIOUS_SECRET,
// DATABASE_URL) from Secrets Manager when only its ARN variable is set, as
// the stack configures Lambdas, so secrets never sit in function configuration. Secrets not in
// names are not read even when their ARN is set: the stack gives every
// function the same variables but lets each read only the secrets it uses.
func withSecrets(ctx context.Context, getenv func(string) string, names []string) (func(string) string, error) {
	resolved := map[string]string{}
	var client *secretsmanager.Client
	for _, name := range names {
		arnVar, stage := secretSource(name)
		if arnVar == "" {
			return nil, fmt.Errorf("no secret ARN variable for %s", name)
		}
		arn := getenv(arnVar)
		if getenv(name) != "" || arn == "" {
			continue
		}
		if client == nil {
			cfg, err := awsconf.Load(ctx, awsconf.Options{})
			if err != nil {
				return nil, fmt.Errorf("AWS configuration: %w", err)
			}
			client = secretsmanager.NewFromConfig(cfg)
		}
		in := &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)}
		if stage != "" {
			in.VersionStage = aws.String(stage)
		}
		out, err := client.GetSecretValue(ctx, in)
		var missing *smtypes.ResourceNotFoundException
		if stage != "" && errors.As(err, &missing) {
			continue // no such version: the caller decides what that means
		}
		if err != nil {
			if stage != "" {
				return nil, fmt.Errorf("%s: read %s (version %s, for %s): %w", arnVar, arn, stage, name, err)
			}
			return nil, fmt.Errorf("%s: read %s: %w", arnVar, arn, err)
		}
		resolved[name] = aws.ToString(out.SecretString)
	}
	return func(k string) string {
		if v, ok := resolved[k]; ok {
			return v
		}
		return getenv(k)
	}, nil
}
