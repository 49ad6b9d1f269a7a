-- Per concept: answers to items tagged with it (an answer counts once for each concept it tags).
SELECT
    tenant, concept_id,
    count(*) AS n_answers,
    count(DISTINCT learner_id) AS n_learners,
    count(DISTINCT item_id) AS n_items,
    avg(correct) AS correct_rate
FROM (SELECT tenant, learner_id, item_id, correct, unnest(concept_ids) AS concept_id FROM interactions) AS tagged
GROUP BY tenant, concept_id
ORDER BY tenant, concept_id
