package main

import (
	"fmt"
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsec2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsrds"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"

	"github.com/parleychat/parley/db"
)

// pgPort is where both RDS and its proxy listen.
const pgPort = 5432

// newDatabaseProxy puts an RDS Proxy in front of the existing instance, so
// a burst of cold starts shares a bounded set of server connections instead
// of each opening its own TLS session to RDS. It returns the endpoint the
// functions use (CHAT_DB_HOST), or nil when the stage has no proxy.
func newDatabaseProxy(stack awscdk.Stack, cfg Config, net *lambdaNetwork) *string {
	if !cfg.RDSProxy {
		return nil
	}
	// Only the identifier and the engine family are read by the proxy
	// target; the address is required by the import, never used.
	instance := awsrds.DatabaseInstance_FromDatabaseInstanceAttributes(stack, jsii.String("Database"), &awsrds.DatabaseInstanceAttributes{
		InstanceIdentifier:      jsii.String(cfg.DBInstanceID),
		InstanceEndpointAddress: jsii.String(cfg.DBInstanceID + ".unused"),
		Port:                    jsii.Number(pgPort),
		SecurityGroups:          &net.SecurityGroups,
		Engine:                  awsrds.DatabaseInstanceEngine_POSTGRES(),
	})
	// The proxy's own group admits the functions' groups. It is also a
	// member of those groups, which the RDS group already admits (a
	// prerequisite), so the stack never edits a group it does not own.
	own := awsec2.NewSecurityGroup(stack, jsii.String("DatabaseProxySecurityGroup"), &awsec2.SecurityGroupProps{
		Vpc:              net.Vpc,
		Description:      jsii.String("Parley " + cfg.Stage + ": RDS Proxy, reachable from the chat functions"),
		AllowAllOutbound: jsii.Bool(true),
	})
	for i, id := range cfg.SecurityGroupIDs {
		own.AddIngressRule(awsec2.Peer_SecurityGroupId(jsii.String(id), nil), awsec2.Port_Tcp(jsii.Number(pgPort)),
			jsii.String(fmt.Sprintf("chat functions (group %d)", i)), nil)
	}
	groups := append([]awsec2.ISecurityGroup{own}, net.SecurityGroups...)
	creds := awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("DatabaseCredentialsSecret"), jsii.String(cfg.DBCredentialsSecretArn))
	proxy := awsrds.NewDatabaseProxy(stack, jsii.String("DatabaseProxy"), &awsrds.DatabaseProxyProps{
		ProxyTarget:    awsrds.ProxyTarget_FromInstance(instance),
		Secrets:        &[]awssecretsmanager.ISecret{creds},
		DbProxyName:    jsii.String("parley-" + cfg.Stage),
		Vpc:            net.Vpc,
		VpcSubnets:     net.Subnets,
		SecurityGroups: &groups,
		RequireTLS:     jsii.Bool(true),
		// What the proxy may open on the server, in percent of its
		// max_connections: the rest is the operators' headroom.
		MaxConnectionsPercent:     jsii.Number(proxyMaxConnectionsPercent(cfg)),
		MaxIdleConnectionsPercent: jsii.Number(10),
		// A request waits this long for a free server connection, then fails
		// (and is retried by its client or by SQS).
		BorrowTimeout:     awscdk.Duration_Seconds(jsii.Number(10)),
		IdleClientTimeout: awscdk.Duration_Minutes(jsii.Number(30)),
	})
	return proxy.Endpoint()
}

// proxyMaxConnectionsPercent leaves dbHeadroom connections of the server
// to everyone but the proxy.
func proxyMaxConnectionsPercent(cfg Config) int {
	return 100 * (cfg.DBMaxConnections - dbHeadroom) / cfg.DBMaxConnections
}

// newMigrations is the migration step of every deploy: a custom resource
// served by the migrate function (the same binary), whose properties change
// whenever the embedded migrations or configRevision do, so CloudFormation
// runs it again then. Every other function depends on it: new code goes live
// only after its schema is in place, and a failed migration fails the deploy
// (which rolls back) before anything else changed.
func newMigrations(stack awscdk.Stack, cfg Config, fn awslambda.Function, placeholder bool) awscdk.CustomResource {
	versions, err := db.Versions()
	if err != nil {
		panic(err) // embedded at build time: cannot fail at run time
	}
	return awscdk.NewCustomResource(stack, jsii.String("Migrations"), &awscdk.CustomResourceProps{
		ServiceToken: fn.FunctionArn(),
		ResourceType: jsii.String("Custom::Migrations"),
		// Without an answer CloudFormation would wait an hour.
		ServiceTimeout: awscdk.Duration_Seconds(jsii.Number(migrateTimeoutSec + 60)),
		Properties: &map[string]any{
			"Migrations":               strings.Join(versions, ","),
			"ConfigRevision":           cfg.ConfigRevision,
			"DatabaseUrlIsPlaceholder": fmt.Sprint(placeholder),
		},
	})
}

// migrateTimeoutSec bounds one migration run (Lambda allows 900).
const migrateTimeoutSec = 300
