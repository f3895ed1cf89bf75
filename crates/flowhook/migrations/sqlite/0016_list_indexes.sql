-- Lists with a large history (bench console: 100,000 deliveries, 10,000 instances). Every list
-- is newest first by (created_at, id): with the id in the index, a page is read in index order
-- and the read stops at the page's end, instead of reading and sorting every row of the user,
-- the originator or the status (PostgreSQL took 30-80 ms for a page of a 10,000-task list).
-- An originator's "created" count reads the index alone, without each instance's status.
DROP INDEX tasks_user;
CREATE INDEX tasks_user ON tasks (corp_id, user_id, status, created_at, id);
DROP INDEX ccs_user;
CREATE INDEX ccs_user ON ccs (corp_id, user_id, created_at, id);
DROP INDEX instances_created;
CREATE INDEX instances_created ON instances (corp_id, originator_id, created_at, id);
CREATE INDEX instances_originator_status ON instances (corp_id, originator_id, status);
DROP INDEX deliveries_corp;
CREATE INDEX deliveries_corp ON deliveries (corp_id, created_at, id);
CREATE INDEX deliveries_corp_status ON deliveries (corp_id, status, created_at, id);
