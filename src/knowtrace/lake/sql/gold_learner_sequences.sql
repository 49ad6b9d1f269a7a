-- Model-ready sequences: one row per learner, answers in order.
SELECT
    tenant, learner_id,
    count(*) AS n_answers,
    sum(correct) AS n_correct,
    list(item_id ORDER BY position) AS item_ids,
    list(correct ORDER BY position) AS corrects,
    list(concept_ids ORDER BY position) AS concept_ids,
    min("timestamp") AS first_timestamp,
    max("timestamp") AS last_timestamp
FROM interactions
GROUP BY tenant, learner_id
ORDER BY tenant, learner_id
