package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssns"
	"github.com/aws/jsii-runtime-go"
)

// outputs is what operators and the mobile app need from a deployed stack.
type outputs struct {
	wsStage       awsapigatewayv2.WebSocketStage
	httpStage     awsapigatewayv2.HttpStage
	bucket        awss3.IBucket
	bus           awsevents.IEventBus
	archive       awsevents.Archive
	jwtSecret     awssecretsmanager.ISecret
	dbSecret      awssecretsmanager.ISecret
	dbPlaceholder bool
	table         awsdynamodb.TableV2
	alarmTopic    awssns.ITopic
	pipes         []pipeline
}

// addOutputs names are part of the deploy guide: keep them stable.
func addOutputs(stack awscdk.Stack, cfg Config, o outputs) {
	output := func(id, value, description string) {
		awscdk.NewCfnOutput(stack, jsii.String(id), &awscdk.CfnOutputProps{
			Value: jsii.String(value), Description: jsii.String(description),
		})
	}
	output("WebSocketUrl", *o.wsStage.Url(), "CHAT_WS_URL for the mobile app")
	output("ApiUrl", *o.httpStage.Url()+APIBasePath, "CHAT_API_URL for the mobile app")
	output("MediaBucketName", *o.bucket.BucketName(), "Media bucket (keys under chat/)")
	output("EventBusName", *o.bus.EventBusName(), "EventBridge bus (CHAT_EVENT_BUS_NAME)")
	output("EventBusArn", *o.bus.EventBusArn(), "Replay destination")
	output("EventArchiveArn", *o.archive.ArchiveArn(), "Archive replay reads from")
	output("JwtSecretArn", *o.jwtSecret.SecretArn(), "Put the auth service's HS256 key here")
	output("ConnectionsTableName", *o.table.TableName(), "Live WebSocket connections")
	output("AlarmTopicArn", *o.alarmTopic.TopicArn(), "SNS topic every alarm notifies")
	output("DatabaseUrlSecretArn", *o.dbSecret.SecretArn(), "Secret holding the postgres URL")
	if o.dbPlaceholder {
		output("DatabaseUrlSecretPlaceholder", "true",
			"No databaseUrlSecretArn given: a placeholder secret was created; put the postgres URL in it before use")
	}
	for _, p := range o.pipes {
		id := idPart(p.Worker.Name)
		// The literal name: a rule on a custom bus Refs to "bus|rule".
		output(id+"RuleName", RuleName(cfg.Stage, p.Worker.Name), "Rule of the "+p.Worker.Name+" worker (replay target)")
		output(id+"QueueUrl", *p.Queue.QueueUrl(), "Queue of the "+p.Worker.Name+" worker")
	}
}
