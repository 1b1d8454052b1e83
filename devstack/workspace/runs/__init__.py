"""Job runs: the run spec (spec), the run state machine (state), persistence (journal), the
launcher (clusters, payloads, git), the Jobs API runs endpoints (api), the drivers' callbacks
(internal_api) and the HTML run page (page)."""
