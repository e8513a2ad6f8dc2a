-- Reads of messages the persister has not stored yet: queues do not promise
-- order, so a receipt can arrive before its message. The message's insert
-- applies its row (same conversation, addressed to the reader) and deletes
-- it. Ids that never become a message (a client's mistake) stay until the
-- persister prunes rows older than its retention, and nothing retries them.
CREATE TABLE pending_reads (
    message_id      uuid NOT NULL,
    reader_id       bigint NOT NULL,
    conversation_id uuid NOT NULL,
    read_at         timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (message_id, reader_id)
);
CREATE INDEX pending_reads_recorded_idx ON pending_reads (recorded_at);
