package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/events/lambdasqs"
	"github.com/parleychat/parley/internal/awsconf"
	"github.com/parleychat/parley/internal/lambdafn"
	"github.com/parleychat/parley/internal/lambdahttp"
)

// lambdaHandler builds the function the Lambda runtime invokes. Building
// happens once per cold start; connections are reused across invocations.
func lambdaHandler(ctx context.Context, name string, getenv func(string) string, stderr io.Writer) (any, func(), error) {
	// The names are shared with the stack, which creates one function each.
	fn, ok := lambdafn.Find(name)
	if !ok {
		return nil, nil, fmt.Errorf("CHAT_LAMBDA_HANDLER=%q: want one of %s", name, strings.Join(lambdafn.Names(), ", "))
	}
	// Workers verify no tokens, and the stack does not let them read the JWT
	// secret: resolving it anyway would fail their cold start.
	needJWT := fn.Worker == ""
	secrets := []string{"DATABASE_URL"}
	if needJWT {
		secrets = append(secrets, "JWT_SECRET")
	}
	if fn.Worker == events.WorkerNotifier {
		secrets = append(secrets, "CHAT_APNS_KEY", "CHAT_FCM_CREDENTIALS")
	}
	getenv, err := withSecrets(ctx, getenv, secrets)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(getenv, false, needJWT)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid configuration: %w", err)
	}
	logger := newLogger(cfg, stderr).With("handler", name)
	a, err := openApp(ctx, cfg, logger, parts{lambda: true, db: true, bus: true})
	if err != nil {
		return nil, nil, err
	}
	switch {
	case name == lambdafn.API:
		return lambdahttp.Handler(a.rest), a.Close, nil
	case lambdafn.IsWebSocket(name):
		routes := a.wsRoutes(logger)
		h := map[string]any{lambdafn.WSConnect: routes.Connect, lambdafn.WSDisconnect: routes.Disconnect, lambdafn.WSDefault: routes.Default}[name]
		return h, a.Close, nil
	default:
		h, err := a.workerHandler(ctx, fn.Worker, nil)
		if err != nil {
			a.Close()
			return nil, nil, err
		}
		return lambdasqs.Handler(events.AsBatch(h), logger), a.Close, nil
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

// secretARNVar names the variable holding a secret setting's Secrets Manager
// ARN, as infra/stack.go sets it ("" for a setting that is not a secret).
func secretARNVar(name string) string {
	switch name {
	case "JWT_SECRET":
		return "JWT_SECRET_ARN"
	case "DATABASE_URL":
		return "DATABASE_URL_SECRET_ARN"
	case "CHAT_APNS_KEY", "CHAT_FCM_CREDENTIALS":
		return name + "_SECRET_ARN"
	}
	return ""
}

// withSecrets resolves each of names (JWT_SECRET, DATABASE_URL) from Secrets
// Manager when only its ARN variable is set, as the stack configures
// Lambdas, so secrets never sit in function configuration. Secrets not in
// names are not read even when their ARN is set: the stack gives every
// function the same variables but lets each read only the secrets it uses.
func withSecrets(ctx context.Context, getenv func(string) string, names []string) (func(string) string, error) {
	resolved := map[string]string{}
	var client *secretsmanager.Client
	for _, name := range names {
		arnVar := secretARNVar(name)
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
		out, err := client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
		if err != nil {
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
