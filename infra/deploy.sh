#!/usr/bin/env bash
# Deploys, inspects and tears down one stage's stack, ParleyChat-$STAGE.
# Every command needs STAGE; nothing defaults to production. Commands that
# delete data refuse prod/production unless CONFIRM_PROD names the stack.
#
#   STAGE=dev infra/deploy.sh deploy         # cdk deploy, first-time secrets, URLs
#   STAGE=dev infra/deploy.sh outputs        # the stack's outputs as a table
#   STAGE=dev infra/deploy.sh out ApiUrl     # one output's value
#   STAGE=dev infra/deploy.sh smoke          # GET /health on the stack's API
#   STAGE=dev infra/deploy.sh empty-bucket   # delete every object version in the media bucket
#   STAGE=dev infra/deploy.sh destroy        # empty-bucket, then cdk destroy
#
# deploy reads the stage's CDK context from infra/stages/$STAGE.context
# (key=value lines, # comments), so each deploy of a stage passes the same
# values. With NEW_DATABASE_URL and/or NEW_JWT_KEY set it stores them in the
# stack's secrets and deploys once more with a new configRevision, which
# restarts every function and re-runs the migrations against the database.
# `make lambda` must have built dist/lambda/bootstrap (`make deploy` does).
# AWS and CDK name the commands used (default: aws, and infra's pinned cdk).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
AWS="${AWS:-aws}"
CDK="${CDK:-$here/node_modules/.bin/cdk}"
export CDK_DISABLE_VERSION_CHECK=1

die() { echo "deploy: $*" >&2; exit 1; }

[ -n "${STAGE:-}" ] || die "STAGE is required (e.g. STAGE=dev); nothing defaults to a stage"
# The same rule as the CDK app's (infra/config.go): it ends up in every name.
[[ "$STAGE" =~ ^[a-z][a-z0-9-]{0,19}$ ]] || die "STAGE=$STAGE: want a lower-case name matching ^[a-z][a-z0-9-]{0,19}$"
STACK="ParleyChat-$STAGE"

is_prod() { [ "$STAGE" = prod ] || [ "$STAGE" = production ]; }

# refuse_prod stops a destructive command on a production stage unless
# CONFIRM_PROD is exactly the stack's name.
refuse_prod() {
  if is_prod && [ "${CONFIRM_PROD:-}" != "$STACK" ]; then
    die "$1 on $STACK deletes production data: refused. If you really mean it, set CONFIRM_PROD=$STACK"
  fi
}

# out prints one output of this stage's stack.
out() {
  local v
  v="$("$AWS" cloudformation describe-stacks --stack-name "$STACK" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text)"
  if [ -z "$v" ] || [ "$v" = None ]; then die "$STACK has no output $1 (is it deployed?)"; fi
  printf '%s\n' "$v"
}

trim() { printf '%s' "$1" | sed 's/^[[:space:]]*//; s/[[:space:]]*$//'; }

# context turns infra/stages/$STAGE.context into -c arguments.
context() {
  local file="$here/stages/$STAGE.context" line key value
  CONTEXT=(-c "stage=$STAGE")
  [ -f "$file" ] || return 0
  while IFS= read -r line || [ -n "$line" ]; do
    line="$(trim "${line%%#*}")"
    [ -n "$line" ] || continue
    key="$(trim "${line%%=*}")" value="$(trim "${line#*=}")"
    [[ "$line" == *=* && "$key" =~ ^[A-Za-z][A-Za-z0-9]*$ ]] || die "$file: want key=value, got: $line"
    [ "$key" != stage ] || die "$file: the stage comes from STAGE, not from the file"
    CONTEXT+=(-c "$key=$value")
  done <"$file"
}

cdk_deploy() {
  command -v "$CDK" >/dev/null || die "$CDK not found: run (cd infra && npm ci) once"
  context
  # Production stops to show widened IAM or security group rules first.
  local approval=never
  if is_prod; then approval=broadening; fi
  (cd "$here" && "$CDK" deploy "$STACK" "${CONTEXT[@]}" "$@" --require-approval "$approval" --no-notices)
}

cmd_deploy() {
  [ -s "$here/../dist/lambda/bootstrap" ] || die "dist/lambda/bootstrap is missing: run make lambda (make deploy does)"
  cdk_deploy
  local restart=""
  if [ -n "${NEW_DATABASE_URL:-}" ]; then
    [[ "$NEW_DATABASE_URL" == postgres://* || "$NEW_DATABASE_URL" == postgresql://* ]] ||
      die "NEW_DATABASE_URL: want postgres://USER:PASSWORD@HOST:5432/DB?sslmode=require"
    echo "deploy: storing NEW_DATABASE_URL in $STACK's database URL secret"
    "$AWS" secretsmanager put-secret-value --secret-id "$(out DatabaseUrlSecretArn)" --secret-string "$NEW_DATABASE_URL" >/dev/null
    restart=1
  fi
  if [ -n "${NEW_JWT_KEY:-}" ]; then
    echo "deploy: storing NEW_JWT_KEY in $STACK's JWT secret"
    "$AWS" secretsmanager put-secret-value --secret-id "$(out JwtSecretArn)" --secret-string "$NEW_JWT_KEY" >/dev/null
    restart=1
  fi
  if [ -n "$restart" ]; then
    # Functions read secrets at cold start; a new revision starts fresh
    # environments and re-runs the migrations with the new URL.
    cdk_deploy -c "configRevision=secrets-$(date -u +%Y%m%d%H%M%S)"
  fi
  echo "CHAT_API_URL=$(out ApiUrl)"
  echo "CHAT_WS_URL=$(out WebSocketUrl)"
}

cmd_empty_bucket() {
  refuse_prod empty-bucket
  local bucket batch
  bucket="$(out MediaBucketName)"
  echo "deploy: deleting every object version in $bucket ($STACK)"
  while :; do
    # shellcheck disable=SC2016 # `true` is a JMESPath literal
    batch="$("$AWS" s3api list-object-versions --bucket "$bucket" --no-paginate --max-keys 1000 --output json \
      --query '{Objects: [Versions,DeleteMarkers][].{Key:Key,VersionId:VersionId}, Quiet: `true`}')"
    [[ "$batch" == *'"Key"'* ]] || break
    "$AWS" s3api delete-objects --bucket "$bucket" --delete "$batch" >/dev/null
  done
}

cmd_destroy() {
  refuse_prod destroy
  # S3 deletes only an empty bucket; prod keeps its bucket (and the rest of
  # its data) anyway, so there is nothing to empty there.
  is_prod || cmd_empty_bucket
  command -v "$CDK" >/dev/null || die "$CDK not found: run (cd infra && npm ci) once"
  context
  (cd "$here" && "$CDK" destroy "$STACK" "${CONTEXT[@]}" --force --no-notices)
}

cmd_outputs() {
  "$AWS" cloudformation describe-stacks --stack-name "$STACK" --query 'Stacks[0].Outputs' --output table
}

cmd_smoke() {
  local api
  api="$(out ApiUrl)"
  curl -fsS "${api%/api/v1/chat}/health"
  echo
}

case "${1:-}" in
deploy) cmd_deploy ;;
outputs) cmd_outputs ;;
out) [ -n "${2:-}" ] || die "usage: out OUTPUT_KEY"; out "$2" ;;
smoke) cmd_smoke ;;
empty-bucket) cmd_empty_bucket ;;
destroy) cmd_destroy ;;
*) die "usage: STAGE=NAME $0 deploy | outputs | out KEY | smoke | empty-bucket | destroy" ;;
esac
