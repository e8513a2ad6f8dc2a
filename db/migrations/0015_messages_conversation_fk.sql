-- Messages no longer carry a foreign key to their conversation. The
-- persister is the only writer of messages, and it stores a conversation's
-- messages only while it holds that conversation's row lock
-- (LockConversations), taken on a row that exists: it recreates a lost
-- conversation first, and a group's messages wait for the group. The key's
-- check was a query per stored message, at the end of each batch insert:
-- three quarters of that statement's time under load. Conversations are
-- never deleted, so its ON DELETE CASCADE had nothing to do.
ALTER TABLE messages DROP CONSTRAINT messages_conversation_id_fkey;
