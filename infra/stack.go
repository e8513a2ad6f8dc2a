package main

import (
	"maps"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambdaeventsources"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/constructs-go/constructs/v10"
	"github.com/aws/jsii-runtime-go"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/lambdafn"
	"github.com/parleychat/parley/internal/media/mediakeys"
)

// StackName is one stack per stage.
func StackName(stage string) string { return "ParleyChat-" + stage }

// NewChatStack builds the whole AWS side of the chat for one stage.
func NewChatStack(scope constructs.Construct, cfg Config, props *awscdk.StackProps) awscdk.Stack {
	if props == nil {
		props = &awscdk.StackProps{}
	}
	if props.Description == nil {
		props.Description = jsii.String("Parley chat backend (" + cfg.Stage + ")")
	}
	stack := awscdk.NewStack(scope, jsii.String(StackName(cfg.Stage)), props)
	awscdk.Tags_Of(stack).Add(jsii.String("app"), jsii.String("parley"), nil)
	awscdk.Tags_Of(stack).Add(jsii.String("stage"), jsii.String(cfg.Stage), nil)

	table := newConnectionsTable(stack, cfg)
	bucket := newMediaBucket(stack, cfg)
	jwtSecret := newJwtSecret(stack, cfg)
	dbSecret, dbPlaceholder := databaseURLSecret(stack, cfg)
	bus, archive := newEventBus(stack, cfg)
	wsAPI, wsStage := newWebSocketAPI(stack, cfg)
	wsEndpoint := managementEndpoint(stack, wsAPI, cfg.Stage)

	env := map[string]*string{
		"CHAT_TRANSPORT":          jsii.String("aws"),
		"CHAT_EVENT_BUS_NAME":     bus.EventBusName(),
		"JWT_SECRET_ARN":          jwtSecret.SecretArn(),
		"DATABASE_URL_SECRET_ARN": dbSecret.SecretArn(),
		"CHAT_CONNECTIONS_TABLE":  table.TableName(),
		"CHAT_S3_BUCKET":          bucket.BucketName(),
		"CHAT_LOG_LEVEL":          jsii.String("info"),
	}
	if cfg.ConfigRevision != "" {
		env["CHAT_CONFIG_REVISION"] = jsii.String(cfg.ConfigRevision)
	}
	if cfg.OTLPEndpoint != "" {
		env["OTEL_EXPORTER_OTLP_ENDPOINT"] = jsii.String(cfg.OTLPEndpoint)
	}
	net := importNetwork(stack, cfg)
	fns := newFunctionFactory(stack, cfg, env, net, newDatabaseProxy(stack, cfg, net))
	migrateFn := fns.New(functionSpec{ID: "MigrateFunction", Handler: lambdafn.Migrate, MemoryMB: 256, TimeoutSec: migrateTimeoutSec})
	dbSecret.GrantRead(migrateFn, nil)
	migrations := newMigrations(stack, cfg, migrateFn, dbPlaceholder)
	wsEnv := map[string]*string{"CHAT_WS_MANAGEMENT_ENDPOINT": wsEndpoint}

	// Edge functions: validate, authorize, publish. They never post to
	// connections themselves; fanout does.
	edge := func(id, handler string, timeout float64) awslambda.Function {
		spec := functionSpec{ID: id, Handler: handler, MemoryMB: 256, TimeoutSec: timeout, Env: map[string]*string{}}
		if lambdafn.IsWebSocket(handler) {
			maps.Copy(spec.Env, wsEnv)
		}
		for k, v := range cfg.AuthEnv() {
			spec.Env[k] = jsii.String(v)
		}
		fn := fns.New(spec)
		bus.GrantPutEventsTo(fn, nil)
		table.GrantReadWriteData(fn)
		if cfg.JWKSURL == "" { // with a key set the secret is not read
			jwtSecret.GrantRead(fn, nil)
		}
		dbSecret.GrantRead(fn, nil)
		return fn
	}
	wsConnect := edge("WsConnectFunction", lambdafn.WSConnect, 10)
	wsDisconnect := edge("WsDisconnectFunction", lambdafn.WSDisconnect, 10)
	wsDefault := edge("WsDefaultFunction", lambdafn.WSDefault, 10)
	// Under the HTTP API's 30 s integration limit.
	apiFn := edge("ApiFunction", lambdafn.API, 29)
	grantMedia(apiFn, bucket, mediakeys.Upload) // multipart uploads and presigned URLs

	addWebSocketRoutes(wsAPI, wsConnect, wsDisconnect, wsDefault)
	httpAPI, httpStage := newHTTPAPI(stack, cfg, apiFn)

	al := newAlarms(stack, cfg)
	functions := []awslambda.Function{wsConnect, wsDisconnect, wsDefault, apiFn}
	var pipes []pipeline
	for _, w := range Workers() {
		p := newPipeline(stack, cfg, bus, w)
		spec := functionSpec{
			ID: idPart(w.Name) + "Function", Handler: w.Handler,
			MemoryMB: w.MemoryMB, TimeoutSec: w.TimeoutSec,
		}
		switch w.Name {
		case events.WorkerFanout:
			spec.Env = wsEnv
		case events.WorkerNotifier:
			spec.Env = pushEnv(cfg)
		}
		fn := fns.New(spec)
		fn.AddEventSource(awslambdaeventsources.NewSqsEventSource(p.Queue, &awslambdaeventsources.SqsEventSourceProps{
			BatchSize:         jsii.Number(10),
			MaxBatchingWindow: awscdk.Duration_Seconds(jsii.Number(w.BatchWindowSec)),
			// One bad event fails alone instead of re-running its whole batch.
			ReportBatchItemFailures: jsii.Bool(true),
			// No more pollers than the function may run: beyond its
			// reserved concurrency they would only be throttled.
			MaxConcurrency: jsii.Number(cfg.Concurrency(w.Handler)),
		}))
		dbSecret.GrantRead(fn, nil)
		switch w.Name {
		case events.WorkerPersister:
			bus.GrantPutEventsTo(fn, nil) // FeedAppended
		case events.WorkerFanout:
			table.GrantReadWriteData(fn) // find recipients' connections, drop stale ones
			fn.AddToRolePolicy(manageConnections(stack, wsAPI.ApiId(), cfg.Stage))
			bus.GrantPutEventsTo(fn, nil) // MessageDelivered, PushRequested
		case events.WorkerThumbnailer:
			// Unsend deletes a sent message's original and thumbnail.
			grantMedia(fn, bucket, mediakeys.Prefix)
			bus.GrantPutEventsTo(fn, nil) // ThumbnailReady
		case events.WorkerNotifier:
			grantPushSecrets(stack, cfg, fn) // it publishes nothing
		}
		functions = append(functions, fn)
		pipes = append(pipes, p)
	}

	for _, fn := range functions {
		fn.Node().AddDependency(migrations)
	}
	functions = append(functions, migrateFn)
	al.WatchAll(pipes, functions, wsStage, httpAPI)
	addOutputs(stack, cfg, outputs{
		wsStage: wsStage, httpStage: httpStage, bucket: bucket, bus: bus, archive: archive,
		jwtSecret: jwtSecret, dbSecret: dbSecret, dbPlaceholder: dbPlaceholder,
		table: table, alarmTopic: al.topic, pipes: pipes,
	})
	return stack
}

// manageConnections lets fanout post to, read and drop any connection of this
// API's stage, and nothing else on execute-api.
func manageConnections(stack awscdk.Stack, apiID *string, stage string) awsiam.PolicyStatement {
	return awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions: jsii.Strings("execute-api:ManageConnections"),
		Resources: jsii.Strings(*stack.FormatArn(&awscdk.ArnComponents{
			Service:      jsii.String("execute-api"),
			Resource:     apiID,
			ResourceName: jsii.String(stage + "/*/@connections/*"),
			ArnFormat:    awscdk.ArnFormat_SLASH_RESOURCE_NAME,
		})),
	})
}

// idPart turns a worker name into a CloudFormation id part: fanout → Fanout.
func idPart(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// pushEnv is the notifier's provider settings; its credentials are read
// from Secrets Manager at cold start (the *_SECRET_ARN variables).
func pushEnv(cfg Config) map[string]*string {
	env := map[string]*string{}
	if cfg.APNsKeySecretArn != "" {
		env["CHAT_APNS_KEY_SECRET_ARN"] = jsii.String(cfg.APNsKeySecretArn)
		env["CHAT_APNS_KEY_ID"] = jsii.String(cfg.APNsKeyID)
		env["CHAT_APNS_TEAM_ID"] = jsii.String(cfg.APNsTeamID)
		env["CHAT_APNS_TOPIC"] = jsii.String(cfg.APNsTopic)
		if cfg.APNsSandbox {
			env["CHAT_APNS_SANDBOX"] = jsii.String("true")
		}
	}
	if cfg.FCMCredentialsSecretArn != "" {
		env["CHAT_FCM_CREDENTIALS_SECRET_ARN"] = jsii.String(cfg.FCMCredentialsSecretArn)
	}
	return env
}

// grantPushSecrets lets the notifier, and only it, read the push
// credentials' secrets.
func grantPushSecrets(stack awscdk.Stack, cfg Config, fn awslambda.Function) {
	for id, arn := range map[string]string{"ApnsKeySecret": cfg.APNsKeySecretArn, "FcmCredentialsSecret": cfg.FCMCredentialsSecretArn} {
		if arn != "" {
			awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String(id), jsii.String(arn)).GrantRead(fn, nil)
		}
	}
}
