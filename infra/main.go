// Command infra is the AWS CDK app for the Parley chat backend: one stack per
// stage, configured with `cdk -c key=value` (see config.go and DEPLOY.md).
package main

import (
	"fmt"
	"os"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/jsii-runtime-go"
)

func main() {
	defer jsii.Close()

	app := awscdk.NewApp(nil)
	cfg, err := ParseConfig(func(key string) any { return app.Node().TryGetContext(jsii.String(key)) })
	if err == nil {
		err = cfg.CheckBootstrap()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "infra:", err)
		jsii.Close() // os.Exit skips the deferred close
		os.Exit(1)
	}
	// Environment-agnostic on purpose: the template deploys to whatever
	// account and region the CLI's credentials point at, and synth needs none.
	NewChatStack(app, cfg, nil)
	app.Synth(nil)
}
