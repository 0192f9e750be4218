"""Monitoring by backend over real jobs: `pipeline jobs` lists the jobs under an output root (records.py), and
`pipeline report jobs` aggregates them by profile and backend (aggregate.py) into Markdown, an HTML page with plots
(report.py) and a Prometheus text file for node_exporter's textfile collector (prometheus.py).

Everything is read from the job manifests; nothing is kept elsewhere, so the figures are those of the jobs that
exist under the root now."""
