-- A systemToken rotation is two-step: after `rotate-token` Flowhook keeps signing with the
-- previous token (`previous_signs`) until the operator commits the rotation or the grace
-- (`previous_valid_until`) ends, so a receiver can install the new token before it is used.
-- Rows rotated before this migration sign with their new token already (FALSE).
ALTER TABLE apps ADD COLUMN previous_signs BOOLEAN NOT NULL DEFAULT FALSE;
