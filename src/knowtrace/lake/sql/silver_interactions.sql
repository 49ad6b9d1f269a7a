-- One row per answer: first arrival of each event id (latest for batch extracts), ordered per learner
-- by time, then seq.
SELECT
    event_id, tenant, learner_id, item_id, concept_ids, correct, score, response,
    "timestamp", seq, elapsed_ms, attempt, session_id, source, load_id,
    row_number() OVER (
        PARTITION BY tenant, learner_id
        ORDER BY "timestamp" NULLS FIRST, seq NULLS LAST, event_id
    ) - 1 AS position
FROM (
    SELECT *,
        row_number() OVER (
            PARTITION BY tenant, event_id
            -- a batch extract re-reads a changed source row: its newest load holds the row's latest state;
            -- every other source keeps the first arrival
            ORDER BY CASE WHEN source = 'batch' THEN load_id END DESC NULLS LAST, load_id, source_line
        ) AS arrival
    FROM bronze_interactions
) AS arrived
WHERE arrival = 1
ORDER BY tenant, learner_id, position
