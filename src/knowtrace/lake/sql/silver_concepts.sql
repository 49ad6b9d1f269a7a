-- Concepts with their prerequisites: the latest record of each, plus every concept items name.
WITH declared AS (
    SELECT * EXCLUDE (newest) FROM (
        SELECT tenant, concept_id, name, prerequisites,
            row_number() OVER (PARTITION BY tenant, concept_id ORDER BY load_id DESC) AS newest
        FROM bronze_concepts
    ) AS ranked
    WHERE newest = 1
),
named AS (
    SELECT DISTINCT tenant, unnest(concept_ids) AS concept_id FROM items
)
SELECT
    coalesce(d.tenant, n.tenant) AS tenant,
    coalesce(d.concept_id, n.concept_id) AS concept_id,
    d.name,
    coalesce(d.prerequisites, []) AS prerequisites
FROM declared AS d
FULL OUTER JOIN named AS n ON d.tenant = n.tenant AND d.concept_id = n.concept_id
ORDER BY tenant, concept_id
