//! Reports: text, JSON (documented schema), HTML page, Prometheus text exposition.
