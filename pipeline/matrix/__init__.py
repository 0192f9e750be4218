"""The hardware matrix made real: checks and renders of the files derived from `matrix/profiles.toml`, the E2E
results those files produce, and the report over them.

Modules: `check` (do tox.ini, the Makefile, the Dockerfiles and the workflow agree with the matrix?), `render`
(write the derived files), `results` + `pytest_results` (what an E2E run records), `report` (Markdown + HTML
over any number of runs), `cli` (`pipeline matrix ...`). Nothing here imports an ML library.
"""
