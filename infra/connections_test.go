package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/parleychat/parley/db"
	"github.com/parleychat/parley/internal/lambdafn"
)

// fnProps is a function's CloudFormation properties and environment.
func (tp *tmpl) fnProps(id string) (props, env map[string]any) {
	props = tp.Resources[id]["Properties"].(map[string]any)
	return props, props["Environment"].(map[string]any)["Variables"].(map[string]any)
}

// TestPoolSizesAndReservedConcurrency: every function has a reserved
// concurrency and a pool size, and together they fit the database.
func TestPoolSizesAndReservedConcurrency(t *testing.T) {
	for name, tp := range map[string]*tmpl{"dev": dev(t), "vpc": withVpc(t), "proxy": withProxy(t)} {
		t.Run(name, func(t *testing.T) {
			total := 0
			for h, id := range tp.functionsByHandler(t) {
				p, env := tp.fnProps(id)
				n, ok := p["ReservedConcurrentExecutions"].(float64)
				if !ok || n < 1 {
					t.Errorf("%s: ReservedConcurrentExecutions %v", h, p["ReservedConcurrentExecutions"])
				}
				pool, err := strconv.Atoi(fmt.Sprint(env["CHAT_DB_MAX_CONNS"]))
				want := 2
				if h == lambdafn.Migrate {
					want = 1
				}
				if err != nil || pool != want {
					t.Errorf("%s: CHAT_DB_MAX_CONNS %v, want %d", h, env["CHAT_DB_MAX_CONNS"], want)
				}
				if int(n) != tp.cfg.Concurrency(h) {
					t.Errorf("%s: reserved %v, config says %d", h, n, tp.cfg.Concurrency(h))
				}
				total += int(n) * pool
			}
			// The default: a 100-connection server, 10 kept for operators.
			if total > 100-dbHeadroom || total != tp.cfg.DBConnections() {
				t.Errorf("functions may open %d connections (config: %d), over %d", total, tp.cfg.DBConnections(), 100-dbHeadroom)
			}
			// Each worker's SQS poller stops at the function's concurrency.
			for id, m := range tp.ofType("AWS::Lambda::EventSourceMapping") {
				fn, _ := tp.fnProps(ref(m["FunctionName"]))
				sc, _ := m["ScalingConfig"].(map[string]any)
				if sc["MaximumConcurrency"] != fn["ReservedConcurrentExecutions"] {
					t.Errorf("%s: MaximumConcurrency %v, function reserves %v", id, sc["MaximumConcurrency"], fn["ReservedConcurrentExecutions"])
				}
			}
		})
	}
}

func TestConnectionBudget(t *testing.T) {
	get := func(m map[string]any) func(string) any { return func(k string) any { return m[k] } }
	// Raising one function's share past the server's limit is refused at
	// synth, naming what to change.
	_, err := ParseConfig(get(map[string]any{"reservedConcurrency": "api=40"}))
	if err == nil || !strings.Contains(err.Error(), "dbMaxConnections") || !strings.Contains(err.Error(), "api 40×2") {
		t.Errorf("api=40 on a 100-connection server: %v", err)
	}
	// ...unless the server is bigger, or the pools smaller.
	for _, ok := range []map[string]any{
		{"reservedConcurrency": "api=40", "dbMaxConnections": "200"},
		{"reservedConcurrency": "api=40", "dbPoolSize": "1"},
	} {
		c, err := ParseConfig(get(ok))
		if err != nil || c.Concurrency(lambdafn.API) != 40 {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range []map[string]any{
		{"reservedConcurrency": "nobody=3"},
		{"reservedConcurrency": "api"},
		{"reservedConcurrency": "worker-fanout=1"}, // under an SQS source's minimum
		{"reservedConcurrency": "api=0"},
		{"dbPoolSize": "0"},
		{"dbMaxConnections": "10"},
		{"dbMaxConnections": "many"},
	} {
		if _, err := ParseConfig(get(bad)); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	// A new worker is one more sizing entry; its default must still fit.
	c, _ := ParseConfig(get(nil))
	if spare := 100 - dbHeadroom - c.DBConnections(); spare < 2*minWorkerConcurrency {
		t.Errorf("defaults leave %d connections: no room for another worker", spare)
	}
}

func TestRdsProxy(t *testing.T) {
	get := func(m map[string]any) func(string) any { return func(k string) any { return m[k] } }
	// On by default for prod, so prod without the proxy's inputs is refused.
	_, err := ParseConfig(get(map[string]any{"stage": "prod"}))
	for _, key := range []string{"rdsProxy", "dbInstanceId", "dbCredentialsSecretArn"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("prod without a proxy config: %v, want it to name %s", err, key)
		}
	}
	if c, err := ParseConfig(get(map[string]any{"stage": "prod", "rdsProxy": "false"})); err != nil || c.RDSProxy {
		t.Errorf("prod, rdsProxy=false: %+v, %v", c, err)
	}
	if c, _ := ParseConfig(get(nil)); c.RDSProxy {
		t.Error("dev has a proxy by default")
	}
	dev(t).count(t, "AWS::RDS::DBProxy", 0)
	withVpc(t).count(t, "AWS::RDS::DBProxy", 0)

	tp := withProxy(t)
	tp.count(t, "AWS::RDS::DBProxy", 1)
	var proxyID string
	for id, p := range tp.ofType("AWS::RDS::DBProxy") {
		proxyID = id
		if p["EngineFamily"] != "POSTGRESQL" || p["RequireTLS"] != true || p["DBProxyName"] != "parley-prod" {
			t.Errorf("proxy %v", p)
		}
		auth := p["Auth"].([]any)[0].(map[string]any)
		if auth["SecretArn"] != testCredsArn || auth["IAMAuth"] != "DISABLED" {
			t.Errorf("proxy auth %v", auth)
		}
		if fmt.Sprint(p["VpcSubnetIds"]) != fmt.Sprint(toAny(testSubnets)) {
			t.Errorf("proxy subnets %v", p["VpcSubnetIds"])
		}
		// Its own group plus the functions', which RDS already admits.
		sgs := fmt.Sprint(p["VpcSecurityGroupIds"])
		for _, sg := range testSGs {
			if !strings.Contains(sgs, sg) {
				t.Errorf("proxy groups %s lack %s", sgs, sg)
			}
		}
	}
	tp.has(t, "AWS::RDS::DBProxyTargetGroup", map[string]any{
		"DBInstanceIdentifiers": []any{"parley-prod-db"},
		"ConnectionPoolConfigurationInfo": map[string]any{
			"MaxConnectionsPercent": float64(90), "MaxIdleConnectionsPercent": float64(10),
		},
	})
	// The proxy's group admits the functions on 5432, and nothing else.
	for _, g := range tp.ofType("AWS::EC2::SecurityGroup") {
		in := fmt.Sprint(g["SecurityGroupIngress"])
		if !strings.Contains(in, testSGs[0]) || !strings.Contains(in, "FromPort:5432") || strings.Contains(in, "0.0.0.0/0") {
			t.Errorf("proxy group ingress %s", in)
		}
	}
	// Everything but migrations goes through the proxy.
	for h, id := range tp.functionsByHandler(t) {
		_, env := tp.fnProps(id)
		got := getAtt(env["CHAT_DB_HOST"], "Endpoint")
		if want := proxyID; h == lambdafn.Migrate {
			if _, ok := env["CHAT_DB_HOST"]; ok {
				t.Errorf("migrate goes through the proxy: %v", env["CHAT_DB_HOST"])
			}
		} else if got != want {
			t.Errorf("%s: CHAT_DB_HOST %v, want the proxy's endpoint", h, env["CHAT_DB_HOST"])
		}
	}
}

func TestMigrationsRunBeforeEveryOtherFunction(t *testing.T) {
	versions, err := db.Versions()
	if err != nil {
		t.Fatal(err)
	}
	for name, tp := range map[string]*tmpl{"dev": dev(t), "vpc": withVpc(t)} {
		t.Run(name, func(t *testing.T) {
			fns := tp.functionsByHandler(t)
			res := tp.ofType("Custom::Migrations")
			if len(res) != 1 {
				t.Fatalf("%d migration resources, want 1", len(res))
			}
			var resID string
			for id, p := range res {
				resID = id
				if getAtt(p["ServiceToken"], "Arn") != fns[lambdafn.Migrate] {
					t.Errorf("served by %v, want the migrate function", p["ServiceToken"])
				}
				if p["Migrations"] != strings.Join(versions, ",") {
					t.Errorf("Migrations %v, want %v", p["Migrations"], versions)
				}
				if want := fmt.Sprint(name == "dev"); p["DatabaseUrlIsPlaceholder"] != want {
					t.Errorf("DatabaseUrlIsPlaceholder %v, want %s", p["DatabaseUrlIsPlaceholder"], want)
				}
				if name == "vpc" && p["ConfigRevision"] != "r2" {
					t.Errorf("ConfigRevision %v: a new revision must re-run migrations", p["ConfigRevision"])
				}
				// An hour by default: a failed migration must not stall the deploy.
				if fmt.Sprint(p["ServiceTimeout"]) != strconv.Itoa(migrateTimeoutSec+60) {
					t.Errorf("ServiceTimeout %v", p["ServiceTimeout"])
				}
			}
			for h, id := range fns {
				deps := fmt.Sprint(tp.Resources[id]["DependsOn"])
				if after := strings.Contains(deps, resID); after != (h != lambdafn.Migrate) {
					t.Errorf("%s depends on the migrations = %v (DependsOn %s)", h, after, deps)
				}
			}
			p, _ := tp.fnProps(fns[lambdafn.Migrate])
			if p["Timeout"] != float64(migrateTimeoutSec) || p["ReservedConcurrentExecutions"] != float64(1) {
				t.Errorf("migrate: timeout %v, reserved %v", p["Timeout"], p["ReservedConcurrentExecutions"])
			}
		})
	}
}
