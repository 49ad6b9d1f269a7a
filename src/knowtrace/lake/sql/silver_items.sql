-- The item catalog: the latest catalog record of each item, completed by the items answers name.
WITH catalog AS (
    SELECT * EXCLUDE (newest) FROM (
        SELECT tenant, item_id, concept_ids, name, a, b, c, metadata,
            row_number() OVER (PARTITION BY tenant, item_id ORDER BY load_id DESC) AS newest
        FROM bronze_items
    ) AS ranked
    WHERE newest = 1
),
answered AS (
    SELECT tenant, item_id, list_sort(list_distinct(flatten(list(concept_ids)))) AS concept_ids
    FROM interactions
    GROUP BY tenant, item_id
)
SELECT
    coalesce(c.tenant, s.tenant) AS tenant,
    coalesce(c.item_id, s.item_id) AS item_id,
    CASE WHEN c.concept_ids IS NULL OR array_length(c.concept_ids) = 0 THEN coalesce(s.concept_ids, [])
         ELSE c.concept_ids END AS concept_ids,
    c.name, c.a, c.b, c.c, c.metadata
FROM catalog AS c
FULL OUTER JOIN answered AS s ON c.tenant = s.tenant AND c.item_id = s.item_id
ORDER BY tenant, item_id
