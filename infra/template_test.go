package main

// Helpers for the stack tests: synthesizing the stack and walking its template.

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"
)

// Fixed ids in the VPC variant; the shapes are what CloudFormation accepts.
var (
	testSubnets = []string{"subnet-0123456789abcdef0", "subnet-0123456789abcdef1"}
	testSGs     = []string{"sg-0123456789abcdef0"}
	testDBArn   = "arn:aws:secretsmanager:us-east-1:123456789012:secret:parley/prod/database-url-AbC123"
	// The proxy's login: RDS's managed master secret has this shape.
	testCredsArn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-0a1b2c3d-Xy9Zq1"
	testAPNsArn  = "arn:aws:secretsmanager:us-east-1:123456789012:secret:parley/prod/apns-key-DeF456"
	testFCMArn   = "arn:aws:secretsmanager:us-east-1:123456789012:secret:parley/prod/fcm-credentials-GhI789"
)

// bootstrapDir is a temp folder with a dummy `bootstrap`, standing in for
// the built Lambda binary.
var bootstrapDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-infra-test-")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "bootstrap"), []byte("#!/bin/sh\n"), 0o755)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bootstrapDir = dir
	code := m.Run()
	jsii.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

// synth builds the stack the way `cdk synth -c ...` would, with the feature
// flags from cdk.json, and returns its template.
func synth(ctx map[string]any) (assertions.Template, Config, error) {
	flags, err := cdkJSONContext()
	if err != nil {
		return nil, Config{}, err
	}
	ctx["bootstrapDir"] = bootstrapDir
	cfg, err := ParseConfig(func(k string) any { return ctx[k] })
	if err != nil {
		return nil, Config{}, err
	}
	app := awscdk.NewApp(&awscdk.AppProps{Context: &flags})
	return assertions.Template_FromStack(NewChatStack(app, cfg, nil), nil), cfg, nil
}

func cdkJSONContext() (map[string]any, error) {
	b, err := os.ReadFile("cdk.json")
	if err != nil {
		return nil, err
	}
	var f struct {
		Context map[string]any `json:"context"`
	}
	return f.Context, json.Unmarshal(b, &f)
}

// Each variant is synthesized once and shared: a synth costs seconds.
var (
	devTemplate = sync.OnceValues(func() (*tmpl, error) { return newTmpl(map[string]any{}) })
	vpcTemplate = sync.OnceValues(func() (*tmpl, error) {
		return newTmpl(map[string]any{
			"stage":                   "prod",
			"vpcId":                   "vpc-0123456789abcdef0",
			"subnetIds":               strings.Join(testSubnets, ","),
			"securityGroupIds":        strings.Join(testSGs, ","),
			"databaseUrlSecretArn":    testDBArn,
			"alarmEmail":              "ops@example.com",
			"configRevision":          "r2",
			"rdsProxy":                "false",
			"apnsKeySecretArn":        testAPNsArn,
			"apnsKeyId":               "ABC123DEFG",
			"apnsTeamId":              "TEAM123456",
			"apnsTopic":               "chat.parley.app",
			"fcmCredentialsSecretArn": testFCMArn,
		})
	})
	// prod with its default RDS Proxy.
	proxyTemplate = sync.OnceValues(func() (*tmpl, error) {
		return newTmpl(proxyContext())
	})
)

func proxyContext() map[string]any {
	return map[string]any{
		"stage":                  "prod",
		"vpcId":                  "vpc-0123456789abcdef0",
		"subnetIds":              strings.Join(testSubnets, ","),
		"securityGroupIds":       strings.Join(testSGs, ","),
		"databaseUrlSecretArn":   testDBArn,
		"dbInstanceId":           "parley-prod-db",
		"dbCredentialsSecretArn": testCredsArn,
	}
}

func withProxy(t *testing.T) *tmpl {
	t.Helper()
	tp, err := proxyTemplate()
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// tmpl is a synthesized template plus its JSON, which the checks below walk
// directly when "every X has Y" is easier to say in Go than with matchers.
type tmpl struct {
	assertions.Template
	cfg       Config
	Resources map[string]map[string]any
	Outputs   map[string]map[string]any
}

func newTmpl(ctx map[string]any) (*tmpl, error) {
	t, cfg, err := synth(ctx)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(t.ToJSON())
	if err != nil {
		return nil, err
	}
	var raw struct {
		Resources map[string]map[string]any
		Outputs   map[string]map[string]any
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, err
	}
	return &tmpl{Template: t, cfg: cfg, Resources: raw.Resources, Outputs: raw.Outputs}, nil
}

func dev(t *testing.T) *tmpl {
	t.Helper()
	tp, err := devTemplate()
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func withVpc(t *testing.T) *tmpl {
	t.Helper()
	tp, err := vpcTemplate()
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

// has and count are the CDK matchers, made to fail the test instead of
// panicking the whole binary (a jsii exception arrives as a Go panic).
func (tp *tmpl) has(t *testing.T, typ string, props map[string]any) {
	t.Helper()
	noPanic(t, func() { tp.HasResourceProperties(jsii.String(typ), props) })
}

func (tp *tmpl) count(t *testing.T, typ string, n float64) {
	t.Helper()
	noPanic(t, func() { tp.ResourceCountIs(jsii.String(typ), jsii.Number(n)) })
}

func noPanic(t *testing.T, f func()) {
	t.Helper()
	defer func() {
		t.Helper()
		if r := recover(); r != nil {
			t.Error(r)
		}
	}()
	f()
}

// ofType returns logical id → Properties for every resource of typ.
func (tp *tmpl) ofType(typ string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for id, r := range tp.Resources {
		if r["Type"] == typ {
			props, _ := r["Properties"].(map[string]any)
			out[id] = props
		}
	}
	return out
}

// getAtt returns the logical id in {"Fn::GetAtt": [id, attr]}, or "".
func getAtt(v any, attr string) string {
	m, _ := v.(map[string]any)
	ga, _ := m["Fn::GetAtt"].([]any)
	if len(ga) == 2 && ga[1] == attr {
		s, _ := ga[0].(string)
		return s
	}
	return ""
}

// ref returns the logical id in {"Ref": id}, or "".
func ref(v any) string {
	m, _ := v.(map[string]any)
	s, _ := m["Ref"].(string)
	return s
}

// functionsByHandler maps CHAT_LAMBDA_HANDLER → logical id of the function.
func (tp *tmpl) functionsByHandler(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for id, p := range tp.ofType("AWS::Lambda::Function") {
		env, _ := p["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		h, _ := vars["CHAT_LAMBDA_HANDLER"].(string)
		if h == "" {
			t.Errorf("function %s has no CHAT_LAMBDA_HANDLER", id)
			continue
		}
		if prev, dup := out[h]; dup {
			t.Errorf("handler %s used by %s and %s", h, prev, id)
		}
		out[h] = id
	}
	return out
}

// roleActions lists every IAM action granted by inline policies attached to
// the role of the function fnID, with the resources each applies to.
func (tp *tmpl) roleActions(t *testing.T, fnID string) map[string][]any {
	t.Helper()
	role := getAtt(tp.Resources[fnID]["Properties"].(map[string]any)["Role"], "Arn")
	if role == "" {
		t.Fatalf("function %s has no role in this stack", fnID)
	}
	out := map[string][]any{}
	for _, p := range tp.ofType("AWS::IAM::Policy") {
		attached := false
		for _, r := range p["Roles"].([]any) {
			attached = attached || ref(r) == role
		}
		if !attached {
			continue
		}
		for _, st := range p["PolicyDocument"].(map[string]any)["Statement"].([]any) {
			s := st.(map[string]any)
			if s["Effect"] != "Allow" {
				continue
			}
			actions := s["Action"]
			if a, ok := actions.(string); ok {
				actions = []any{a}
			}
			for _, a := range actions.([]any) {
				out[a.(string)] = append(out[a.(string)], s["Resource"])
			}
		}
	}
	return out
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
