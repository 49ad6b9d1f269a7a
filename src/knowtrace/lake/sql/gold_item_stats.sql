-- Per item: how often it was answered, by how many learners, and how well.
SELECT
    tenant, item_id,
    count(*) AS n_answers,
    count(DISTINCT learner_id) AS n_learners,
    avg(correct) AS correct_rate,
    avg(score) AS mean_score,
    avg(correct) FILTER (WHERE coalesce(attempt, 1) = 1) AS first_attempt_correct_rate,
    median(elapsed_ms) AS median_elapsed_ms
FROM interactions
GROUP BY tenant, item_id
ORDER BY tenant, item_id
