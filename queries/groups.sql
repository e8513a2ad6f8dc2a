-- name: LockGroup :one
-- Groups (migration 0013): membership is written at ingress under the
-- group's row lock and applied again by the persister from its event.
-- Taken by every membership change at ingress, first, for the rest of its
-- transaction: changes of one group are serialized, and a send reading
-- the members (GroupMembersForSend) waits for a change in progress. Answers
-- the database's clock, read under the lock: the change's time.
SELECT c.id, c.title, clock_timestamp()::timestamptz AS clock FROM conversations c
WHERE c.id = @id AND c.kind = 'group'
FOR UPDATE;

-- name: ShareLockGroup :one
-- A send's share of the group's row lock, held for its transaction: no
-- membership change (FOR UPDATE) commits between it and the members read
-- next. A key share, so that it does not wait for the persister storing
-- the group's messages (LockConversations, FOR NO KEY UPDATE).
SELECT c.id FROM conversations c WHERE c.id = @id AND c.kind = 'group' FOR KEY SHARE;

-- name: GroupMembersForSend :many
-- The current members of a group with the database's clock, read after
-- ShareLockGroup in its transaction: the message's created_at, so that it
-- falls within the window of exactly these members.
SELECT p.user_id, clock_timestamp()::timestamptz AS clock FROM conversation_participants p
WHERE p.conversation_id = @conversation_id AND p.left_at IS NULL
ORDER BY p.user_id;

-- name: ListGroupParticipants :many
-- Every participant of a group, former members included, with their role
-- and window.
SELECT p.user_id, p.role, p.joined_at, p.left_at FROM conversation_participants p
WHERE p.conversation_id = @conversation_id
ORDER BY p.user_id;

-- name: InsertGroup :execrows
-- Creates a group; a replay of its creation finds it and changes nothing.
INSERT INTO conversations (id, kind, title, title_changed_at, created_by, created_at, updated_at)
VALUES (@id, 'group', @title, @created_at, @created_by, @created_at, @created_at)
ON CONFLICT (id) DO NOTHING;

-- name: JoinGroup :many
-- Makes users members with a role, as of a time: a user who is not a
-- member (never was, or left) joins, with a new window starting then; a
-- current member is left as they are. Last writer wins: a membership
-- changed at or after that time (a newer removal applied first) is not
-- overwritten. Answers the users who joined.
INSERT INTO conversation_participants AS p
    (conversation_id, user_id, role, role_changed_at, joined_at, membership_changed_at, left_at)
SELECT @conversation_id, u.user_id, (@roles::text[])[u.ord], @at, @at, @at, NULL
FROM unnest(@user_ids::bigint[]) WITH ORDINALITY AS u(user_id, ord)
ORDER BY u.user_id
ON CONFLICT (conversation_id, user_id) DO UPDATE
SET role = EXCLUDED.role, role_changed_at = EXCLUDED.role_changed_at,
    joined_at = EXCLUDED.joined_at, membership_changed_at = EXCLUDED.membership_changed_at, left_at = NULL,
    -- A new window: what the earlier one read says nothing of it.
    last_read_seq = 0, last_delivered_seq = 0
WHERE p.left_at IS NOT NULL AND p.membership_changed_at < EXCLUDED.membership_changed_at
RETURNING p.user_id;

-- name: LeaveGroup :many
-- Ends the membership of users as of a time, if they are members and no
-- newer change says otherwise. Answers the users who left.
UPDATE conversation_participants p
SET left_at = @at::timestamptz, membership_changed_at = @at::timestamptz
WHERE p.conversation_id = @conversation_id AND p.user_id = ANY(@user_ids::bigint[])
  AND p.left_at IS NULL AND p.membership_changed_at < @at::timestamptz
RETURNING p.user_id;

-- name: SetGroupRole :execrows
-- Last writer wins by the time of the change, for a current member.
UPDATE conversation_participants p
SET role = @role, role_changed_at = @at
WHERE p.conversation_id = @conversation_id AND p.user_id = @user_id
  AND p.left_at IS NULL AND p.role_changed_at < @at::timestamptz;

-- name: RenameGroup :execrows
-- Last writer wins by the time of the change.
UPDATE conversations c SET title = @title, title_changed_at = @at, updated_at = now()
WHERE c.id = @id AND c.kind = 'group' AND c.title_changed_at < @at::timestamptz;

-- name: StartReadAt :exec
-- A member who joined has read nothing before their window: their read
-- position starts just below the system message that added them (read_seq), so that their
-- unread count does not scan the history before it.
UPDATE conversation_participants p
SET last_read_seq = GREATEST(p.last_read_seq, @read_seq::bigint)
WHERE p.conversation_id = @conversation_id AND p.user_id = ANY(@user_ids::bigint[]);

-- name: GroupReceiptCounts :many
-- For a page of a group's messages, how many of the members who may see
-- each (within their window, not its sender) it was delivered to and read
-- by, from their positions.
SELECT m.id,
       count(p.user_id)::bigint AS recipients,
       count(p.user_id) FILTER (WHERE p.last_delivered_seq >= m.seq OR p.last_read_seq >= m.seq)::bigint AS delivered,
       count(p.user_id) FILTER (WHERE p.last_read_seq >= m.seq)::bigint AS read
FROM messages m
LEFT JOIN conversation_participants p ON p.conversation_id = m.conversation_id AND p.user_id <> m.sender_id
     AND m.created_at >= p.joined_at AND m.created_at <= COALESCE(p.left_at, 'infinity')
WHERE m.id = ANY(@ids::uuid[])
GROUP BY m.id;

-- name: AdvanceDeliveredPositions :exec
-- Group delivery receipts: each member's delivered position rises to the
-- highest message delivered to them.
UPDATE conversation_participants p
SET last_delivered_seq = GREATEST(p.last_delivered_seq, r.seq)
FROM (SELECT m.conversation_id, d.user_id, max(m.seq) AS seq
      FROM (SELECT (@message_ids::uuid[])[g.k] AS message_id, (@user_ids::bigint[])[g.k] AS user_id
            FROM generate_series(1, cardinality(@message_ids::uuid[])) AS g(k)) d
      JOIN messages m ON m.id = d.message_id AND m.recipient_id IS NULL
      GROUP BY m.conversation_id, d.user_id) r
WHERE p.conversation_id = r.conversation_id AND p.user_id = r.user_id;

-- name: GetViewer :one
-- A participant's row with their conversation's kind: what decides which
-- messages they see.
SELECT sqlc.embed(p), c.kind FROM conversation_participants p
JOIN conversations c ON c.id = p.conversation_id
WHERE p.conversation_id = @conversation_id AND p.user_id = @user_id;

-- name: MaxSeqOfGroupMessages :one
-- The highest sequence of a group read receipt's stored messages that the
-- reader did not send.
SELECT COALESCE(max(m.seq), 0)::bigint FROM messages m
WHERE m.id = ANY(@ids::uuid[]) AND m.conversation_id = @conversation_id
  AND m.recipient_id IS NULL AND m.sender_id <> @reader_id::bigint;

-- name: AdvanceGroupReadPosition :execrows
-- Raises a member's read position; no row when it was there already.
UPDATE conversation_participants
SET last_read_seq = @seq::bigint,
    last_read_at  = GREATEST(COALESCE(last_read_at, @read_at::timestamptz), @read_at::timestamptz)
WHERE conversation_id = @conversation_id AND user_id = @user_id AND last_read_seq < @seq::bigint;

-- name: GroupTitleAt :one
-- A group's title as of a time: what a former member saw when they left.
SELECT COALESCE((SELECT m.system->>'title' FROM messages m
    WHERE m.conversation_id = @conversation_id AND m.content_type = 'system'
      AND m.system->>'action' IN ('created', 'renamed') AND m.created_at <= @at::timestamptz
    ORDER BY m.seq DESC LIMIT 1), '')::text AS title;
