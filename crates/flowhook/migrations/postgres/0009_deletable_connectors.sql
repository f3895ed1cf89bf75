-- Connectors and actions can be edited and deleted. A deleted one stays, marked, because the
-- delivery log still names it (deliveries reference actions); its pending deliveries were
-- cancelled in the transaction that deleted it (status `cancelled`, the reason in
-- `last_error`): nothing vanishes.
ALTER TABLE connectors ADD COLUMN deleted_at BIGINT;
ALTER TABLE actions ADD COLUMN deleted_at BIGINT;
