-- Last writer wins per setting. A settings change carries only the settings
-- it changes, and queues do not promise order: with one change time per
-- participant, an older change arriving after a newer change of another
-- setting (pin, then mute, delivered mute first) was dropped whole. Each
-- setting now keeps the time of its own last change; settings_changed_at
-- stays the latest of them.
ALTER TABLE conversation_participants
    ADD COLUMN pinned_changed_at   timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN muted_changed_at    timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN archived_changed_at timestamptz NOT NULL DEFAULT 'epoch',
    ADD COLUMN deleted_changed_at  timestamptz NOT NULL DEFAULT 'epoch';

UPDATE conversation_participants
SET pinned_changed_at = settings_changed_at, muted_changed_at = settings_changed_at,
    archived_changed_at = settings_changed_at, deleted_changed_at = settings_changed_at;
