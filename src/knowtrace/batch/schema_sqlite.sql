-- knowtrace reference operational schema, SQLite dialect (the embedded stand-in of schema.sql).
-- Time stamps are UTC ISO 8601 text. updated_at is always written by SQLite itself, as
-- 'YYYY-MM-DDTHH:MM:SS.SSSZ', so that text order is time order: the extractor compares it as text.

CREATE TABLE classes (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE learners (
    id          TEXT PRIMARY KEY,
    class_id    TEXT REFERENCES classes (id),
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE concepts (
    id    TEXT PRIMARY KEY,
    name  TEXT
);

CREATE TABLE prerequisites (
    concept_id       TEXT NOT NULL REFERENCES concepts (id),
    prerequisite_id  TEXT NOT NULL REFERENCES concepts (id),
    PRIMARY KEY (concept_id, prerequisite_id),
    CHECK (concept_id <> prerequisite_id)
);

CREATE TABLE items (
    id    TEXT PRIMARY KEY,
    name  TEXT
);

CREATE TABLE item_concepts (
    item_id     TEXT NOT NULL REFERENCES items (id),
    concept_id  TEXT NOT NULL REFERENCES concepts (id),
    position    INTEGER NOT NULL DEFAULT 0,  -- the order of an item's concepts (the first is its main one)
    PRIMARY KEY (item_id, concept_id)
);

CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    learner_id   TEXT NOT NULL REFERENCES learners (id),
    item_id      TEXT NOT NULL REFERENCES items (id),
    correct      INTEGER CHECK (correct IN (0, 1)),
    score        REAL CHECK (score >= 0 AND score <= 1),
    response     TEXT,
    started_at   TEXT,
    answered_at  TEXT,
    elapsed_ms   INTEGER CHECK (elapsed_ms >= 0),
    attempt_no   INTEGER NOT NULL DEFAULT 1 CHECK (attempt_no >= 1),
    session_id   TEXT,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX attempts_updated_at_id ON attempts (updated_at, id);
CREATE INDEX attempts_learner_id ON attempts (learner_id);

-- An UPDATE that does not set updated_at itself moves it to now.
CREATE TRIGGER attempts_touch AFTER UPDATE ON attempts
    FOR EACH ROW WHEN NEW.updated_at IS OLD.updated_at
BEGIN
    UPDATE attempts SET updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = NEW.id;
END;
