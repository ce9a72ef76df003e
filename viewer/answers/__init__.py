"""The viewer's answers without Flask: what the JSON API (viewer/routes) and the exported file
(viewer/export) both give. `runs.py` a run's kept arrays and the bounded cache of recent runs;
`describe.py` the model and a run as the page is told them, the heatmap and thumbnail bytes;
`ledger.py` the Q·K and value numbers read from the trace; `walk.py` one token's steps through a
block; `wire.py` the compact formats sent to the browser."""
