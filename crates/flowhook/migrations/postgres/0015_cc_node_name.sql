-- The cc list names the carbon node (issue 18 item 3): `ccs.node_name`, written with the cc
-- from now on; existing rows take it from their instance's state (the engine's `ccs[].nodeName`).
ALTER TABLE ccs ADD COLUMN node_name TEXT;
UPDATE ccs SET node_name = c.value ->> 'nodeName'
FROM instances i, jsonb_array_elements(i.state::jsonb -> 'ccs') c
WHERE i.id = ccs.instance_id AND c.value ->> 'id' = ccs.id;
