package main

import (
	"strconv"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/jsii-runtime-go"

	"github.com/parleychat/parley/internal/lambdafn"
	"github.com/parleychat/parley/internal/media/mediakeys"
)

// functionFactory builds every Lambda from the one `chat` binary; only
// CHAT_LAMBDA_HANDLER, sizing and permissions differ.
type functionFactory struct {
	stack awscdk.Stack
	cfg   Config
	code  awslambda.Code
	env   map[string]*string // common to every function
	net   *lambdaNetwork     // nil: no VPC
	// dbHost is the RDS Proxy endpoint (CHAT_DB_HOST); nil without a proxy.
	dbHost *string
}

func newFunctionFactory(stack awscdk.Stack, cfg Config, env map[string]*string, net *lambdaNetwork, dbHost *string) *functionFactory {
	return &functionFactory{
		stack: stack,
		cfg:   cfg,
		// One asset, uploaded once, shared by every function.
		code:   awslambda.Code_FromAsset(jsii.String(cfg.BootstrapDir), nil),
		env:    env,
		net:    net,
		dbHost: dbHost,
	}
}

// FunctionName is stable so logs and metrics are easy to find by hand.
func FunctionName(stage, handler string) string { return "parley-" + stage + "-" + handler }

type functionSpec struct {
	ID         string
	Handler    string
	MemoryMB   float64
	TimeoutSec float64
	Env        map[string]*string // on top of the common env
}

func (f *functionFactory) New(s functionSpec) awslambda.Function {
	env := map[string]*string{"CHAT_LAMBDA_HANDLER": jsii.String(s.Handler)}
	for k, v := range f.env {
		env[k] = v
	}
	for k, v := range s.Env {
		env[k] = v
	}
	// One pool per execution environment: see connections.go.
	env["CHAT_DB_MAX_CONNS"] = jsii.String(strconv.Itoa(f.cfg.PoolSize(s.Handler)))
	// Migrations talk to the instance itself: they hold an advisory lock for
	// their whole run, which would pin a proxy connection anyway.
	if f.dbHost != nil && s.Handler != lambdafn.Migrate {
		env["CHAT_DB_HOST"] = f.dbHost
	}
	name := FunctionName(f.cfg.Stage, s.Handler)
	// An explicit log group gives retention without the log-retention custom
	// resource (which would add a Node.js Lambda to the stack).
	logs := awslogs.NewLogGroup(f.stack, jsii.String(s.ID+"Logs"), &awslogs.LogGroupProps{
		LogGroupName:  jsii.String("/aws/lambda/" + name),
		Retention:     awslogs.RetentionDays_ONE_MONTH,
		RemovalPolicy: removalPolicy(f.cfg),
	})
	props := &awslambda.FunctionProps{
		FunctionName: jsii.String(name),
		Description:  jsii.String("Parley chat: " + s.Handler),
		Runtime:      awslambda.Runtime_PROVIDED_AL2023(),
		Architecture: awslambda.Architecture_ARM_64(),
		Handler:      jsii.String("bootstrap"),
		Code:         f.code,
		MemorySize:   jsii.Number(s.MemoryMB),
		Timeout:      awscdk.Duration_Seconds(jsii.Number(s.TimeoutSec)),
		Environment:  &env,
		LogGroup:     logs,
		// Caps this function's share of the database (and of the account).
		ReservedConcurrentExecutions: jsii.Number(f.cfg.Concurrency(s.Handler)),
	}
	// Every function reads or writes PostgreSQL, so all of them go where RDS is.
	if f.net != nil {
		props.Vpc = f.net.Vpc
		props.VpcSubnets = f.net.Subnets
		props.SecurityGroups = &f.net.SecurityGroups
	}
	return awslambda.NewFunction(f.stack, jsii.String(s.ID), props)
}

// grantMedia allows get/put under chat/ only, delete under deletes only,
// and listing the bucket (for 404s, below): no other prefix. The API
// deletes under chat/upload/ (a verified upload's original, once copied
// out); the thumbnailer, which carries out unsend, under chat/ (a sent
// message's original and its thumbnail).
func grantMedia(fn awslambda.Function, bucket awss3.IBucket, deletes string) {
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:GetObject", "s3:PutObject"),
		Resources: jsii.Strings(*bucket.ArnForObjects(jsii.String(mediakeys.Prefix + "*"))),
	}))
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:DeleteObject"),
		Resources: jsii.Strings(*bucket.ArnForObjects(jsii.String(deletes + "*"))),
	}))
	// S3 answers a HEAD of a missing key with 404 only to a caller that may
	// list the bucket, and with 403 to others, which the app cannot tell
	// from a refusal: Verify asks whether an upload was copied out already.
	fn.AddToRolePolicy(awsiam.NewPolicyStatement(&awsiam.PolicyStatementProps{
		Actions:   jsii.Strings("s3:ListBucket"),
		Resources: jsii.Strings(*bucket.BucketArn()),
	}))
}
