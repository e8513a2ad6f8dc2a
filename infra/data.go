package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsdynamodb"
	"github.com/aws/aws-cdk-go/awscdk/v2/awss3"
	"github.com/aws/aws-cdk-go/awscdk/v2/awssecretsmanager"
	"github.com/aws/jsii-runtime-go"

	"github.com/parleychat/parley/internal/media/mediakeys"
)

// removalPolicy keeps prod data when the stack or a resource goes away, and
// lets dev stacks be torn down cleanly.
func removalPolicy(cfg Config) awscdk.RemovalPolicy {
	if cfg.IsProd() {
		return awscdk.RemovalPolicy_RETAIN
	}
	return awscdk.RemovalPolicy_DESTROY
}

// newConnectionsTable holds live WebSocket connections. Items expire by TTL
// because API Gateway drops connections after 2 hours without telling anyone
// when a disconnect Lambda fails.
func newConnectionsTable(stack awscdk.Stack, cfg Config) awsdynamodb.TableV2 {
	return awsdynamodb.NewTableV2(stack, jsii.String("ConnectionsTable"), &awsdynamodb.TablePropsV2{
		PartitionKey: &awsdynamodb.Attribute{Name: jsii.String("connectionId"), Type: awsdynamodb.AttributeType_STRING},
		GlobalSecondaryIndexes: &[]*awsdynamodb.GlobalSecondaryIndexPropsV2{{
			// fanout looks up every connection of a recipient.
			IndexName:      jsii.String("userId-index"),
			PartitionKey:   &awsdynamodb.Attribute{Name: jsii.String("userId"), Type: awsdynamodb.AttributeType_NUMBER},
			ProjectionType: awsdynamodb.ProjectionType_ALL,
		}},
		TimeToLiveAttribute: jsii.String("expiresAt"),
		Billing:             awsdynamodb.Billing_OnDemand(nil),
		PointInTimeRecoverySpecification: &awsdynamodb.PointInTimeRecoverySpecification{
			PointInTimeRecoveryEnabled: jsii.Bool(true),
		},
		RemovalPolicy: removalPolicy(cfg),
	})
}

// newMediaBucket is private: clients only ever get presigned URLs.
func newMediaBucket(stack awscdk.Stack, cfg Config) awss3.Bucket {
	origins := make([]*string, len(cfg.CorsOrigins))
	for i, o := range cfg.CorsOrigins {
		origins[i] = jsii.String(o)
	}
	return awss3.NewBucket(stack, jsii.String("MediaBucket"), &awss3.BucketProps{
		BlockPublicAccess: awss3.BlockPublicAccess_BLOCK_ALL(),
		EnforceSSL:        jsii.Bool(true),
		Encryption:        awss3.BucketEncryption_S3_MANAGED,
		Versioned:         jsii.Bool(true),
		ObjectOwnership:   awss3.ObjectOwnership_BUCKET_OWNER_ENFORCED,
		Cors: &[]*awss3.CorsRule{{
			// Presigned uploads and downloads come straight from the app.
			AllowedMethods: &[]awss3.HttpMethods{
				awss3.HttpMethods_GET, awss3.HttpMethods_PUT, awss3.HttpMethods_POST, awss3.HttpMethods_HEAD,
			},
			AllowedOrigins: &origins,
			AllowedHeaders: jsii.Strings("*"),
			ExposedHeaders: jsii.Strings("ETag"),
			MaxAge:         jsii.Number(3000),
		}},
		LifecycleRules: &[]*awss3.LifecycleRule{
			{
				Id:                          jsii.String("expire-chat-media"),
				Prefix:                      jsii.String(mediakeys.Prefix),
				Expiration:                  awscdk.Duration_Days(jsii.Number(365)),
				NoncurrentVersionExpiration: awscdk.Duration_Days(jsii.Number(30)),
			},
			{
				// Verified uploads are copied out of chat/upload/ and the
				// originals deleted; an upload never sent is dropped here.
				Id:                          jsii.String("expire-unsent-uploads"),
				Prefix:                      jsii.String(mediakeys.Upload),
				Expiration:                  awscdk.Duration_Days(jsii.Number(2)),
				NoncurrentVersionExpiration: awscdk.Duration_Days(jsii.Number(1)),
			},
			{
				// Versioning keeps overwritten and deleted objects; this caps
				// what that costs for keys outside chat/ too.
				Id:                                  jsii.String("cleanup"),
				NoncurrentVersionExpiration:         awscdk.Duration_Days(jsii.Number(30)),
				AbortIncompleteMultipartUploadAfter: awscdk.Duration_Days(jsii.Number(7)),
				ExpiredObjectDeleteMarker:           jsii.Bool(true),
			},
		},
		RemovalPolicy: removalPolicy(cfg),
	})
}

// newJwtSecret holds the HS256 key shared with the auth service. The generated
// value only makes a fresh stack work on its own; DEPLOY.md says how to put
// the auth service's key in it. No fixed name: a deleted secret's name stays
// taken for days, which would block re-creating a torn-down dev stack.
func newJwtSecret(stack awscdk.Stack, cfg Config) awssecretsmanager.Secret {
	return awssecretsmanager.NewSecret(stack, jsii.String("JwtSecret"), &awssecretsmanager.SecretProps{
		Description: jsii.String("HS256 key that signs the chat's bearer tokens (shared with the auth service)"),
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			PasswordLength:     jsii.Number(64),
			ExcludePunctuation: jsii.Bool(true),
		},
		RemovalPolicy: removalPolicy(cfg),
	})
}

// databaseURLSecret imports the existing postgres URL secret, or creates a
// placeholder to be filled in after the first deploy (created reports which).
func databaseURLSecret(stack awscdk.Stack, cfg Config) (secret awssecretsmanager.ISecret, created bool) {
	if cfg.DatabaseURLSecretArn != "" {
		return awssecretsmanager.Secret_FromSecretCompleteArn(stack, jsii.String("DatabaseUrlSecret"), jsii.String(cfg.DatabaseURLSecretArn)), false
	}
	return awssecretsmanager.NewSecret(stack, jsii.String("DatabaseUrlSecret"), &awssecretsmanager.SecretProps{
		Description: jsii.String("PLACEHOLDER: put the postgres URL (postgres://user:pass@host:5432/db?sslmode=require) here"),
		// Random, not a URL: functions fail loudly until someone sets it.
		GenerateSecretString: &awssecretsmanager.SecretStringGenerator{
			PasswordLength:     jsii.Number(32),
			ExcludePunctuation: jsii.Bool(true),
		},
		RemovalPolicy: removalPolicy(cfg),
	}), true
}
