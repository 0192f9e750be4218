"""The hardware matrix made real: checks and renders of the files derived from `matrix/profiles.toml`, the E2E
results those files produce, and the report over them.

Modules: `tox_ini`, `ci` (workflow + actionlint config) and `images` (Dockerfiles, an image's requirements)
render one family of derived files each; `render` renders them all, diffs and writes them; `check` (does the
repository agree with the matrix?); `results` + `pytest_results` (what an E2E run records); `report` (Markdown +
HTML over any number of runs); `cli` (`pipeline matrix ...`). Nothing here imports an ML library.
"""
