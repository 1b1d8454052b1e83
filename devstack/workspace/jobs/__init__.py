"""Jobs: job definitions, their rules and permissions (backend), the Jobs API (api)."""
