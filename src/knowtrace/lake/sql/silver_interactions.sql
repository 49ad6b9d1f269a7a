-- One row per answer: first arrival of each event id, ordered per learner by time, then seq.
SELECT
    event_id, tenant, learner_id, item_id, concept_ids, correct, score, response,
    "timestamp", seq, elapsed_ms, attempt, session_id, source, load_id,
    row_number() OVER (
        PARTITION BY tenant, learner_id
        ORDER BY "timestamp" NULLS FIRST, seq NULLS LAST, event_id
    ) - 1 AS position
FROM (
    SELECT *,
        row_number() OVER (PARTITION BY tenant, event_id ORDER BY load_id, source_line) AS arrival
    FROM bronze_interactions
) AS arrived
WHERE arrival = 1
ORDER BY tenant, learner_id, position
