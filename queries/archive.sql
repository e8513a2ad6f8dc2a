-- name: ListArchivedEvents :many
-- Keyset pagination over (occurred_at, id) so a replay streams any amount of
-- history in bounded batches.
SELECT id, type, occurred_at, envelope FROM event_archive
WHERE (occurred_at, id) > (@after_time::timestamptz, @after_id::uuid)
  AND occurred_at < @until::timestamptz
  AND type = ANY(@types::text[])
ORDER BY occurred_at, id
LIMIT @batch_size;
