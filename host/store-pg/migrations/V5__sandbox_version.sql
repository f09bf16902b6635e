-- Sandbox rules shared by every node, version 5
-- (docs/adr/0029-postgresql-store-and-multi-node.md, "Sandbox rules on the
-- cluster"). Every change of `sandbox_rules` (a rule added, removed, or
-- counted down by a call it applied to) bumps this number in the same
-- transaction; nodes keep the rules in memory and re-read them when it
-- moves.
CREATE TABLE sandbox_version (
    id      boolean PRIMARY KEY DEFAULT true CHECK (id),
    version bigint  NOT NULL CHECK (version >= 0)
);
INSERT INTO sandbox_version (id, version) VALUES (true, 0);
