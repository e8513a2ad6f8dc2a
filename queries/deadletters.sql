-- name: InsertDeadLetter :one
INSERT INTO dead_letters (worker, event_id, event_type, envelope, error, attempts)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id;

-- name: ListDeadLetters :many
SELECT * FROM dead_letters
WHERE (sqlc.narg('worker')::text IS NULL OR worker = sqlc.narg('worker')::text)
  AND (@include_redriven::boolean OR redriven_at IS NULL)
ORDER BY id
LIMIT @page_limit;

-- name: GetDeadLetter :one
SELECT * FROM dead_letters WHERE id = $1;

-- name: MarkDeadLetterRedriven :exec
UPDATE dead_letters SET redriven_at = now() WHERE id = $1;

-- name: PurgeDeadLetters :execrows
-- Deletes dead letters: one by id, a worker's, or every one.
DELETE FROM dead_letters
WHERE (sqlc.narg('worker')::text IS NULL OR worker = sqlc.narg('worker')::text)
  AND (sqlc.narg('id')::bigint IS NULL OR id = sqlc.narg('id')::bigint);

-- name: CountPendingDeadLetters :many
SELECT worker, count(*) AS pending FROM dead_letters WHERE redriven_at IS NULL GROUP BY worker;

-- name: ConsumerApplications :many
SELECT DISTINCT application_name::text FROM pg_catalog.pg_stat_activity
WHERE datname = current_database() AND starts_with(application_name, sqlc.arg(prefix)::text);
