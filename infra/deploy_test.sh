#!/usr/bin/env bash
# Tests deploy.sh's stage safety without AWS: `aws` and `cdk` are small
# recording stubs (AWS itself cannot run here). Each records its arguments
# to calls.log; the aws stub answers describe-stacks from canned outputs of
# the stack it is asked about, and lists one page of object versions.
#   infra/deploy_test.sh      (make deploy-test; make test runs it)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fails=0

mkdir -p "$work/bin" "$work/infra/stages" "$work/dist/lambda"
cp "$here/deploy.sh" "$work/infra/deploy.sh"
: >"$work/dist/lambda/bootstrap.tmp"

cat >"$work/bin/aws" <<'STUB'
#!/usr/bin/env bash
echo "aws $*" >>"$CALLS"
stack="" key=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
  --stack-name) stack="${args[i + 1]}" ;;
  --query) [[ "${args[i + 1]}" =~ OutputKey==\'([A-Za-z]+)\' ]] && key="${BASH_REMATCH[1]}" ;;
  esac
done
case "$1 $2" in
"cloudformation describe-stacks")
  [ -n "$key" ] || { echo "table of $stack"; exit 0; }
  case "$key" in
  MediaBucketName) echo "${stack,,}-media" ;;
  ApiUrl) echo "https://api.example/${stack}/api/v1/chat" ;;
  WebSocketUrl) echo "wss://ws.example/${stack}" ;;
  *SecretArn) echo "arn:aws:secretsmanager:us-east-1:123456789012:secret:${stack}-${key}-AbC123" ;;
  *) echo None ;;
  esac ;;
"s3api list-object-versions")
  # One page of versions, then an empty bucket.
  if [ ! -e "$CALLS.listed" ]; then
    : >"$CALLS.listed"
    echo '{"Objects":[{"Key":"chat/1/a.jpg","VersionId":"v1"}],"Quiet":true}'
  else
    echo '{"Objects":[],"Quiet":true}'
  fi ;;
esac
STUB
cat >"$work/bin/cdk" <<'STUB'
#!/usr/bin/env bash
echo "cdk $*" >>"$CALLS"
STUB
chmod +x "$work/bin/aws" "$work/bin/cdk"

# run STAGE [VAR=value...] -- ARGS: runs deploy.sh with a fresh call log;
# its status is in $status, its output in $output.
run() {
  local stage="$1"; shift
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  rm -f "$work/calls.log" "$work/calls.log.listed"
  : >"$work/calls.log"
  set +e
  output="$(env -i PATH="$work/bin:$PATH" HOME="$work" CALLS="$work/calls.log" AWS=aws CDK=cdk \
    ${stage:+STAGE="$stage"} "${envs[@]}" bash "$work/infra/deploy.sh" "$@" 2>&1)"
  status=$?
  set -e
  calls="$(cat "$work/calls.log")"
}
fail() { echo "FAIL: $*"; echo "  output: $output"; echo "  calls: ${calls//$'\n'/$'\n         '}"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }

# 1. No stage: nothing runs.
run "" -- deploy
if [ "$status" -ne 0 ] && [[ "$output" == *"STAGE is required"* ]] && [ -z "$calls" ]; then ok "no STAGE refused"; else fail "no STAGE"; fi

# 2. A stage that could inject into names or commands is refused.
run 'dev;x' -- outputs
if [ "$status" -ne 0 ] && [ -z "$calls" ]; then ok "bad STAGE refused"; else fail "bad STAGE"; fi

# 3-5. Production's destructive commands need CONFIRM_PROD=ParleyChat-<stage>.
for stage in prod production; do
  for cmd in destroy empty-bucket; do
    for confirm in "" "CONFIRM_PROD=yes" "CONFIRM_PROD=ParleyChat-dev"; do
      run "$stage" ${confirm:+"$confirm"} -- "$cmd"
      if [ "$status" -ne 0 ] && [[ "$output" == *"CONFIRM_PROD=ParleyChat-$stage"* ]] && [ -z "$calls" ]; then
        ok "$stage $cmd refused (${confirm:-no CONFIRM_PROD})"
      else
        fail "$stage $cmd ran with ${confirm:-no CONFIRM_PROD}"
      fi
    done
  done
done
run prod CONFIRM_PROD=ParleyChat-prod -- empty-bucket
if [ "$status" -eq 0 ] && [[ "$calls" == *"delete-objects --bucket parleychat-prod-media"* ]]; then ok "prod empty-bucket with CONFIRM_PROD"; else fail "prod empty-bucket confirmed"; fi

# 6. Dev tear-down reads dev's outputs only, empties dev's bucket, then destroys dev.
run dev -- destroy
if [ "$status" -eq 0 ] && [[ "$calls" != *prod* ]] &&
  [[ "$calls" == *"describe-stacks --stack-name ParleyChat-dev"* ]] &&
  [ "$(grep -c 'delete-objects --bucket parleychat-dev-media' <<<"$calls")" = 1 ] &&
  [ "$(tail -n1 <<<"$calls")" = "cdk destroy ParleyChat-dev -c stage=dev --force --no-notices" ]; then
  ok "dev destroy: dev's bucket emptied first, then dev destroyed"
else
  fail "dev destroy"
fi

# 7. Deploy needs the binary, passes the stage's context file, prints the URLs.
run dev -- deploy
if [ "$status" -ne 0 ] && [[ "$output" == *"make lambda"* ]] && [ -z "$calls" ]; then ok "deploy without bootstrap refused"; else fail "deploy without bootstrap"; fi
mv "$work/dist/lambda/bootstrap.tmp" "$work/dist/lambda/bootstrap"
echo x >"$work/dist/lambda/bootstrap"
printf '# staging\nalarmEmail=ops@example.com\n\n reservedConcurrency = api=4 \n' >"$work/infra/stages/staging.context"
run staging -- deploy
if [ "$status" -eq 0 ] &&
  [ "$(grep '^cdk' <<<"$calls")" = "cdk deploy ParleyChat-staging -c stage=staging -c alarmEmail=ops@example.com -c reservedConcurrency=api=4 --require-approval never --no-notices" ] &&
  [[ "$output" == *"CHAT_API_URL=https://api.example/ParleyChat-staging/api/v1/chat"* ]] &&
  [[ "$output" == *"CHAT_WS_URL=wss://ws.example/ParleyChat-staging"* ]] && [[ "$calls" != *secretsmanager* ]]; then
  ok "deploy: one cdk deploy with the stage's context, then the URLs"
else
  fail "deploy staging"
fi

# 8. First-time secrets go into this stage's secrets, then one more deploy.
run dev NEW_DATABASE_URL=postgres://u:p@db.example:5432/chat?sslmode=require NEW_JWT_KEY=k -- deploy
if [ "$status" -eq 0 ] &&
  [[ "$calls" == *"put-secret-value --secret-id arn:aws:secretsmanager:us-east-1:123456789012:secret:ParleyChat-dev-DatabaseUrlSecretArn-AbC123 --secret-string postgres://u:p@db.example:5432/chat?sslmode=require"* ]] &&
  [[ "$calls" == *"put-secret-value --secret-id arn:aws:secretsmanager:us-east-1:123456789012:secret:ParleyChat-dev-JwtSecretArn-AbC123 --secret-string k"* ]] &&
  [ "$(grep -c '^cdk deploy ParleyChat-dev' <<<"$calls")" = 2 ] &&
  [[ "$(grep '^cdk' <<<"$calls" | tail -n1)" == *"-c configRevision=secrets-"* ]]; then
  ok "first-time secrets stored, then a restarting deploy"
else
  fail "first-time secrets"
fi
run dev NEW_DATABASE_URL=mysql://x -- deploy
if [ "$status" -ne 0 ] && [[ "$calls" != *put-secret-value* ]]; then ok "a non-postgres URL is refused"; else fail "bad NEW_DATABASE_URL"; fi

# 9. Production asks before widening permissions; other stages do not.
run prod -- deploy
if [ "$status" -eq 0 ] && [[ "$(grep '^cdk' <<<"$calls")" == "cdk deploy ParleyChat-prod -c stage=prod --require-approval broadening --no-notices" ]]; then
  ok "prod deploy asks before broadening changes"
else
  fail "prod deploy approval"
fi

# 10. The context file cannot switch the stage.
printf 'stage=prod\n' >"$work/infra/stages/dev.context"
run dev -- deploy
if [ "$status" -ne 0 ] && [[ "$output" == *"stage comes from STAGE"* ]] && [[ "$calls" != *cdk* ]]; then ok "stage= in a context file refused"; else fail "stage in context file"; fi

[ "$fails" -eq 0 ] || { echo "$fails failed"; exit 1; }
echo "deploy.sh: all checks passed"
