-- Replays are recognised by what is signed, not by the unsigned X-Flowhook-* headers:
-- `dedup_key` becomes the event's natural key (`nat:<kind>:<appType>:<taskId|ccId|formInstId>`),
-- and the `sign` of every receipt is kept, unique per source (a value moved across adjacent
-- parameters keeps the sign; see the README). The event id header stays unique too.
ALTER TABLE receipts ADD COLUMN sign TEXT; -- lower-case; NULL on receipts older than 0002

-- Earlier receipts take their natural key; where a replay was stored twice before this
-- migration, the first stored (lowest arrival) takes it and the others keep their old key.
UPDATE receipts SET dedup_key = 'nat:' || kind || ':' || app_type || ':' || COALESCE(item_id, form_inst_id)
WHERE NOT EXISTS (
    SELECT 1 FROM receipts r
    WHERE r.source = receipts.source AND r.kind = receipts.kind AND r.app_type = receipts.app_type
      AND COALESCE(r.item_id, r.form_inst_id) = COALESCE(receipts.item_id, receipts.form_inst_id)
      AND (r.arrival < receipts.arrival OR (r.arrival = receipts.arrival AND r.dedup_key < receipts.dedup_key))
);

CREATE UNIQUE INDEX receipts_sign ON receipts (source, sign);
CREATE UNIQUE INDEX receipts_event_id ON receipts (source, event_id);
