package main

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsapigatewayv2integrations"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslambda"
	"github.com/aws/aws-cdk-go/awscdk/v2/awslogs"
	"github.com/aws/jsii-runtime-go"
)

// Stage-wide throttles: far above what one user does, low enough that a
// runaway client cannot run up the Lambda bill.
const (
	wsRateLimit    = 1000
	wsBurstLimit   = 2000
	httpRateLimit  = 500
	httpBurstLimit = 1000
)

// APIBasePath is where the REST contract lives under the HTTP API.
const APIBasePath = "api/v1/chat"

// newWebSocketAPI creates the API and its stage without routes: the route
// Lambdas need the API id for their callback URL, so routes come later.
func newWebSocketAPI(stack awscdk.Stack, cfg Config) (awsapigatewayv2.WebSocketApi, awsapigatewayv2.WebSocketStage) {
	api := awsapigatewayv2.NewWebSocketApi(stack, jsii.String("WebSocketApi"), &awsapigatewayv2.WebSocketApiProps{
		ApiName:     jsii.String("parley-" + cfg.Stage + "-ws"),
		Description: jsii.String("Parley chat WebSocket API"),
		// Actions (sendMessage, ping, typing) are dispatched by ws-default.
		RouteSelectionExpression: jsii.String("$request.body.action"),
	})
	props := &awsapigatewayv2.WebSocketStageProps{
		WebSocketApi: api,
		StageName:    jsii.String(cfg.Stage),
		AutoDeploy:   jsii.Bool(true),
		Throttle: &awsapigatewayv2.ThrottleSettings{
			RateLimit:  jsii.Number(wsRateLimit),
			BurstLimit: jsii.Number(wsBurstLimit),
		},
	}
	stage := awsapigatewayv2.NewWebSocketStage(stack, jsii.String("WebSocketStage"), props)
	if cfg.WSAccessLogs {
		logs := awslogs.NewLogGroup(stack, jsii.String("WebSocketAccessLogs"), &awslogs.LogGroupProps{
			Retention:     awslogs.RetentionDays_ONE_MONTH,
			RemovalPolicy: removalPolicy(cfg),
		})
		// Set on the L1 stage: the L2 wants a Go-implemented jsii interface.
		cfn := stage.Node().DefaultChild().(awsapigatewayv2.CfnStage)
		cfn.SetAccessLogSettings(&awsapigatewayv2.CfnStage_AccessLogSettingsProperty{
			DestinationArn: logs.LogGroupArn(),
			Format:         jsii.String(wsAccessLogFormat),
		})
	}
	return api, stage
}

// wsAccessLogFormat is one JSON line per connect, message and disconnect.
const wsAccessLogFormat = `{"requestId":"$context.requestId","ip":"$context.identity.sourceIp",` +
	`"requestTime":"$context.requestTime","eventType":"$context.eventType","routeKey":"$context.routeKey",` +
	`"status":"$context.status","connectionId":"$context.connectionId",` +
	`"integrationError":"$context.integrationErrorMessage","error":"$context.error.message"}`

// managementEndpoint is the @connections callback URL. Built from the stage
// name rather than the stage resource, so functions do not depend on it.
func managementEndpoint(stack awscdk.Stack, api awsapigatewayv2.IWebSocketApi, stage string) *string {
	return jsii.String("https://" + *api.ApiId() + ".execute-api." + *stack.Region() + "." + *stack.UrlSuffix() + "/" + stage)
}

// addWebSocketRoutes connects the three route Lambdas. $default returns the
// handler's body to the client (acknowledgment, pong, error frames).
func addWebSocketRoutes(api awsapigatewayv2.WebSocketApi, connect, disconnect, def awslambda.IFunction) {
	route := func(key, id string, fn awslambda.IFunction, reply bool) {
		api.AddRoute(jsii.String(key), &awsapigatewayv2.WebSocketRouteOptions{
			Integration:    awsapigatewayv2integrations.NewWebSocketLambdaIntegration(jsii.String(id), fn, nil),
			ReturnResponse: jsii.Bool(reply),
		})
	}
	route("$connect", "ConnectIntegration", connect, false)
	route("$disconnect", "DisconnectIntegration", disconnect, false)
	route("$default", "DefaultIntegration", def, true)
}

// newHTTPAPI proxies every path to the api Lambda, which routes /health and
// /api/v1/chat/... itself.
func newHTTPAPI(stack awscdk.Stack, cfg Config, fn awslambda.IFunction) (awsapigatewayv2.HttpApi, awsapigatewayv2.HttpStage) {
	origins := make([]*string, len(cfg.CorsOrigins))
	for i, o := range cfg.CorsOrigins {
		origins[i] = jsii.String(o)
	}
	api := awsapigatewayv2.NewHttpApi(stack, jsii.String("HttpApi"), &awsapigatewayv2.HttpApiProps{
		ApiName:     jsii.String("parley-" + cfg.Stage + "-api"),
		Description: jsii.String("Parley chat REST API"),
		DefaultIntegration: awsapigatewayv2integrations.NewHttpLambdaIntegration(jsii.String("ApiIntegration"), fn,
			&awsapigatewayv2integrations.HttpLambdaIntegrationProps{
				PayloadFormatVersion: awsapigatewayv2.PayloadFormatVersion_VERSION_2_0(),
			}),
		// Native apps ignore CORS; the web build of the app needs it.
		CorsPreflight: &awsapigatewayv2.CorsPreflightOptions{
			AllowOrigins:  &origins,
			AllowMethods:  &[]awsapigatewayv2.CorsHttpMethod{awsapigatewayv2.CorsHttpMethod_ANY},
			AllowHeaders:  jsii.Strings("Authorization", "Content-Type"),
			ExposeHeaders: jsii.Strings("ETag"),
			MaxAge:        awscdk.Duration_Hours(jsii.Number(1)),
		},
		// Our own $default stage below carries the throttles.
		CreateDefaultStage: jsii.Bool(false),
	})
	stage := awsapigatewayv2.NewHttpStage(stack, jsii.String("HttpStage"), &awsapigatewayv2.HttpStageProps{
		HttpApi:    api,
		StageName:  jsii.String("$default"),
		AutoDeploy: jsii.Bool(true),
		Throttle: &awsapigatewayv2.ThrottleSettings{
			RateLimit:  jsii.Number(httpRateLimit),
			BurstLimit: jsii.Number(httpBurstLimit),
		},
	})
	return api, stage
}
