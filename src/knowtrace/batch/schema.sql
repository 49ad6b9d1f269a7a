-- knowtrace reference operational schema (PostgreSQL): the database of a tablet learning service.
-- `knowtrace source init` creates it; `knowtrace extract postgres` reads it incrementally.
-- The extractor's contract: attempts.updated_at moves forward whenever a row changes (the default
-- and the trigger below do it), and (updated_at, id) is indexed.

CREATE TABLE classes (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE learners (
    id          text PRIMARY KEY,
    class_id    text REFERENCES classes (id),
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE concepts (
    id    text PRIMARY KEY,
    name  text
);

CREATE TABLE prerequisites (
    concept_id       text NOT NULL REFERENCES concepts (id),
    prerequisite_id  text NOT NULL REFERENCES concepts (id),
    PRIMARY KEY (concept_id, prerequisite_id),
    CHECK (concept_id <> prerequisite_id)
);

CREATE TABLE items (
    id    text PRIMARY KEY,
    name  text
);

CREATE TABLE item_concepts (
    item_id     text NOT NULL REFERENCES items (id),
    concept_id  text NOT NULL REFERENCES concepts (id),
    position    integer NOT NULL DEFAULT 0,  -- the order of an item's concepts (the first is its main one)
    PRIMARY KEY (item_id, concept_id)
);

CREATE TABLE attempts (
    id           bigserial PRIMARY KEY,
    learner_id   text NOT NULL REFERENCES learners (id),
    item_id      text NOT NULL REFERENCES items (id),
    correct      boolean,
    score        double precision CHECK (score >= 0 AND score <= 1),
    response     text,
    started_at   timestamptz,
    answered_at  timestamptz,
    elapsed_ms   integer CHECK (elapsed_ms >= 0),
    attempt_no   integer NOT NULL DEFAULT 1 CHECK (attempt_no >= 1),
    session_id   text,
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX attempts_updated_at_id ON attempts (updated_at, id);
CREATE INDEX attempts_learner_id ON attempts (learner_id);

-- An UPDATE that does not set updated_at itself moves it to the transaction's start time.
CREATE FUNCTION attempts_touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER attempts_touch BEFORE UPDATE ON attempts
    FOR EACH ROW EXECUTE FUNCTION attempts_touch();
