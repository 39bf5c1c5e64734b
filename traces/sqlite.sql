-- The SQL run by sqlite3 for sqlite3.trace.gz (see README.md).
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO t SELECT i, printf('name-%05d', (i * 7919) % 20000), (i * 37 % 1000) / 10.0,
       substr(hex(randomblob(64)), 1, 20 + i % 100) FROM n;
CREATE INDEX t_name ON t(name);
CREATE INDEX t_score ON t(score);
SELECT count(*), avg(score) FROM t WHERE score > 50;
SELECT name, length(note) FROM t ORDER BY note LIMIT 5;
SELECT score, count(*) FROM t GROUP BY score ORDER BY 2 DESC LIMIT 3;
UPDATE t SET note = note || note WHERE id % 3 = 0;
DELETE FROM t WHERE id % 5 = 0;
VACUUM;
SELECT count(*) FROM t;
