-- A connector is paused when its endpoint answers 410 Gone (or an operator pauses it): nothing
-- is sent to it until it is resumed; its deliveries wait, nothing is lost.
ALTER TABLE connectors ADD COLUMN paused_at BIGINT;
ALTER TABLE connectors ADD COLUMN paused_reason TEXT;
