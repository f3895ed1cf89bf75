-- The cc list names the carbon node (issue 18 item 3): `ccs.node_name`, written with the cc
-- from now on; existing rows take it from their instance's state (the engine's `ccs[].nodeName`).
ALTER TABLE ccs ADD COLUMN node_name TEXT;
UPDATE ccs SET node_name = (
    SELECT json_extract(c.value, '$.nodeName')
    FROM instances i, json_each(i.state, '$.ccs') c
    WHERE i.id = ccs.instance_id AND json_extract(c.value, '$.id') = ccs.id
);
