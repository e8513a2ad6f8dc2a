# The two commands most people need:
#   make dev    run the whole system locally (PostgreSQL must be installed)
#   make test   run every check and test
# and make build, which puts the chat binary at dist/chat.
SHELL := bash
GO ?= go
# The local stand-ins that test-deps installs live in tools/bin (ignored by git),
# so nothing depends on GOPATH/bin existing or being on PATH.
BIN := $(CURDIR)/tools/bin
export PATH := $(BIN):$(PATH)
TOOL := $(GO) tool -modfile=tools/go.mod

.PHONY: dev build test bench-check check generate test-deps postgres bench lambda infra-test fuzz browser browser-check deploy destroy outputs smoke deploy-test

# Built, then run with exec, so that Ctrl-C reaches chat alone and its exit
# status (0 after a clean shutdown) is make's.
dev: postgres build
	exec dist/chat dev

build:
	$(GO) build -o dist/chat ./cmd/chat

# The stack takes its routes and handler names from the app, so a change to
# either is only tested once the infra tests have run too.
test: test-deps check
	$(GO) test -count=1 ./...
	$(MAKE) bench-check
	@$(MAKE) -s browser-check
	$(MAKE) fuzz
	$(MAKE) deploy-test
	$(MAKE) infra-test

# Fuzz targets, each fuzzed for a number of executions (about three seconds
# on two cores; go test ./... runs only their seed corpora, in testdata/fuzz).
# Counts, not durations: with a -fuzztime duration Go 1.26 can fail a target
# with a bare "context deadline exceeded" when the deadline meets a worker
# mid-run (go.dev/issue/75804), which a count has no deadline to race.
# FUZZ_TIME (e.g. 5m) fuzzes every target for that long instead. A crasher is
# written to that package's testdata/fuzz: fix the bug and commit the file as
# a seed.
FUZZ_TIME ?=
FUZZ_TARGETS := events:FuzzDecode:100000 api:FuzzWebSocketFrame:8000 api/auth:FuzzVerifier:60000 \
	api/auth:FuzzIssueVerify:40000 api/auth:FuzzJWKS:60000 internal/media:FuzzSniff:10000 \
	internal/media:FuzzAudioDuration:20000 internal/thumbnail:FuzzImage:50
fuzz:
	@for t in $(FUZZ_TARGETS); do IFS=: read -r pkg name count <<<"$$t"; \
	  $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $${FUZZ_TIME:-$${count}x} ./$$pkg || exit 1; done

# Static checks, including that committed sqlc output matches the queries.
check:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^infra/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(TOOL) sqlc diff || { echo "generated code is stale: run 'make generate' and commit the result"; exit 1; }
	$(GO) vet ./...
	$(TOOL) staticcheck ./...

generate:
	$(TOOL) sqlc generate

# Local protocol servers the tests start themselves: SQS (goaws), DynamoDB
# (dynalite) and the Lambda Runtime Interface Emulator (aws-lambda-rie).
# Installed once, from the Go module proxy and npm.
test-deps: postgres
	@mkdir -p $(BIN)
	@[ -x $(BIN)/goaws ] || { \
	  echo "installing goaws (local SQS)"; \
	  tmp=$$(mktemp -d) && GOBIN=$$tmp $(GO) install github.com/Admiral-Piett/goaws/app/cmd@v0.5.4 && \
	  mv $$tmp/cmd $(BIN)/goaws && rm -rf $$tmp; }
	@[ -x $(BIN)/aws-lambda-rie ] || { \
	  echo "installing aws-lambda-rie (Lambda Runtime Interface Emulator)"; \
	  GOBIN=$(BIN) $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d; }
	@[ -x $(BIN)/dynalite ] || { \
	  echo "installing dynalite (local DynamoDB)"; \
	  npm install --prefix tools/node --no-save --no-audit --no-fund --no-package-lock dynalite@4 >/dev/null && \
	  ln -sf ../node/node_modules/.bin/dynalite $(BIN)/dynalite; }

# The demo client's browser test (cmd/chat/democlient_test.go) drives a
# headless Chromium (CHAT_CHROMIUM, or one of these on PATH). Without one it
# skips, unless CHAT_REQUIRE_BROWSER=1 (CI), which makes that a failure.
CHROMIUM := $(or $(CHAT_CHROMIUM),chromium chromium-browser google-chrome google-chrome-stable headless_shell)
HAVE_CHROMIUM = for b in $(CHROMIUM); do command -v $$b >/dev/null && exit 0; done
browser-check:
	@$(HAVE_CHROMIUM); \
	  echo "NOTE: no Chromium found, so the demo client's browser test was skipped."; \
	  echo "      Install it with 'apt-get install -y chromium' (Debian/Ubuntu) or 'make browser', then run make test again."

# Installs Chromium from the OS packages if none is there (.ci/run does this).
browser:
	@$(HAVE_CHROMIUM); \
	  command -v apt-get >/dev/null || { echo "no Chromium and no apt-get: install Chromium and put it on PATH (or set CHAT_CHROMIUM)"; exit 1; }; \
	  sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); echo "installing Chromium (apt-get install chromium)"; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

# Starts the machine's PostgreSQL cluster if it is installed but down.
postgres:
	@pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null || { \
	  command -v pg_ctlcluster >/dev/null || { echo "PostgreSQL is not running on 127.0.0.1:5432 and pg_ctlcluster is not installed"; exit 1; }; \
	  echo "starting PostgreSQL"; pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 30); do pg_isready -h 127.0.0.1 -p 5432 -q && exit 0; sleep 1; done; echo "PostgreSQL did not start"; exit 1; }

# Every benchmark once, so that a benchmark broken by a schema or API change
# fails the tests instead of the next person who measures.
bench-check: postgres
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1x ./...

bench: postgres
	$(GO) test -run '^$$' -bench . -benchtime 2000x ./api/

# The Lambda binary: one bootstrap for every function.
lambda:
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -tags lambda.norpc -ldflags="-s -w" -o dist/lambda/bootstrap ./cmd/chat

# The CDK app's own module: template assertions and an offline synth. Needs
# Node.js; runs `npm ci` in infra/ the first time.
infra-test:
	cd infra && ./test.sh

# One stage's stack, ParleyChat-$(STAGE): STAGE is required, nothing
# defaults to production (see DEPLOY.md and infra/deploy.sh). deploy builds
# the bootstrap, deploys (migrations run inside the deploy) and prints the
# app's URLs; destroy refuses prod without CONFIRM_PROD=ParleyChat-prod.
deploy:
	@[ -n "$(STAGE)" ] || { echo "STAGE is required, e.g. make deploy STAGE=dev"; exit 1; }
	$(MAKE) lambda
	STAGE="$(STAGE)" infra/deploy.sh deploy

destroy outputs smoke:
	STAGE="$(STAGE)" infra/deploy.sh $@

# deploy.sh's stage safety, with aws and cdk stubbed (no AWS needed).
deploy-test:
	infra/deploy_test.sh
	@if command -v shellcheck >/dev/null; then shellcheck infra/deploy.sh infra/deploy_test.sh; fi
