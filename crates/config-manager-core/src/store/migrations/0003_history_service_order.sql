-- History of one service, newest first (`GET /history?service=…`, the UI's
-- history tab): with only (service, changed_at) SQLite fetched every row of the
-- service and sorted them; ordered by id it reads just the page it returns
-- (1,000,000 rows, 1,000 services: p50 3.6 ms -> see docs/performance.md).
CREATE INDEX history_service_id ON history (service, id);
