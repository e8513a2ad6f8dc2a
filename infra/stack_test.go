package main

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"

	"github.com/parleychat/parley/events"
	"github.com/parleychat/parley/internal/lambdafn"
)

func TestQueuesHaveDeadLetterQueues(t *testing.T) {
	tp := dev(t)
	queues := tp.ofType("AWS::SQS::Queue")

	// Every queue a DLQ is pointed at, by SQS redrive or by a rule target.
	isDLQ := map[string]bool{}
	for _, q := range queues {
		if rp, ok := q["RedrivePolicy"].(map[string]any); ok {
			isDLQ[getAtt(rp["deadLetterTargetArn"], "Arn")] = true
		}
	}
	for _, r := range tp.ofType("AWS::Events::Rule") {
		for _, tg := range r["Targets"].([]any) {
			dl, _ := tg.(map[string]any)["DeadLetterConfig"].(map[string]any)
			isDLQ[getAtt(dl["Arn"], "Arn")] = true
		}
	}

	var work int
	for id, q := range queues {
		if q["SqsManagedSseEnabled"] != true {
			t.Errorf("queue %s: SSE is off", id)
		}
		if q["FifoQueue"] == true {
			t.Errorf("queue %s: FIFO; the rules need standard queues", id)
		}
		if isDLQ[id] {
			if q["MessageRetentionPeriod"] != float64(14*24*3600) {
				t.Errorf("DLQ %s: retention %v, want 14 days", id, q["MessageRetentionPeriod"])
			}
			if _, ok := q["RedrivePolicy"]; ok {
				t.Errorf("DLQ %s has a DLQ of its own", id)
			}
			continue
		}
		work++
		rp, ok := q["RedrivePolicy"].(map[string]any)
		if !ok {
			t.Errorf("queue %s is not a DLQ and has no RedrivePolicy", id)
			continue
		}
		if rp["maxReceiveCount"] != float64(5) {
			t.Errorf("queue %s: maxReceiveCount %v, want 5", id, rp["maxReceiveCount"])
		}
		if dlq := getAtt(rp["deadLetterTargetArn"], "Arn"); queues[dlq] == nil {
			t.Errorf("queue %s: DLQ %q is not a queue in this stack", id, dlq)
		}
	}
	if work != len(Workers()) {
		t.Errorf("%d work queues, want one per worker (%d)", work, len(Workers()))
	}
}

func TestVisibilityTimeoutCoversSixLambdaTimeouts(t *testing.T) {
	tp := dev(t)
	esms := tp.ofType("AWS::Lambda::EventSourceMapping")
	for id, m := range esms {
		qID := getAtt(m["EventSourceArn"], "Arn")
		q := tp.Resources[qID]["Properties"].(map[string]any)
		fn := tp.Resources[ref(m["FunctionName"])]["Properties"].(map[string]any)
		vis, timeout := q["VisibilityTimeout"].(float64), fn["Timeout"].(float64)
		if vis < 6*timeout {
			t.Errorf("%s: queue %s visibility %vs < 6 × function timeout %vs", id, qID, vis, timeout)
		}
	}
}

func TestArchiveKeepsEverythingForReplay(t *testing.T) {
	tp := dev(t)
	archives := tp.ofType("AWS::Events::Archive")
	if len(archives) != 1 {
		t.Fatalf("%d archives, want 1", len(archives))
	}
	for _, a := range archives {
		if a["RetentionDays"] != float64(365) {
			t.Errorf("retention %v, want 365", a["RetentionDays"])
		}
		if bus := getAtt(a["SourceArn"], "Arn"); tp.Resources[bus]["Type"] != "AWS::Events::EventBus" {
			t.Errorf("archive source %v is not the bus", a["SourceArn"])
		}
		if a["ArchiveName"] != "parley-dev-events" {
			t.Errorf("archive name %v", a["ArchiveName"])
		}
	}
	tp.has(t, "AWS::Events::EventBus", map[string]any{"Name": "parley-dev"})
}

func TestBucketIsPrivateEncryptedVersioned(t *testing.T) {
	tp := dev(t)
	tp.has(t, "AWS::S3::Bucket", map[string]any{
		"PublicAccessBlockConfiguration": map[string]any{
			"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
		},
		"BucketEncryption": map[string]any{
			"ServerSideEncryptionConfiguration": []any{map[string]any{
				"ServerSideEncryptionByDefault": map[string]any{"SSEAlgorithm": "AES256"},
			}},
		},
		"VersioningConfiguration": map[string]any{"Status": "Enabled"},
	})
	tp.has(t, "AWS::S3::BucketPolicy", map[string]any{
		"PolicyDocument": map[string]any{"Statement": assertions.Match_ArrayWith(&[]any{
			assertions.Match_ObjectLike(&map[string]any{
				"Effect":    "Deny",
				"Action":    "s3:*",
				"Condition": map[string]any{"Bool": map[string]any{"aws:SecureTransport": "false"}},
			}),
		})},
	})
	// Nothing may grant anything to everyone.
	for id, p := range tp.ofType("AWS::S3::BucketPolicy") {
		for _, st := range p["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			s := st.(map[string]any)
			if s["Effect"] == "Allow" {
				t.Errorf("bucket policy %s allows %v", id, s)
			}
		}
	}
}

func TestBucketLifecycleAndCors(t *testing.T) {
	tp := dev(t)
	tp.has(t, "AWS::S3::Bucket", map[string]any{
		"LifecycleConfiguration": map[string]any{"Rules": assertions.Match_ArrayWith(&[]any{
			assertions.Match_ObjectLike(&map[string]any{
				"Prefix": "chat/", "Status": "Enabled", "ExpirationInDays": 365,
				"NoncurrentVersionExpiration": map[string]any{"NoncurrentDays": 30},
			}),
			assertions.Match_ObjectLike(&map[string]any{
				"Prefix": "chat/upload/", "Status": "Enabled", "ExpirationInDays": 2,
			}),
			assertions.Match_ObjectLike(&map[string]any{
				"AbortIncompleteMultipartUpload": map[string]any{"DaysAfterInitiation": 7},
			}),
		})},
		"CorsConfiguration": map[string]any{"CorsRules": []any{map[string]any{
			"AllowedMethods": []any{"GET", "PUT", "POST", "HEAD"},
			"AllowedOrigins": []any{"*"},
			"AllowedHeaders": []any{"*"},
			"ExposedHeaders": []any{"ETag"},
			"MaxAge":         3000,
		}}},
	})
}

func TestConnectionsTable(t *testing.T) {
	dev(t).has(t, "AWS::DynamoDB::GlobalTable", map[string]any{
		"KeySchema":               []any{map[string]any{"AttributeName": "connectionId", "KeyType": "HASH"}},
		"BillingMode":             "PAY_PER_REQUEST",
		"TimeToLiveSpecification": map[string]any{"AttributeName": "expiresAt", "Enabled": true},
		"AttributeDefinitions": assertions.Match_ArrayWith(&[]any{
			map[string]any{"AttributeName": "userId", "AttributeType": "N"},
		}),
		"GlobalSecondaryIndexes": []any{map[string]any{
			"IndexName":  "userId-index",
			"KeySchema":  []any{map[string]any{"AttributeName": "userId", "KeyType": "HASH"}},
			"Projection": map[string]any{"ProjectionType": "ALL"},
		}},
		"Replicas": []any{assertions.Match_ObjectLike(&map[string]any{
			"PointInTimeRecoverySpecification": map[string]any{"PointInTimeRecoveryEnabled": true},
		})},
	})
}

func TestProdKeepsData(t *testing.T) {
	for _, typ := range []string{"AWS::DynamoDB::GlobalTable", "AWS::S3::Bucket"} {
		for id := range withVpc(t).ofType(typ) {
			if p := withVpc(t).Resources[id]["DeletionPolicy"]; p != "Retain" {
				t.Errorf("prod %s %s: DeletionPolicy %v, want Retain", typ, id, p)
			}
			if p := dev(t).Resources[id]["DeletionPolicy"]; p != "Delete" {
				t.Errorf("dev %s %s: DeletionPolicy %v, want Delete", typ, id, p)
			}
		}
	}
}

func TestEventSourcesReportBatchItemFailures(t *testing.T) {
	tp := dev(t)
	esms := tp.ofType("AWS::Lambda::EventSourceMapping")
	if len(esms) != len(Workers()) {
		t.Errorf("%d event source mappings, want %d", len(esms), len(Workers()))
	}
	for id, m := range esms {
		if !reflect.DeepEqual(m["FunctionResponseTypes"], []any{"ReportBatchItemFailures"}) {
			t.Errorf("%s: FunctionResponseTypes %v", id, m["FunctionResponseTypes"])
		}
		if m["BatchSize"] != float64(10) {
			t.Errorf("%s: BatchSize %v, want 10", id, m["BatchSize"])
		}
	}
}

func TestFunctionsShareOneBinary(t *testing.T) {
	tp := dev(t)
	byHandler := tp.functionsByHandler(t)
	handlers := lambdafn.Names()
	if len(byHandler) != len(handlers) {
		t.Errorf("functions for %v, want exactly %v", slices.Sorted(maps.Keys(byHandler)), handlers)
	}
	common := []string{"CHAT_TRANSPORT", "CHAT_EVENT_BUS_NAME", "JWT_SECRET_ARN",
		"DATABASE_URL_SECRET_ARN", "CHAT_CONNECTIONS_TABLE", "CHAT_S3_BUCKET", "CHAT_LOG_LEVEL"}
	for _, h := range handlers {
		t.Run(h, func(t *testing.T) {
			id, ok := byHandler[h]
			if !ok {
				t.Fatalf("no function with CHAT_LAMBDA_HANDLER=%s", h)
			}
			p := tp.Resources[id]["Properties"].(map[string]any)
			if p["Runtime"] != "provided.al2023" || p["Handler"] != "bootstrap" ||
				!reflect.DeepEqual(p["Architectures"], []any{"arm64"}) {
				t.Errorf("runtime %v handler %v arch %v", p["Runtime"], p["Handler"], p["Architectures"])
			}
			vars := p["Environment"].(map[string]any)["Variables"].(map[string]any)
			for _, k := range common {
				if _, ok := vars[k]; !ok {
					t.Errorf("missing env %s", k)
				}
			}
			if vars["CHAT_TRANSPORT"] != "aws" || vars["CHAT_LOG_LEVEL"] != "info" {
				t.Errorf("env %v", vars)
			}
			_, hasWS := vars["CHAT_WS_MANAGEMENT_ENDPOINT"]
			if wantWS := lambdafn.IsWebSocket(h) || h == lambdafn.Worker(events.WorkerFanout); hasWS != wantWS {
				t.Errorf("CHAT_WS_MANAGEMENT_ENDPOINT present=%v, want %v", hasWS, wantWS)
			}
		})
	}
	// Thumbnailing decodes full-size images.
	thumb := tp.Resources[byHandler[lambdafn.Worker(events.WorkerThumbnailer)]]["Properties"].(map[string]any)
	if thumb["MemorySize"] != float64(1024) || thumb["Timeout"] != float64(60) {
		t.Errorf("thumbnailer %v MB / %v s, want 1024 / 60", thumb["MemorySize"], thumb["Timeout"])
	}
}

func TestLeastPrivilege(t *testing.T) {
	tp := dev(t)
	fns := tp.functionsByHandler(t)
	has := func(h, prefix string) bool {
		for a := range tp.roleActions(t, fns[h]) {
			if strings.HasPrefix(a, prefix) {
				return true
			}
		}
		return false
	}
	edge := []string{"ws-connect", "ws-disconnect", "ws-default", "api"}
	// prefix → handlers that may hold it; every other handler must not.
	allowed := map[string][]string{
		"s3:":          {"api", "worker-thumbnailer"},
		"execute-api:": {"worker-fanout"},
		// fanout publishes delivery receipts and push requests, the
		// persister its feed announcements.
		"events:":         append(slices.Clone(edge), "worker-thumbnailer", "worker-fanout", "worker-persister"),
		"dynamodb:":       append(slices.Clone(edge), "worker-fanout"),
		"secretsmanager:": slices.Collect(maps.Keys(fns)), // all touch PostgreSQL
		"sqs:":            {"worker-persister", "worker-fanout", "worker-thumbnailer", "worker-notifier"},
		"iam:":            nil,
		"lambda:":         nil,
		"kms:":            nil,
		"sns:":            nil,
		"logs:":           nil, // only through the managed basic execution policy
		"ec2:":            nil, // only through the managed VPC access policy
	}
	for prefix, who := range allowed {
		for h := range fns {
			if got, want := has(h, prefix), slices.Contains(who, h); got != want {
				t.Errorf("%s holds %s* = %v, want %v", h, prefix, got, want)
			}
		}
	}
	// Only the edge verifies tokens, so only the edge reads the JWT secret.
	jwt := ref(tp.Outputs["JwtSecretArn"]["Value"])
	for h, id := range fns {
		reads := strings.Contains(fmt.Sprint(tp.roleActions(t, id)["secretsmanager:GetSecretValue"]), jwt)
		if want := slices.Contains(edge, h); reads != want {
			t.Errorf("%s reads the JWT secret = %v, want %v", h, reads, want)
		}
	}
	// Media access is confined to chat/, the API's deletes to chat/upload/;
	// the thumbnailer deletes a sent message's media (unsend), under chat/.
	for h, deletes := range map[string]string{"api": "/chat/upload/*", "worker-thumbnailer": "/chat/*"} {
		actions := tp.roleActions(t, fns[h])
		for a, res := range actions {
			want := "/chat/*"
			switch a {
			case "s3:DeleteObject":
				if got := fmt.Sprint(res); !strings.Contains(got, deletes) || strings.Count(got, "/chat/") != 1 {
					t.Errorf("%s: %s on %v, want only %s", h, a, res, deletes)
				}
				continue
			case "s3:ListBucket": // the bucket itself, so that a missing key is a 404
				if strings.Contains(fmt.Sprint(res), "/") {
					t.Errorf("%s: %s on %v, want the bucket", h, a, res)
				}
				continue
			}
			if strings.HasPrefix(a, "s3:") && !strings.Contains(fmt.Sprint(res), want) {
				t.Errorf("%s: %s on %v, want only %s", h, a, res, want)
			}
		}
		for _, a := range []string{"s3:DeleteObject", "s3:ListBucket"} {
			if _, ok := actions[a]; !ok {
				t.Errorf("%s lacks %s, which verifying a presigned upload needs", h, a)
			}
		}
	}
	// fanout may manage connections of this stage only.
	res := tp.roleActions(t, fns["worker-fanout"])["execute-api:ManageConnections"]
	if !strings.Contains(fmt.Sprint(res), "/dev/*/@connections/*") {
		t.Errorf("ManageConnections on %v", res)
	}
}

func TestWebSocketAPI(t *testing.T) {
	tp := dev(t)
	tp.has(t, "AWS::ApiGatewayV2::Api", map[string]any{
		"ProtocolType":             "WEBSOCKET",
		"RouteSelectionExpression": "$request.body.action",
	})
	byHandler := tp.functionsByHandler(t)
	routes := map[string]string{"$connect": "ws-connect", "$disconnect": "ws-disconnect", "$default": "ws-default"}
	got := map[string]string{}
	var wsAPI string
	for id, a := range tp.ofType("AWS::ApiGatewayV2::Api") {
		if a["ProtocolType"] == "WEBSOCKET" {
			wsAPI = id
		}
	}
	for id, r := range tp.ofType("AWS::ApiGatewayV2::Route") {
		key := r["RouteKey"].(string)
		if _, ok := routes[key]; !ok || ref(r["ApiId"]) != wsAPI {
			continue
		}
		got[key] = id
		// Route → integration → function.
		target := fmt.Sprint(r["Target"])
		for iid, in := range tp.ofType("AWS::ApiGatewayV2::Integration") {
			if strings.Contains(target, iid) && !strings.Contains(fmt.Sprint(in["IntegrationUri"]), byHandler[routes[key]]) {
				t.Errorf("route %s integrates %v, want %s", key, in["IntegrationUri"], routes[key])
			}
		}
	}
	if len(got) != 3 {
		t.Fatalf("routes %v, want $connect, $disconnect, $default", got)
	}
	// $default answers the client with the handler's body.
	tp.has(t, "AWS::ApiGatewayV2::RouteResponse", map[string]any{
		"RouteId":          map[string]any{"Ref": got["$default"]},
		"RouteResponseKey": "$default",
	})
	tp.has(t, "AWS::ApiGatewayV2::Stage", map[string]any{
		"StageName":  "dev",
		"AutoDeploy": true,
		"DefaultRouteSettings": assertions.Match_ObjectLike(&map[string]any{
			"ThrottlingRateLimit": assertions.Match_AnyValue(), "ThrottlingBurstLimit": assertions.Match_AnyValue(),
		}),
	})
	out := fmt.Sprint(tp.Outputs["WebSocketUrl"]["Value"])
	if !strings.Contains(out, "wss://") || !strings.Contains(out, "/dev") {
		t.Errorf("WebSocketUrl %s", out)
	}
}

func TestHTTPAPI(t *testing.T) {
	tp := dev(t)
	tp.has(t, "AWS::ApiGatewayV2::Api", map[string]any{
		"ProtocolType": "HTTP",
		"CorsConfiguration": assertions.Match_ObjectLike(&map[string]any{
			"AllowOrigins": []any{"*"},
			"AllowHeaders": assertions.Match_ArrayWith(&[]any{"Authorization"}),
		}),
	})
	tp.has(t, "AWS::ApiGatewayV2::Route", map[string]any{"RouteKey": "$default"})
	tp.has(t, "AWS::ApiGatewayV2::Integration", map[string]any{
		"IntegrationType":      "AWS_PROXY",
		"PayloadFormatVersion": "2.0",
		"IntegrationUri":       map[string]any{"Fn::GetAtt": []any{tp.functionsByHandler(t)["api"], "Arn"}},
	})
	tp.has(t, "AWS::ApiGatewayV2::Stage", map[string]any{
		"StageName": "$default", "AutoDeploy": true,
	})
	if out := fmt.Sprint(tp.Outputs["ApiUrl"]["Value"]); !strings.Contains(out, "/api/v1/chat") {
		t.Errorf("ApiUrl %s", out)
	}
}

func TestAlarms(t *testing.T) {
	tp := dev(t)
	alarms := tp.ofType("AWS::CloudWatch::Alarm")
	watched := map[string]bool{} // logical ids of queues and functions with an alarm
	aged := map[string]bool{}    // logical ids of queues with an age alarm
	var ws, http bool
	for id, a := range alarms {
		if len(a["AlarmActions"].([]any)) == 0 {
			t.Errorf("alarm %s notifies nobody", id)
		}
		for _, d := range a["Dimensions"].([]any) {
			dim := d.(map[string]any)
			switch {
			case a["Namespace"] == "AWS/SQS" && a["MetricName"] == "ApproximateNumberOfMessagesVisible":
				watched[getAtt(dim["Value"], "QueueName")] = true
			case a["Namespace"] == "AWS/SQS" && a["MetricName"] == "ApproximateAgeOfOldestMessage":
				aged[getAtt(dim["Value"], "QueueName")] = true
			case a["Namespace"] == "AWS/Lambda" && a["MetricName"] == "Errors":
				watched[ref(dim["Value"])] = true
			case a["Namespace"] == "AWS/ApiGateway" && dim["Name"] == "ApiId":
				api := tp.Resources[ref(dim["Value"])]["Properties"].(map[string]any)
				switch {
				case api["ProtocolType"] == "WEBSOCKET" && (a["MetricName"] == "IntegrationError" || a["MetricName"] == "ExecutionError"):
					ws = true
				case api["ProtocolType"] == "HTTP" && a["MetricName"] == "5xx":
					http = true
				}
			}
		}
	}
	for id, q := range tp.ofType("AWS::SQS::Queue") {
		_, isWork := q["RedrivePolicy"]
		if !isWork && !watched[id] {
			t.Errorf("DLQ %s (%v) has no alarm", id, q["QueueName"])
		}
		if isWork && !aged[id] {
			t.Errorf("worker queue %s (%v) has no alarm on its oldest message's age", id, q["QueueName"])
		}
	}
	for h, id := range tp.functionsByHandler(t) {
		if !watched[id] {
			t.Errorf("function %s has no Errors alarm", h)
		}
	}
	if !ws || !http {
		t.Errorf("API alarms: websocket %v, http 5xx %v", ws, http)
	}
	tp.count(t, "AWS::SNS::Topic", 1)
	tp.count(t, "AWS::SNS::Subscription", 0)
	withVpc(t).has(t, "AWS::SNS::Subscription", map[string]any{
		"Protocol": "email", "Endpoint": "ops@example.com",
	})
}

func TestVpcConfigOnlyWhenGiven(t *testing.T) {
	for h, id := range dev(t).functionsByHandler(t) {
		if vc, ok := dev(t).Resources[id]["Properties"].(map[string]any)["VpcConfig"]; ok {
			t.Errorf("no VPC context, yet %s has VpcConfig %v", h, vc)
		}
	}
	tp := withVpc(t)
	want := map[string]any{"SubnetIds": toAny(testSubnets), "SecurityGroupIds": toAny(testSGs)}
	byHandler := tp.functionsByHandler(t)
	if len(byHandler) != len(lambdafn.All()) {
		t.Errorf("%d functions in the VPC variant", len(byHandler))
	}
	for h, id := range byHandler {
		if vc := tp.Resources[id]["Properties"].(map[string]any)["VpcConfig"]; !reflect.DeepEqual(vc, want) {
			t.Errorf("%s: VpcConfig %v, want %v", h, vc, want)
		}
	}
	// Imported, never created or modified.
	for _, typ := range []string{"AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::SecurityGroup", "AWS::EC2::SecurityGroupEgress"} {
		tp.count(t, typ, 0)
	}
}

// The push credentials are the operator's secrets: only the notifier gets
// their ARNs and may read them; without them it gets neither.
func TestPushSecrets(t *testing.T) {
	tp := withVpc(t)
	for h, id := range tp.functionsByHandler(t) {
		reads := fmt.Sprint(tp.roleActions(t, id)["secretsmanager:GetSecretValue"])
		vars := tp.Resources[id]["Properties"].(map[string]any)["Environment"].(map[string]any)["Variables"].(map[string]any)
		notifier := h == "worker-notifier"
		for _, arn := range []string{testAPNsArn, testFCMArn} {
			if got := strings.Contains(reads, arn); got != notifier {
				t.Errorf("%s reads %s = %v, want %v", h, arn, got, notifier)
			}
		}
		if got := vars["CHAT_APNS_KEY_SECRET_ARN"] == testAPNsArn && vars["CHAT_FCM_CREDENTIALS_SECRET_ARN"] == testFCMArn &&
			vars["CHAT_APNS_KEY_ID"] == "ABC123DEFG" && vars["CHAT_APNS_TEAM_ID"] == "TEAM123456" && vars["CHAT_APNS_TOPIC"] == "chat.parley.app"; got != notifier {
			t.Errorf("%s has the push settings = %v, want %v: %v", h, got, notifier, vars)
		}
	}
	d := dev(t)
	id := d.functionsByHandler(t)["worker-notifier"]
	if id == "" {
		t.Fatal("no notifier function")
	}
	vars := d.Resources[id]["Properties"].(map[string]any)["Environment"].(map[string]any)["Variables"].(map[string]any)
	if _, ok := vars["CHAT_APNS_KEY_SECRET_ARN"]; ok {
		t.Error("the notifier has an APNs secret without apnsKeySecretArn")
	}
	get := func(m map[string]any) func(string) any { return func(k string) any { return m[k] } }
	if _, err := ParseConfig(get(map[string]any{"apnsKeySecretArn": testAPNsArn})); err == nil {
		t.Error("an APNs key without key id, team id and topic was accepted")
	}
}

func TestDatabaseSecret(t *testing.T) {
	// Without an ARN: a placeholder secret, and an output saying so.
	dev(t).count(t, "AWS::SecretsManager::Secret", 2)
	if _, ok := dev(t).Outputs["DatabaseUrlSecretPlaceholder"]; !ok {
		t.Error("no placeholder output without databaseUrlSecretArn")
	}
	// With one: only the JWT secret is created and functions get the ARN.
	tp := withVpc(t)
	tp.count(t, "AWS::SecretsManager::Secret", 1)
	if _, ok := tp.Outputs["DatabaseUrlSecretPlaceholder"]; ok {
		t.Error("placeholder output although databaseUrlSecretArn was given")
	}
	for h, id := range tp.functionsByHandler(t) {
		vars := tp.Resources[id]["Properties"].(map[string]any)["Environment"].(map[string]any)["Variables"].(map[string]any)
		if vars["DATABASE_URL_SECRET_ARN"] != testDBArn {
			t.Errorf("%s: DATABASE_URL_SECRET_ARN %v", h, vars["DATABASE_URL_SECRET_ARN"])
		}
	}
	tp.has(t, "AWS::SecretsManager::Secret", map[string]any{
		"GenerateSecretString": assertions.Match_ObjectLike(&map[string]any{"PasswordLength": 64}),
	})
}

func TestConfigRevisionRestartsEveryFunction(t *testing.T) {
	for name, tp := range map[string]*tmpl{"dev": dev(t), "vpc": withVpc(t)} {
		for h, id := range tp.functionsByHandler(t) {
			vars := tp.Resources[id]["Properties"].(map[string]any)["Environment"].(map[string]any)["Variables"].(map[string]any)
			got, ok := vars["CHAT_CONFIG_REVISION"]
			if want := name == "vpc"; ok != want || (ok && got != "r2") {
				t.Errorf("%s %s: CHAT_CONFIG_REVISION %v", name, h, got)
			}
		}
	}
}

func TestOutputs(t *testing.T) {
	tp := dev(t)
	want := []string{"WebSocketUrl", "ApiUrl", "MediaBucketName", "EventBusName", "EventBusArn", "EventArchiveArn",
		"JwtSecretArn", "ConnectionsTableName"}
	for _, w := range Workers() {
		want = append(want, idPart(w.Name)+"RuleName", idPart(w.Name)+"QueueUrl")
	}
	for _, o := range want {
		if _, ok := tp.Outputs[o]; !ok {
			t.Errorf("missing output %s", o)
		}
	}
}

func TestConfig(t *testing.T) {
	get := func(m map[string]any) func(string) any { return func(k string) any { return m[k] } }
	c, err := ParseConfig(get(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.Stage != "dev" || c.BootstrapDir != "../dist/lambda" || c.ArchiveRetentionDays != 365 ||
		!reflect.DeepEqual(c.CorsOrigins, []string{"*"}) || c.InVpc() {
		t.Errorf("defaults: %+v", c)
	}
	c, err = ParseConfig(get(map[string]any{"corsOrigins": "https://a.example, https://b.example", "archiveRetentionDays": "30"}))
	if err != nil || !reflect.DeepEqual(c.CorsOrigins, []string{"https://a.example", "https://b.example"}) || c.ArchiveRetentionDays != 30 {
		t.Errorf("got %+v, %v", c, err)
	}
	bad := []map[string]any{
		{"stage": "Prod"},
		{"vpcId": "vpc-0123456789abcdef0"},        // no subnets or groups
		{"subnetIds": "subnet-0123456789abcdef0"}, // no VPC
		{"vpcId": "vpc-1", "subnetIds": "subnet-1", "securityGroupIds": "sg-1"},
		{"databaseUrlSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"}, // partial ARN
		{"archiveRetentionDays": "a year"},
		{"wsAccessLogs": "maybe"},
	}
	for _, m := range bad {
		if _, err := ParseConfig(get(m)); err == nil {
			t.Errorf("%v: no error", m)
		}
	}
	if c, _ := ParseConfig(get(map[string]any{"configRevision": "r2"})); c.ConfigRevision != "r2" {
		t.Errorf("configRevision not read: %+v", c)
	}
	if err := (Config{BootstrapDir: t.TempDir()}).CheckBootstrap(); err == nil {
		t.Error("CheckBootstrap: no error for a folder without bootstrap")
	}
}
